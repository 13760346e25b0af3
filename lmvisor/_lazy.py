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
a public name is one line. `lazy_package` reads the block (plain string work
over the file, not a parse: `import lmvisor` stays cheap), derives `__all__`
sorted as ruff's RUF022 sorts it, and imports each name's module on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["exported_names", "lazy_package"]

_BLOCK = "\nif TYPE_CHECKING:"


def exported_names(package: str, source: str) -> dict[str, str]:
    """Map each name re-exported in `source`'s `if TYPE_CHECKING:` block to its module.

    Plain string work rather than a regex or a parse: compiling patterns alone
    would cost `import lmvisor` a millisecond.

    Raises:
        ImportError: the block is missing, or a name is not written `X as X`
            (mypy would not see it as exported).
    """
    exports: dict[str, str] = {}
    for statement in _import_statements(package, source):
        module, _, names = statement[len("from ") :].partition(" import ")
        module = module.strip()
        if module.startswith("."):
            import importlib.util

            module = importlib.util.resolve_name(module, package)
        for item in names.strip().strip("()").split(","):
            words = item.split()
            if not words:
                continue
            if len(words) != 3 or words[1] != "as" or words[0] != words[2]:
                raise ImportError(
                    f"{package}: export {' '.join(words)!r} from {module} must be written "
                    "'Name as Name' (an explicit re-export)"
                )
            exports[words[0]] = module
    return exports


def _import_statements(package: str, source: str) -> list[str]:
    """The `from ... import ...` statements of the block, each joined onto one line."""
    text = "\n" + source
    start = text.find(_BLOCK)
    if start < 0:
        raise ImportError(f"{package}: no 'if TYPE_CHECKING:' block of exports")
    statements: list[str] = []
    open_paren = False
    for line in text[start + len(_BLOCK) :].splitlines()[1:]:  # [0]: the rest of the if line
        if line and not line[0].isspace():
            break  # the block ends where the indentation does
        code = line.split("#", 1)[0].strip()
        if not code:
            continue
        if open_paren:
            statements[-1] += " " + code
        else:
            statements.append(code)
        open_paren = "(" in statements[-1] and ")" not in statements[-1]
    return [s for s in statements if s.startswith("from ") and " import " in s]


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
