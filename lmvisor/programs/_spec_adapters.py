"""The `adapter` of a program spec: which adapter a program's predictors use, and its options.

    "adapter": "chat" | "json" | "xml"
    "adapter": {"name": "json", "use_native_function_calling": false}
    "adapter": {"name": "two_step", "extraction_lm": "openai/gpt-4o-mini"}

A name alone takes the adapter's defaults. The object form adds options: for chat and
xml `use_native_function_calling`, `use_json_adapter_fallback` and `parallel_tool_calls`;
for json `use_native_function_calling` and `parallel_tool_calls`; two_step needs
`extraction_lm`, the model that extracts the outputs, which the caller's `lm_for`
resolves to an LM when the program is built (a spec names models, never holds LMs).
Adapters with callbacks, and adapter classes of one's own, cannot be written in a spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from lmvisor.programs.adapters.base import Adapter
from lmvisor.programs.adapters.chat import ChatAdapter
from lmvisor.programs.adapters.json_adapter import JSONAdapter
from lmvisor.programs.adapters.two_step import TwoStepAdapter
from lmvisor.programs.adapters.xml_adapter import XMLAdapter
from lmvisor.programs.lm import LM, model_name_problem

__all__ = [
    "ADAPTER_NAMES",
    "AdapterSpec",
    "AdapterSpecProblem",
    "adapter_spec",
    "build_adapter",
    "parse_adapter_spec",
]

AdapterSpec = str | Mapping[str, Any]
"""An adapter as a spec writes it: a name, or an object with `name` and options."""

_CHAT_OPTIONS: Final = {
    "use_native_function_calling": False,
    "use_json_adapter_fallback": True,
    "parallel_tool_calls": None,
}
_OPTIONS: Final[Mapping[str, Mapping[str, Any]]] = {
    "chat": _CHAT_OPTIONS,
    "json": {"use_native_function_calling": True, "parallel_tool_calls": None},
    "xml": _CHAT_OPTIONS,
    "two_step": {"extraction_lm": None},
}
"""Per adapter name, each option with its default."""

ADAPTER_NAMES: Final[tuple[str, ...]] = tuple(_OPTIONS)
"""The adapter names a spec may use."""

_CLASSES: Final[Mapping[str, type[Adapter]]] = {
    "chat": ChatAdapter,
    "json": JSONAdapter,
    "xml": XMLAdapter,
    "two_step": TwoStepAdapter,
}


class AdapterSpecProblem(ValueError):
    """What is wrong with an `adapter` spec; `spec` turns it into its ProgramSpecError."""

    def __init__(self, *, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def parse_adapter_spec(value: Any) -> AdapterSpec | None:
    """The spec's `adapter`, checked: a name when only a name is given, else the object.

    Raises:
        AdapterSpecProblem: an unknown name or option, an option of the wrong type, or a
            two_step adapter without its `extraction_lm`.
    """
    if value is None:
        return None
    where = "adapter" if isinstance(value, str) else "adapter.name"
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise AdapterSpecProblem(field="adapter", problem="must be a name or an object")
    name = value.get("name")
    if not isinstance(name, str) or name not in _OPTIONS:
        raise AdapterSpecProblem(field=where, problem=f"must be one of {', '.join(ADAPTER_NAMES)}")
    options = {k: v for k, v in value.items() if k != "name"}
    for key, item in options.items():
        _check_option(name, key, item)
    if name == "two_step" and options.get("extraction_lm") is None:
        raise AdapterSpecProblem(
            field="adapter.extraction_lm", problem="two_step needs the model that extracts"
        )
    return name if not options else {"name": name, **options}


def _check_option(name: str, key: str, value: Any) -> None:
    if key not in _OPTIONS[name]:
        allowed = ", ".join(_OPTIONS[name])
        raise AdapterSpecProblem(
            field=f"adapter.{key}", problem=f"not an option of {name} (options: {allowed})"
        )
    if key == "extraction_lm":
        problem = model_name_problem(value)
        if problem is not None:
            raise AdapterSpecProblem(field="adapter.extraction_lm", problem=problem)
    elif key == "parallel_tool_calls":
        if value is not None and not isinstance(value, bool):
            raise AdapterSpecProblem(field=f"adapter.{key}", problem="must be true, false or null")
    elif not isinstance(value, bool):
        raise AdapterSpecProblem(field=f"adapter.{key}", problem="must be true or false")


def build_adapter(
    spec: AdapterSpec | None, *, lm_for: Callable[[str], LM] | None = None
) -> Adapter | None:
    """The adapter a checked `adapter` spec describes (None: the settings' adapter).

    Args:
        spec: what `parse_adapter_spec` returned.
        lm_for: resolves a model name to an LM (needed for two_step's `extraction_lm`).

    Raises:
        AdapterSpecProblem: a two_step adapter and no `lm_for` to resolve its model.
    """
    if spec is None:
        return None
    options = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = options.pop("name")
    if name != "two_step":
        return _CLASSES[name](**options)
    if lm_for is None:
        raise AdapterSpecProblem(
            field="adapter.extraction_lm",
            problem="building a two_step adapter needs an LM resolver (build_program(lm_for=...))",
        )
    return TwoStepAdapter(lm_for(options["extraction_lm"]))


def adapter_spec(adapter: Adapter | None) -> AdapterSpec | None:
    """How a spec writes `adapter`: its name, plus the options that differ from defaults.

    Raises:
        AdapterSpecProblem: the adapter has callbacks, is a class of one's own, or (two_step)
            extracts with an LM whose model is not "vendor/model".
    """
    if adapter is None:
        return None
    name = next((n for n, cls in _CLASSES.items() if type(adapter) is cls), None)
    if name is None:
        raise AdapterSpecProblem(
            field="adapter", problem=f"{type(adapter).__name__} cannot be written in a spec"
        )
    if adapter.callbacks:
        raise AdapterSpecProblem(field="adapter", problem="callbacks cannot be written in a spec")
    if isinstance(adapter, TwoStepAdapter):
        found = parse_adapter_spec({"name": name, "extraction_lm": adapter.extraction_model.model})
        return found
    changed = {
        key: getattr(adapter, key)
        for key, default in _OPTIONS[name].items()
        if getattr(adapter, key) != default
    }
    return name if not changed else {"name": name, **changed}
