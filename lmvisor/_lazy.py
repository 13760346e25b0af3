"""Lazy re-exports for package `__init__`s: a public name's module is imported on first use.

`import lmvisor` must stay cheap (pydantic, aiohttp and prometheus-client are
imported only by what needs them); type checkers see the real imports through
each `__init__`'s `TYPE_CHECKING` block.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Build a module `__getattr__` and `__dir__` serving `exports` (name -> module path).

    The resolved value is cached in the package's namespace, so each name is
    looked up through `__getattr__` once.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        importlib.import_module(package).__dict__[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(exports))

    return __getattr__, __dir__
