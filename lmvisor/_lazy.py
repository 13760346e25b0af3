"""Lazy package exports: each public name is written once, in a `TYPE_CHECKING` import block.

A package `__init__` lists its public names as explicit re-exports that type
checkers read, and hands the same lines to `lazy_package` at run time:

    from typing import TYPE_CHECKING

    from lmvisor._lazy import lazy_package

    if TYPE_CHECKING:
        from lmvisor.runtime.actor import Actor as Actor
        from lmvisor.runtime.actor import ActorRef as ActorRef
    else:
        __all__, __getattr__, __dir__ = lazy_package(__name__, __file__)

The `X as X` form is what marks a re-export for `mypy --strict`; the module
`__getattr__` lives in the `else` branch so type checkers never see it, and
`from lmvisor.runtime import Acotr` is an error rather than an `Any`. Adding
a public name is one line. `lazy_package` scans the block (a regex over the
file, not a parse: `import lmvisor` stays cheap), derives `__all__` sorted as
ruff's RUF022 sorts it, and imports each name's module on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["exported_names", "lazy_package"]

_BLOCK = re.compile(r"^if TYPE_CHECKING:[ \t]*\n((?:[ \t]+\S.*\n|[ \t]*\n)+)", re.MULTILINE)
_IMPORT = re.compile(r"from\s+(\.*[\w.]*)\s+import\s+(\([^)]*\)|[^\n]*)")
_COMMENT = re.compile(r"#[^\n]*")
_ITEM = re.compile(r"([A-Za-z_]\w*)\s+as\s+([A-Za-z_]\w*)")


def exported_names(package: str, source: str) -> dict[str, str]:
    """Map each name re-exported in `source`'s `if TYPE_CHECKING:` block to its module.

    Raises:
        ImportError: the block is missing, or a name is not written `X as X`
            (mypy would not see it as exported).
    """
    block = _BLOCK.search(source)
    if block is None:
        raise ImportError(f"{package}: no 'if TYPE_CHECKING:' block of exports")
    exports: dict[str, str] = {}
    for module, names in _IMPORT.findall(_COMMENT.sub("", block.group(1))):
        target = importlib.util.resolve_name(module, package) if module[0] == "." else module
        for item in names.strip("()").split(","):
            item = item.strip()
            if not item:
                continue
            found = _ITEM.fullmatch(item)
            if found is None or found.group(1) != found.group(2):
                raise ImportError(
                    f"{package}: export {item!r} from {target} must be written "
                    "'Name as Name' (an explicit re-export)"
                )
            exports[found.group(1)] = target
    return exports


def _ruff_order(name: str) -> tuple[int, str]:
    # RUF022's isort-style order: SCREAMING_CASE, then CamelCase, then the rest
    if name.isupper():
        return (0, name)
    return (1 if name[:1].isupper() else 2, name)


def lazy_package(
    package: str, file: str
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """Build `__all__`, `__getattr__` and `__dir__` for the package `__init__` at `file`.

    A name's module is imported when the name is first read; the value is then
    cached in the package namespace, so `__getattr__` runs once per name.

    Raises:
        ImportError: see `exported_names`; also if `file` cannot be read.
    """
    try:
        with open(file, encoding="utf-8") as handle:
            source = handle.read()
    except OSError as exc:
        raise ImportError(f"{package}: cannot read {file} for its exports: {exc}") from exc
    exports: Mapping[str, str] = exported_names(package, source)
    names = sorted(exports, key=_ruff_order)

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        importlib.import_module(package).__dict__[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(exports))

    return names, __getattr__, __dir__
