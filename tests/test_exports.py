"""The public surface: every `__all__` is complete and resolvable, names live in one place."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from types import ModuleType

import pytest

import lmvisor

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
