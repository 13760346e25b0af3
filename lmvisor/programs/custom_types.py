"""`Type`: the base of values with a prompt form of their own (images, audio, files, tool
calls), and the splitting of user messages at their content parts, as DSPy 3.4.1 does.

A `Type` formats to a string or to a list of OpenAI content parts. Inside a prompt, a
list-formatted value is written as its JSON between two markers; once a user message is
complete, `split_content_parts` cuts it at the markers into text parts and the value's own
parts (`image_url`, `input_audio`, `file`). Values nested in lists or dicts are
JSON-encoded twice by then, and are decoded the same way DSPy decodes them, so the parts
and the text between them are DSPy's, byte for byte.

Unlike DSPy, the markers carry a random per-process nonce: text that merely contains
DSPy's marker strings (an input typed by a user of the daemon) stays text and can never
smuggle an image URL or a file into the request. Outside user messages, where DSPy leaves
its markers in the text, lmvisor writes DSPy's marker strings.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Self, get_args, get_origin

from lmvisor.programs._json_repair import repair_json

__all__ = [
    "CUSTOM_TYPE_END",
    "CUSTOM_TYPE_START",
    "Type",
    "custom_types_in",
    "holds_parts",
    "split_content_parts",
]

CUSTOM_TYPE_START = "<<CUSTOM-TYPE-START-IDENTIFIER>>"
CUSTOM_TYPE_END = "<<CUSTOM-TYPE-END-IDENTIFIER>>"
"""DSPy's marker strings, as they appear in assistant turns holding a marked value."""

_NONCE = os.urandom(8).hex()
_START = f"<<LMVISOR-PART-{_NONCE}>>"
_END = f"<<LMVISOR-PART-END-{_NONCE}>>"
_MARKED = re.compile(rf"{re.escape(_START)}(.*?){re.escape(_END)}", re.DOTALL)


class Type:
    """Base class of values that render themselves in prompts.

    Subclasses implement `format()` (a string, or a list of content parts), and for use as
    an output type or inside pydantic models `validate(value)` and `pydantic_model()` (the
    JSON schema's shape). `description()` is shown under fields of the type.
    """

    __slots__ = ()

    # Shown instead of the class name in prompts, when set (Reasoning reads as "str").
    __prompt_name__: ClassVar[str | None] = None

    def format(self) -> list[dict[str, Any]] | str | dict[str, Any]:
        """The value's prompt form: text, a JSON-ready dict, or a list of content parts."""
        raise TypeError(f"{type(self).__name__} must implement format()")

    @classmethod
    def description(cls) -> str:
        """A sentence about the type shown with each field of it (empty: none)."""
        return ""

    def serialize(self) -> Any:
        """The value inside a prompt: parts as marked JSON, anything else as formatted."""
        formatted = self.format()
        if isinstance(formatted, list):
            payload = json.dumps(formatted, ensure_ascii=False)
            return f"{_START}{payload}{_END}"
        return formatted

    @classmethod
    def validate(cls, value: Any) -> Self:
        """The value as this type (from JSON data or an instance).

        Raises:
            ValueError: the value cannot be read as this type.
        """
        if isinstance(value, cls):
            return value
        raise ValueError(f"{cls.__name__} cannot be read from {type(value).__name__}")

    @classmethod
    def pydantic_model(cls) -> Any:
        """A pydantic model with this type's JSON shape (its schema is the type's schema)."""
        raise TypeError(f"{cls.__name__} has no JSON schema")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        shape = handler.generate_schema(cls.pydantic_model())
        return core_schema.no_info_plain_validator_function(
            cls.validate,
            json_schema_input_schema=shape,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda value: value.serialize()
            ),
        )


def custom_types_in(annotation: Any) -> list[type[Type]]:
    """Every `Type` subclass inside an annotation (`list[dict[str, Image]]` -> [Image])."""
    if isinstance(annotation, type) and issubclass(annotation, Type):
        return [annotation]
    if get_origin(annotation) is None:
        return []
    found: list[type[Type]] = []
    for arg in get_args(annotation):
        found.extend(custom_types_in(arg))
    return found


def holds_parts(text: str) -> bool:
    """True when `text` holds a marked value (`split_content_parts` has work to do)."""
    return _START in text


def split_content_parts(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """A user message whose text holds marked values, as a list of content parts.

    Other messages get DSPy's marker strings in place of lmvisor's; messages without
    marked values come back as they are.
    """
    content = message.get("content")
    if not isinstance(content, str) or _START not in content:
        return message
    if message.get("role") != "user":
        public = content.replace(_START, CUSTOM_TYPE_START).replace(_END, CUSTOM_TYPE_END)
        return {**message, "content": public}
    parts: list[dict[str, Any]] = []
    last = 0
    for match in _MARKED.finditer(content):
        start, end = match.span()
        if start > last:
            parts.append({"type": "text", "text": content[last:start]})
        parts.extend(_payload_parts(match.group(1).strip()))
        last = end
    if last < len(content):
        parts.append({"type": "text", "text": content[last:]})
    return {**message, "content": parts}


def _payload_parts(payload: str) -> list[dict[str, Any]]:
    decoded = _decode(payload)
    if isinstance(decoded, list):
        return [p if isinstance(p, dict) else {"type": "text", "text": str(p)} for p in decoded]
    return [{"type": "text", "text": payload}]


def _decode(payload: str) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        pass
    try:
        # Inside a list or dict the payload was JSON-encoded once more with its container.
        return json.loads(json.loads(f'"{payload}"'))
    except ValueError:
        pass
    try:
        return repair_json(payload)
    except ValueError:
        return None
