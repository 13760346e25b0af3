"""The programs layer's import rules: no higher layer, a few runtime modules, lazy deps."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import lmvisor.programs

PACKAGE = Path(lmvisor.programs.__file__).parent
FORBIDDEN = ("lmvisor.services", "lmvisor.providers", "lmvisor.optimizers", "lmvisor.server")
RUNTIME_ALLOWED = (
    "lmvisor.runtime.errors",
    "lmvisor.runtime.correlation",
    "lmvisor.runtime.deadline",
    "lmvisor.runtime.observe.logs",
)


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


class TestLayering:
    def test_no_higher_layer_imports(self) -> None:
        """No programs module imports services, providers, optimizers or server."""
        for path in PACKAGE.rglob("*.py"):
            for name in _imports(path):
                assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"

    def test_runtime_imports_limited(self) -> None:
        """From the runtime, only errors, correlation, deadline and logs are imported."""
        for path in PACKAGE.rglob("*.py"):
            for name in _imports(path):
                if name.startswith("lmvisor.runtime"):
                    assert name in RUNTIME_ALLOWED, f"{path.name} imports {name}"

    def test_heavy_dependencies_are_lazy(self) -> None:
        """Importing the package adds neither pydantic nor json_repair to what the runtime loads."""
        code = (
            "import sys, lmvisor.runtime.errors; before = set(sys.modules); "
            "import lmvisor.programs; "
            "print(sorted(m for m in ('pydantic', 'json_repair') "
            "if m in sys.modules and m not in before))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "[]"
