"""Type helpers for signatures: parse a type written in a signature string, name a type
the way DSPy prints it, and tell optional types apart.

Pydantic is imported lazily (only for JSON schemas and validating complex types) so that
importing the programs layer stays cheap.
"""

from __future__ import annotations

import ast
import enum
import types
import typing
import warnings
from collections.abc import Hashable, Mapping
from functools import lru_cache
from typing import Any, Literal, Union, cast, get_args, get_origin

__all__ = [
    "TypeExprError",
    "allows_none",
    "annotation_name",
    "is_enum",
    "is_optional",
    "json_schema",
    "parse_type_expr",
    "type_adapter",
]

_BUILTIN_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "bytes": bytes,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "set": set,
    "None": type(None),
    "Any": Any,
    "List": list,
    "Dict": dict,
    "Tuple": tuple,
    "Set": set,
    "Optional": typing.Optional,
    "Union": Union,
    "Literal": Literal,
}


class TypeExprError(Exception):
    """A type written in a signature string is not understood (internal; wrapped by callers)."""


def parse_type_expr(text: str, custom_types: Mapping[str, Any] | None = None) -> Any:
    """Turn "list[str]", "Literal['a', 'b']", "int | None" into a type, without eval.

    Raises:
        TypeExprError: the text is not a type expression made of known names.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning for "1a": our error says more
            node = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise TypeExprError(f"not a type expression: {text.strip()!r}") from exc
    names = dict(_BUILTIN_TYPES)
    if custom_types:
        names.update(custom_types)
    return _build(node, names)


def _build(node: ast.expr, names: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise TypeExprError(f"unknown type {node.id!r}")
        return names[node.id]
    if isinstance(node, ast.Attribute):
        dotted = ast.unparse(node)
        if dotted in names:
            return names[dotted]
        if isinstance(node.value, ast.Name) and node.value.id == "typing" and node.attr in names:
            return names[node.attr]
        raise TypeExprError(f"unknown type {dotted!r}")
    if isinstance(node, ast.Constant) and node.value is None:
        return type(None)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return Union[_build(node.left, names), _build(node.right, names)]  # noqa: UP007
    if isinstance(node, ast.Subscript):
        return _build_subscript(node, names)
    raise TypeExprError(f"not a type: {ast.unparse(node)!r}")


def _build_subscript(node: ast.Subscript, names: Mapping[str, Any]) -> Any:
    origin = _build(node.value, names)
    elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    if origin is Literal:
        values = []
        for elt in elts:
            if not isinstance(elt, ast.Constant):
                raise TypeExprError(f"Literal takes constants, not {ast.unparse(elt)!r}")
            values.append(elt.value)
        return Literal.__getitem__(tuple(values))
    args = tuple(_build(elt, names) for elt in elts)
    try:
        return origin[args if len(args) > 1 else args[0]]
    except TypeError as exc:
        raise TypeExprError(f"{ast.unparse(node)!r} is not a valid type: {exc}") from exc


def _quote_literal(value: str) -> str:
    if "'" in value and '"' not in value:
        return f'"{value}"'
    if "'" in value:
        return "'" + value.replace("'", "\\'") + "'"
    return f"'{value}'"


@lru_cache(maxsize=1024)
def _annotation_name_cached(annotation: Any, _kind: Hashable) -> str:
    return _annotation_name(annotation)


def annotation_name(annotation: Any) -> str:
    """The type's name as DSPy 3.4.1 prints it: "list[str]", "Union[str, NoneType]".

    `str | None` and `Optional[str]` compare (and hash) equal, so the cache is keyed by the
    annotation's own class as well; both spellings name the same anyway, as in DSPy.
    """
    try:
        return _annotation_name_cached(annotation, cast(Hashable, type(annotation)))
    except TypeError:  # unhashable annotation
        return _annotation_name(annotation)


def _annotation_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is types.UnionType:
        origin = Union  # DSPy names PEP 604 unions as typing.Union, as Python 3.14 does
    if origin is None:
        # A type may name itself differently in prompts (Reasoning reads as "str" in DSPy).
        special = getattr(annotation, "__prompt_name__", None)
        if isinstance(special, str):
            return special
        name = getattr(annotation, "__name__", None)
        return name if isinstance(name, str) else str(annotation)
    if origin is Literal:
        inner = ", ".join(
            _quote_literal(a) if isinstance(a, str) else annotation_name(a) for a in args
        )
    else:
        inner = ", ".join(annotation_name(a) for a in args)
    return f"{annotation_name(origin)}[{inner}]"


def allows_none(annotation: Any) -> bool:
    """True when None is a value of the type (`X | None`, `Optional[X]`, `None`).

    Such an output may be missing from a completion: it parses to None, as in DSPy.
    """
    if annotation is None or annotation is type(None):
        return True
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return allows_none(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return any(allows_none(arg) for arg in get_args(annotation))
    return False


def is_optional(annotation: Any) -> bool:
    """True for `X | None`, `Optional[X]` and `Any`: such an input may be left out."""
    if annotation is Any:
        return True
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return type(None) in get_args(annotation)
    return False


def type_adapter(annotation: Any) -> Any:
    """A cached `pydantic.TypeAdapter` for the annotation (pydantic imported here, lazily)."""
    try:
        return _type_adapter_cached(annotation)
    except TypeError:
        return _new_type_adapter(annotation)


@lru_cache(maxsize=512)
def _type_adapter_cached(annotation: Any) -> Any:
    return _new_type_adapter(annotation)


def _new_type_adapter(annotation: Any) -> Any:
    import pydantic

    return pydantic.TypeAdapter(annotation)


def json_schema(annotation: Any) -> dict[str, Any]:
    """The JSON schema of a type, via pydantic."""
    schema: dict[str, Any] = type_adapter(annotation).json_schema()
    return schema


def is_enum(annotation: Any) -> bool:
    """True for Enum subclasses."""
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum)
