"""The public surface: every `__all__` is complete and resolvable, names live in one place."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import lmvisor
from lmvisor._lazy import exported_names

ROOT = Path(__file__).resolve().parent.parent

SUBPACKAGES = (
    "lmvisor.config",
    "lmvisor.runtime",
    "lmvisor.programs",
    "lmvisor.providers",
    "lmvisor.services",
    "lmvisor.optimizers",
    "lmvisor.server",
    "lmvisor.testing",
)


def _modules() -> list[ModuleType]:
    found = []
    for info in pkgutil.walk_packages(lmvisor.__path__, "lmvisor."):
        found.append(importlib.import_module(info.name))
    return found


MODULES = _modules()


class TestAll:
    @pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
    def test_every_module_declares_all(self, module: ModuleType) -> None:
        """Each module says what it exports, and every exported name exists."""
        names = getattr(module, "__all__", None)
        assert names is not None, f"{module.__name__} has no __all__"
        assert len(set(names)) == len(names), f"{module.__name__}.__all__ repeats a name"
        for name in names:
            assert hasattr(module, name), f"{module.__name__}.__all__ names missing {name!r}"

    @pytest.mark.parametrize(
        "module",
        [m for m in MODULES if not m.__name__.endswith("__init__")],
        ids=lambda m: m.__name__,
    )
    def test_public_definitions_are_exported(self, module: ModuleType) -> None:
        """A public class or function defined in a module is listed in its __all__."""
        if hasattr(module, "__path__") or module.__name__.rsplit(".", 1)[-1].startswith("_"):
            return
        exported = set(module.__all__)
        for name, value in vars(module).items():
            if name.startswith("_") or not (inspect.isclass(value) or inspect.isfunction(value)):
                continue
            if getattr(value, "__module__", None) != module.__name__:
                continue
            assert name in exported, f"{module.__name__}.{name} is public but not in __all__"


class TestPackages:
    @pytest.mark.parametrize("package", ["lmvisor", *SUBPACKAGES])
    def test_package_exports_resolve(self, package: str) -> None:
        """Every name a package re-exports resolves (lazily) and shows in dir()."""
        module = importlib.import_module(package)
        for name in module.__all__:
            assert getattr(module, name) is not None
            assert name in dir(module)

    def test_each_name_has_one_subpackage(self) -> None:
        """No public name is exported by two subpackages."""
        owner: dict[str, str] = {}
        for package in SUBPACKAGES:
            for name in importlib.import_module(package).__all__:
                assert name not in owner, f"{name} exported by {owner.get(name)} and {package}"
                owner[name] = package

    def test_top_level_names_come_from_subpackages(self) -> None:
        """`lmvisor.X` is the same object as the subpackage's X."""
        for name in lmvisor.__all__:
            value = getattr(lmvisor, name)
            assert any(
                getattr(importlib.import_module(p), name, None) is value for p in SUBPACKAGES
            ), name


class TestImport:
    def test_import_is_cheap_and_configures_nothing(self) -> None:
        """`import lmvisor` loads no heavy dependency and leaves logging unconfigured."""
        code = (
            "import sys, lmvisor, structlog;"
            "heavy = [m for m in ('pydantic', 'aiohttp', 'prometheus_client', 'httpx')"
            " if m in sys.modules];"
            "print(heavy, structlog.is_configured())"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert out == "[] False"


def _package_inits() -> list[ModuleType]:
    return [m for m in MODULES if hasattr(m, "__path__")] + [lmvisor]


def _names(statements: list[ast.stmt]) -> set[str]:
    return {n.id for n in ast.walk(ast.Module(statements, [])) if isinstance(n, ast.Name)}


def _type_checking_block(tree: ast.Module) -> ast.If:
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            return node
    raise AssertionError("no TYPE_CHECKING block")


class TestLazyExports:
    @pytest.mark.parametrize("package", _package_inits(), ids=lambda m: m.__name__)
    def test_each_name_is_written_once_and_scanned_as_python_reads_it(
        self, package: ModuleType
    ) -> None:
        """__all__ is exactly the 'Name as Name' imports of the TYPE_CHECKING block."""
        source = Path(str(package.__file__)).read_text()
        block = _type_checking_block(ast.parse(source))
        parsed = {
            alias.name: str(node.module)
            for node in block.body
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
            if alias.asname == alias.name
        }
        assert exported_names(package.__name__, source) == parsed
        assert sorted(package.__all__) == sorted(parsed)

    @pytest.mark.parametrize("package", _package_inits(), ids=lambda m: m.__name__)
    def test_type_checkers_see_no_module_getattr(self, package: ModuleType) -> None:
        """The lazy __getattr__ is only in the else branch, so mypy sees only real names."""
        tree = ast.parse(Path(str(package.__file__)).read_text())
        block = _type_checking_block(tree)
        seen_by_mypy = [node for node in tree.body if node is not block] + block.body
        assert "__getattr__" not in _names(seen_by_mypy), package.__name__
        assert "__getattr__" in _names(block.orelse)

    def test_a_misspelled_name_fails_mypy_strict(self, tmp_path: Path) -> None:
        """`from lmvisor.runtime import Acotr` is an error for mypy --strict, not an Any."""
        from mypy import api

        snippet = tmp_path / "snippet.py"
        snippet.write_text(
            "from lmvisor import Runtime\n"
            "from lmvisor.runtime import Actor, Acotr\n"
            "from lmvisor.runtime.observe import EventRing\n"
            "reveal_type(Actor)\n"
        )
        config = ["--config-file", str(ROOT / "pyproject.toml")]
        # the cache `make lint` warmed: a few seconds instead of a cold analysis
        cache = ["--cache-dir", str(ROOT / ".mypy_cache")]
        limit = sys.getrecursionlimit()
        try:
            out, _, status = api.run([str(snippet), "--strict", *config, *cache])
        finally:
            # mypy raises the interpreter's recursion limit for good; later tests (deep
            # input refused by a RecursionError) must see the usual one
            sys.setrecursionlimit(limit)
        errors = [line for line in out.splitlines() if ": error:" in line]
        assert status == 1
        assert len(errors) == 1
        assert 'Module "lmvisor.runtime" has no attribute "Acotr"' in errors[0]
        assert 'Revealed type is "def () -> lmvisor.runtime.actor.Actor"' in out

    @pytest.mark.parametrize(
        ("source", "message"),
        [
            ("x = 1\n", r"^pkg: no 'if TYPE_CHECKING:' block of exports$"),
            (
                "if TYPE_CHECKING:\n    from pkg.mod import A\nelse:\n    pass\n",
                r"^pkg: export 'A' from pkg\.mod must be written 'Name as Name'",
            ),
            (
                "if TYPE_CHECKING:\n    from pkg.mod import A as B\nelse:\n    pass\n",
                r"^pkg: export 'A as B' from pkg\.mod must be written 'Name as Name'",
            ),
        ],
    )
    def test_exports_must_be_explicit_re_exports(self, source: str, message: str) -> None:
        """A block missing, or a name not written 'Name as Name', fails the import loudly."""
        with pytest.raises(ImportError, match=message):
            exported_names("pkg", source)

    def test_wrapped_and_relative_imports_are_read(self) -> None:
        """A parenthesised, commented or relative import line is read like Python reads it."""
        source = (
            "if TYPE_CHECKING:\n"
            "    from .mod import (  # wrapped by the formatter\n"
            "        LongName as LongName,\n"
            "    )\n"
            "    from pkg.other import B as B, c as c\n"
            "else:\n"
            "    pass\n"
        )
        assert exported_names("pkg", source) == {
            "LongName": "pkg.mod",
            "B": "pkg.other",
            "c": "pkg.other",
        }
