"""Tests for lmvisor.runtime.observe.names: one module names every signal, and the code obeys it."""

from __future__ import annotations

import ast
from pathlib import Path

import lmvisor
from lmvisor.runtime.observe import names
from lmvisor.runtime.observe.metrics import Metrics

PACKAGE = Path(lmvisor.__file__).parent
_EMITTERS = frozenset({"emit", "emit_in", "emit_event"})


def _sources() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text())) for path in sorted(PACKAGE.rglob("*.py"))]


def _event_type_argument(call: ast.Call) -> ast.expr | None:
    """The argument of an emit call that carries the event type, if it has one."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in _EMITTERS:
        return None
    for keyword in call.keywords:
        if keyword.arg == "type":
            return keyword.value
    # emit(type, data), emit_in(scope, type, data), emit_event(store, type, data)
    index = 0 if name == "emit" else 1
    return call.args[index] if len(call.args) > index else None


class TestNames:
    def test_every_name_is_listed_once(self) -> None:
        """EVENT_TYPES, METRIC_NAMES and HTTP_METRIC_NAMES hold every constant of the module,
        each value once."""
        constants = {
            key: value
            for key, value in vars(names).items()
            if key.isupper() and isinstance(value, str)
        }
        events = {v for k, v in constants.items() if not k.startswith("METRIC_")}
        metrics = {v for k, v in constants.items() if k.startswith("METRIC_")}
        assert events - {names.SUPERVISOR_PROGRESS} == names.EVENT_TYPES
        assert metrics == names.METRIC_NAMES | names.HTTP_METRIC_NAMES
        assert not names.METRIC_NAMES & names.HTTP_METRIC_NAMES
        assert len(set(constants.values())) == len(constants)
        for event_type in events:
            assert event_type == event_type.lower() and " " not in event_type

    def test_no_event_type_is_written_as_a_literal(self) -> None:
        """Every emit in lmvisor passes a name from this module, never a string literal."""
        emits = 0
        for path, tree in _sources():
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and (arg := _event_type_argument(node)) is not None:
                    emits += 1
                    assert not isinstance(arg, ast.Constant), (
                        f"{path.relative_to(PACKAGE)}:{node.lineno} emits a literal event type"
                    )
        assert emits >= 6  # the scan does see the emitters (config, breaker, LM, reports...)

    def test_metrics_exposes_exactly_the_named_families(self) -> None:
        """The families a runtime's Metrics registers are the METRIC_* names, no more, no less."""
        exposed: set[str] = set()
        for family in Metrics().registry.collect():
            exposed.add(f"{family.name}_total" if family.type == "counter" else family.name)
        assert exposed == set(names.METRIC_NAMES)


class TestOneLogChain:
    def test_no_stdlib_logger_anywhere(self) -> None:
        """No lmvisor module asks stdlib logging for a logger: lines go through the chain."""
        for path, tree in _sources():
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr == "getLogger":
                    raise AssertionError(f"{path.relative_to(PACKAGE)}:{node.lineno} getLogger")

    def test_only_the_process_setup_imports_logging(self) -> None:
        """Stdlib logging is imported only where the daemon routes third-party records."""
        importers = set()
        for path, tree in _sources():
            for node in ast.walk(tree):
                if isinstance(node, ast.Import) and any(a.name == "logging" for a in node.names):
                    importers.add(str(path.relative_to(PACKAGE)))
                if isinstance(node, ast.ImportFrom) and node.module == "logging":
                    importers.add(str(path.relative_to(PACKAGE)))
        assert importers == {"runtime/observe/process_logging.py"}
