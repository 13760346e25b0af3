"""Layers never import upward: each package's imports, lazy ones included, stay below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lmvisor

ROOT = Path(lmvisor.__file__).parent
SUBPACKAGES = (
    "config",
    "runtime",
    "programs",
    "providers",
    "optimizers",
    "services",
    "server",
    "testing",
)
# What each package must never import (the leaf modules _error and _redaction are always fine).
FORBIDDEN: dict[str, frozenset[str]] = {
    "config": frozenset(SUBPACKAGES) - {"config"},
    "runtime": frozenset(SUBPACKAGES) - {"config", "runtime"},
    "programs": frozenset({"providers", "optimizers", "services", "server", "testing"}),
    "providers": frozenset({"optimizers", "services", "server", "testing"}),
    "optimizers": frozenset({"providers", "services", "server", "testing"}),
    "services": frozenset({"server"}),
}
# The loopback LM server is shipped (open_app's loopback_lm uses it): it stays on the runtime.
LOOPBACK = ("lm_server.py", "_lm_*.py")
LOOPBACK_FORBIDDEN = frozenset({"programs", "providers", "optimizers", "services", "server"})


def _imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "lmvisor" and len(parts) > 1:
                found.add(parts[1])
    return found


def _violations(files: list[Path], forbidden: frozenset[str]) -> list[str]:
    return [
        f"{path.relative_to(ROOT.parent)} imports lmvisor.{package}"
        for path in files
        for package in sorted(_imported_packages(path) & forbidden)
    ]


class TestLayering:
    @pytest.mark.parametrize("package", sorted(FORBIDDEN))
    def test_package_imports_only_lower_layers(self, package: str) -> None:
        """No module of a layer imports a layer above it, not even inside a function."""
        files = sorted((ROOT / package).rglob("*.py"))
        assert files
        assert _violations(files, FORBIDDEN[package]) == []

    def test_loopback_server_stands_on_the_runtime_alone(self) -> None:
        """The loopback LM server, which open_app may start, imports no LM layer."""
        files = sorted(f for pattern in LOOPBACK for f in (ROOT / "testing").glob(pattern))
        assert files
        assert _violations(files, LOOPBACK_FORBIDDEN) == []

    def test_leaves_import_nothing_of_lmvisor(self) -> None:
        """The root error and the redactor are leaves every layer can import."""
        for leaf in ("_error.py", "_redaction.py"):
            assert _imported_packages(ROOT / leaf) <= {"_error", "_redaction"}
