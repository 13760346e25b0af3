"""Turning field values into prompt text and completion text back into typed values,
exactly as DSPy 3.4.1 does, with fast paths for the common types.
"""

from __future__ import annotations

import ast
import enum
import json
import math
import types
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

from lmvisor.programs._json_repair import repair_json
from lmvisor.programs._types import annotation_name, is_enum, type_adapter
from lmvisor.programs.custom_types import Type
from lmvisor.programs.fields import Field
from lmvisor.programs.reasoning import Reasoning
from lmvisor.programs.tool_calls import ToolCalls

__all__ = [
    "field_placeholder",
    "format_field_value",
    "json_schema_for_prompt",
    "parse_value",
    "serialize_for_json",
    "type_hint",
]

_PRIMITIVES = (str, int, float, bool, type(None))


_MAX_DEPTH = 200


def serialize_for_json(value: Any) -> Any:
    """A JSON-ready form of `value`, as DSPy's pydantic dump makes it.

    Models are dumped, enums give their value, `Type` values their prompt form; a NaN or
    infinity inside a list or dict becomes None (pydantic's JSON mode), a bare one stays.

    Raises:
        ValueError: the value nests deeper than 200 levels.
    """
    if isinstance(value, _PRIMITIVES):
        return value
    return _serialize(value, 0)


def _serialize(value: Any, depth: int) -> Any:
    if isinstance(value, _PRIMITIVES):
        return value
    if depth > _MAX_DEPTH:
        raise ValueError(f"value nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, list | tuple):
        return [_nested(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): _nested(v, depth + 1) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return _serialize(value.value, depth + 1)
    if isinstance(value, Type):
        return _serialize(value.serialize(), depth + 1)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, type):
        return _serialize(to_dict(), depth + 1)
    try:
        return type_adapter(type(value)).dump_python(value, mode="json")
    except Exception:
        return str(value)


def _nested(value: Any, depth: int) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return _serialize(value, depth)


def format_field_value(field: Field, value: Any) -> str:
    """The prompt text of a value: lists of text as a numbered list, structures as JSON.

    Raises:
        ValueError: the value nests too deeply to write (past 200 levels as JSON).
    """
    if type(value) is str:
        return value
    if isinstance(value, list) and field.annotation is str:
        return _format_list(value)
    jsonable = serialize_for_json(value)
    if isinstance(jsonable, dict | list):
        return json.dumps(jsonable, ensure_ascii=False)
    return str(jsonable)


def _format_list(items: list[Any]) -> str:
    """A str field's list as DSPy numbers it, each item as its `str`.

    Raises:
        ValueError: an item nests too deeply for `str` (its repr recurses per level).
    """
    if not items:
        return "N/A"
    try:
        texts = [str(t) for t in items]
    except RecursionError:
        raise ValueError("value nested too deeply to write into the prompt") from None
    if len(texts) == 1:
        return _format_blob(texts[0])
    return "\n".join(f"[{i + 1}] {_format_blob(t)}" for i, t in enumerate(texts))


def _format_blob(blob: str) -> str:
    if "\n" not in blob and "«" not in blob and "»" not in blob:
        return f"«{blob}»"
    indented = blob.replace("\n", "\n    ")
    return f"«««\n    {indented}\n»»»"


def _move_type_to_front(d: Any) -> Any:
    if isinstance(d, Mapping):
        return {
            k: _move_type_to_front(v)
            for k, v in sorted(d.items(), key=lambda item: (item[0] != "type", item[0]))
        }
    if isinstance(d, list):
        return [_move_type_to_front(item) for item in d]
    return d


def json_schema_for_prompt(annotation: Any) -> dict[str, Any]:
    """The JSON schema shown in the prompt for a structured output ("type" key first)."""
    schema: dict[str, Any] = _move_type_to_front(type_adapter(annotation).json_schema())
    return schema


def field_placeholder(field: Field) -> str:
    """ "{name}" plus DSPy's "# note: the value you produce ..." for typed outputs."""
    t = field.annotation
    if field.kind == "input" or t is str or t is Reasoning:
        desc = ""
    elif t is bool:
        desc = "must be True or False"
    elif t is int or t is float:
        desc = f"must be a single {t.__name__} value"
    elif is_enum(t):
        desc = f"must be one of: {'; '.join(str(m.value) for m in t)}"
    elif get_origin(t) is Literal:
        desc = (
            f"must exactly match (no extra characters) one of: {'; '.join(map(str, get_args(t)))}"
        )
    else:
        schema = json.dumps(json_schema_for_prompt(t), ensure_ascii=False)
        desc = f"must adhere to the JSON schema: {schema}"
    note = f"        # note: the value you produce {desc}" if desc else ""
    return f"{{{field.name}}}{note}"


def type_hint(field: Field) -> str:
    """ " (must be formatted as a valid Python float)" for non-str fields, else ""."""
    if field.annotation is str:
        return ""
    if field.annotation is ToolCalls:
        return ' (must be a JSON object like {"tool_calls": [{"name": "...", "args": {...}}]})'
    return f" (must be formatted as a valid Python {annotation_name(field.annotation)})"


def _find_enum_member(enum_type: type[enum.Enum], identifier: Any) -> enum.Enum:
    for member in enum_type:
        if member.value == identifier:
            return member
    if isinstance(identifier, str):
        # Text from a completion: the prompt listed str(value), so "1" names the value 1.
        text = _strip_quotes(identifier.strip())
        for member in enum_type:
            if member.value == text or str(member.value) == text:
                return member
        if text in enum_type.__members__:
            return enum_type[text]
    raise ValueError(f"{identifier!r} is not a valid name or value of {enum_type.__name__}")


def _strip_quotes(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _fast_parse(value: str, annotation: Any) -> tuple[bool, Any]:
    """Common types without pydantic; (False, None) when the general path must decide."""
    text = value.strip()
    try:
        if annotation is float:
            return True, float(text)
        if annotation is int:
            return True, int(text)
    except ValueError:
        return False, None
    if annotation is bool:
        lowered = text.lower()
        if lowered in ("true", "false"):
            return True, lowered == "true"
        return False, None
    if get_origin(annotation) is Literal:
        options = get_args(annotation)
        if text.startswith(("Literal[", "str[")) and text.endswith("]"):
            text = text[text.find("[") + 1 : -1]  # the LM echoed the type note, as DSPy strips
        for candidate in (text, _strip_quotes(text)):
            if candidate in options:
                return True, candidate
    return False, None


def parse_value(value: Any, annotation: Any) -> Any:
    """Coerce a parsed completion value to the field's type, as DSPy does.

    Raises:
        ValueError: the value does not fit the type (pydantic's error is wrapped).
    """
    if annotation is str:
        return str(value)
    if is_enum(annotation):
        return _find_enum_member(annotation, value)
    if isinstance(value, str):
        done, parsed = _fast_parse(value, annotation)
        if done:
            return parsed
        if not _is_optional_text(annotation):
            value = _loads_lenient(value)
    try:
        return type_adapter(annotation).validate_python(value)
    except RecursionError:
        raise ValueError("the value is nested too deeply") from None
    except Exception as exc:  # pydantic.ValidationError, without importing pydantic here
        raise ValueError(_short_message(exc)) from None


def _short_message(exc: Exception) -> str:
    """Pydantic's complaints, one per problem, without its boilerplate."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    try:
        items = errors(include_url=False, include_input=False)
    except Exception:  # not pydantic's errors(): the plain message will do
        return str(exc)
    parts = []
    for item in items[:3]:
        where = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
    more = f" (and {len(items) - 3} more)" if len(items) > 3 else ""
    return "; ".join(parts) + more


def _is_optional_text(annotation: Any) -> bool:
    """`str | None` and the like: the raw text is the value ("42" stays a string), as in DSPy."""
    if get_origin(annotation) not in (Union, types.UnionType):
        return False
    args = get_args(annotation)
    return str in args and type(None) in args


def _loads_lenient(value: str) -> Any:
    """The value of a completion's text, read as DSPy reads it (lenient JSON, then Python).

    Raises:
        ValueError: the text nests too deeply to read.
    """
    candidate = repair_json(value)
    if candidate == "" and value != "":
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return value
    return candidate
