"""Deterministic answers for the loopback LM: text in the format a request asks for.

Pure functions, no I/O. An answer is a function of the request's content only, so the
same request always gets the same answer:

- DSPy ChatAdapter prompts (a system text with "Your output fields are:" and
  `[[ ## name ## ]]` markers ending in `[[ ## completed ## ]]`) get every output field
  in its marker, with a value fitting the field's declared type;
- DSPy XMLAdapter prompts (output fields shown between `<name>` tags) get every output
  field between its tags (`lmvisor.testing._lm_xml`);
- JSON requests (a `json_schema` response format, or `json_object` / DSPy JSONAdapter
  prompts) get a JSON object valid against the schema or naming every output field;
- anything else gets one line of plain text.

Strings are `"<label> <hash8> re: <snippet>"`, where hash8 is a stable hash of the last
user message (plus the label and choice index) and snippet is the first input value.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

__all__ = [
    "OutputField",
    "chat_adapter_answer",
    "dspy_output_fields",
    "estimate_tokens",
    "field_value",
    "fields_json_answer",
    "plain_answer",
    "render_value",
    "schema_value",
    "snippet_of",
    "stable_hash",
]

_OUTPUTS_HEADER = "Your output fields are:"
_FIELD_LINE = re.compile(r"^\d+\. `([^`]+)` \(")
_XML_INPUT = re.compile(r"<([A-Za-z_][\w.-]*)>\n(.*?)\n</\1>", re.DOTALL)
_NOTE = "# note: the value you produce "
_MAX_DEPTH = 8
_MAX_ITEMS = 16
_MAX_STRING = 4096
_SNIPPET_CHARS = 60


@dataclass(frozen=True, slots=True)
class OutputField:
    """One DSPy output field as the prompt declares it: name, type text and type note."""

    name: str
    type: str
    note: str = ""


def stable_hash(*parts: str) -> str:
    """Eight hex digits that depend only on `parts` (stable across processes)."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=4)
    return digest.hexdigest()


def estimate_tokens(text: str) -> int:
    """About four characters per token, and never zero."""
    return max(1, len(text) // 4)


def snippet_of(user_text: str) -> str:
    """The first input value of a DSPy prompt, else the first line of the text, shortened."""
    xml = _XML_INPUT.match(user_text)
    if user_text.startswith("[[ ## "):
        _, _, rest = user_text.partition(" ## ]]")
        value = rest.strip().split("\n\n", 1)[0]
    elif xml is not None:
        value = xml.group(2)
    else:
        value = user_text.strip().split("\n", 1)[0]
    value = value.strip().replace("\n", " ")
    return value[:_SNIPPET_CHARS]


@functools.lru_cache(maxsize=256)
def dspy_output_fields(system_text: str) -> tuple[OutputField, ...]:
    """The output fields a DSPy adapter's system text declares, in order (() if none).

    Memoised: a program sends the same system text on every call.
    """
    _, found, rest = system_text.partition(_OUTPUTS_HEADER)
    if not found:
        return ()
    fields: list[OutputField] = []
    for line in rest.lstrip("\n").split("\n"):
        match = _FIELD_LINE.match(line)
        if match is None:
            break
        type_text = _balanced(line, match.end() - 1)
        name = match.group(1)
        fields.append(OutputField(name, type_text, _note_for(system_text, name)))
    return tuple(fields)


def chat_adapter_answer(
    fields: Sequence[OutputField], *, seed: str, snippet: str, choice: int = 0
) -> str:
    """Every field in its ChatAdapter marker, then `[[ ## completed ## ]]`."""
    parts = []
    for spec in fields:
        value = field_value(spec, seed=seed, snippet=snippet, choice=choice)
        parts.append(f"[[ ## {spec.name} ## ]]\n{render_value(value)}\n\n")
    parts.append("[[ ## completed ## ]]")
    return "".join(parts)


def fields_json_answer(
    fields: Sequence[OutputField], *, seed: str, snippet: str, choice: int = 0
) -> str:
    """A JSON object holding a typed value for every field, in order."""
    values = {f.name: field_value(f, seed=seed, snippet=snippet, choice=choice) for f in fields}
    return json.dumps(values)


def plain_answer(*, seed: str, snippet: str, choice: int = 0) -> str:
    """One line of plain text for a request that asks for no format."""
    return _text("answer", seed=seed, snippet=snippet, choice=choice)


def schema_value(
    schema: Mapping[str, Any], *, seed: str, snippet: str, label: str = "value", choice: int = 0
) -> Any:
    """A JSON value valid against `schema` (types, enums, consts, refs, bounds, nesting).

    Every object property is filled, required or not; enums and unions take their first
    option; arrays get `minItems` items (1 to 16); numbers respect finite bounds;
    strings respect maxLength and minLength (up to 4096). Recursion stops at depth 8.
    """
    ctx = _SchemaContext(schema, seed=seed, snippet=snippet, choice=choice)
    return ctx.value(schema, label, 0)


def _balanced(line: str, open_index: int) -> str:
    """The text inside the parenthesis that opens at `open_index`, nesting respected."""
    depth = 0
    for index in range(open_index, len(line)):
        char = line[index]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return line[open_index + 1 : index]
    return line[open_index + 1 :]


def _note_for(system_text: str, name: str) -> str:
    """The `# note: the value you produce ...` text placed after `{name}`, if any."""
    marker = "{" + name + "}"
    start = system_text.find(marker)
    while start != -1:
        line_end = system_text.find("\n", start)
        line = system_text[start : line_end if line_end != -1 else len(system_text)]
        _, found, note = line.partition(_NOTE)
        if found:
            return note.strip()
        start = system_text.find(marker, start + 1)
    return ""


def _text(label: str, *, seed: str, snippet: str, choice: int) -> str:
    digest = stable_hash(seed, label, str(choice))
    return f"{label} {digest} re: {snippet}" if snippet else f"{label} {digest}"


def _number(label: str, *, seed: str, choice: int) -> int:
    return int(stable_hash(seed, label, str(choice), "n"), 16)


def render_value(value: Any) -> str:
    """A field value as ChatAdapter writes it: strings raw, the rest as JSON/Python."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    return json.dumps(value)


def field_value(spec: OutputField, *, seed: str, snippet: str, choice: int) -> Any:
    """A value for `spec`: its note's first option or schema value, else one fitting its type."""
    option, schema = _note_rule(spec.note)
    if option is not None:
        return option
    if schema is not None:
        return schema_value(schema, seed=seed, snippet=snippet, label=spec.name, choice=choice)
    return _type_value(spec.type, spec.name, seed=seed, snippet=snippet, choice=choice, depth=0)


@functools.lru_cache(maxsize=256)
def _note_rule(note: str) -> tuple[str | None, Mapping[str, Any] | None]:
    """(the first allowed option, or the JSON schema) a field's type note imposes, if any.

    Memoised like `dspy_output_fields`: the notes come from the same system texts.
    """
    _, found, options = note.partition("one of: ")
    if found:
        return options.split(";")[0].strip(), None
    _, found, schema_text = note.partition("must adhere to the JSON schema: ")
    if found:
        try:
            schema = json.loads(schema_text)
        except json.JSONDecodeError:
            schema = {}
        if isinstance(schema, dict) and schema:
            return None, schema
    return None, None


def _type_value(
    type_text: str, label: str, *, seed: str, snippet: str, choice: int, depth: int
) -> Any:
    """A Python value fitting a type as DSPy prints it (`list[str]`, `Literal['a']`...)."""
    head, args = _split_type(type_text.strip())
    if head in {"Optional", "Union"} and args:
        head, args = _split_type(next((a for a in args if a != "None"), args[0]))
    if depth >= _MAX_DEPTH:
        return None
    kw: dict[str, Any] = {"seed": seed, "snippet": snippet, "choice": choice, "depth": depth + 1}
    if head == "Literal" and args:
        try:
            return ast.literal_eval(args[0])
        except (ValueError, SyntaxError):
            return args[0].strip("'\"")
    if head == "int":
        return _number(label, seed=seed, choice=choice) % 100 + 1
    if head == "float":
        return round(0.5 + (_number(label, seed=seed, choice=choice) % 50) / 100, 2)
    if head == "bool":
        return True
    if head in {"list", "List", "set", "Set", "tuple", "Tuple", "Sequence"}:
        item = args[0] if args else "str"
        return [_type_value(item, label, **kw), _type_value(item, f"{label}2", **kw)]
    if head in {"dict", "Dict", "Mapping"}:
        value_type = args[1] if len(args) > 1 else "str"
        return {"key": _type_value(value_type, label, **kw)}
    return _text(label, seed=seed, snippet=snippet, choice=choice)


@functools.lru_cache(maxsize=1024)
def _split_type(type_text: str) -> tuple[str, tuple[str, ...]]:
    """`"dict[str, list[int]]"` -> `("dict", ("str", "list[int]"))`; `X | None` -> Union.

    Memoised: the same few type texts are split on every request.
    """
    pipe_parts = _split_top(type_text, "|")
    if len(pipe_parts) > 1:
        return "Union", pipe_parts
    head, bracket, rest = type_text.partition("[")
    if not bracket or not rest.endswith("]"):
        return type_text, ()
    return head.strip().rsplit(".", 1)[-1], _split_top(rest[:-1], ",")


def _split_top(text: str, separator: str) -> tuple[str, ...]:
    """Split on `separator` outside brackets and quotes."""
    parts: list[str] = []
    depth, quote, start = 0, "", 0
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:index].strip())
            start = index + 1
    parts.append(text[start:].strip())
    return tuple(p for p in parts if p)


class _SchemaContext:
    """Walks one JSON schema, resolving `$ref`s against its `$defs` / `definitions`."""

    def __init__(self, root: Mapping[str, Any], *, seed: str, snippet: str, choice: int) -> None:
        self._defs: dict[str, Any] = {}
        for key in ("$defs", "definitions"):
            defs = root.get(key)
            if isinstance(defs, Mapping):
                self._defs.update({f"#/{key}/{name}": d for name, d in defs.items()})
        self._seed, self._snippet, self._choice = seed, snippet, choice

    def value(self, schema: Any, label: str, depth: int) -> Any:
        if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
            return None
        if "$ref" in schema:
            return self.value(self._defs.get(str(schema["$ref"]), {}), label, depth + 1)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[0]
        for key in ("anyOf", "oneOf", "allOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                usable = [
                    o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")
                ]
                return self.value((usable or options)[0], label, depth + 1)
        return self._typed(schema, _schema_type(schema), label, depth)

    def _typed(self, schema: Mapping[str, Any], kind: str, label: str, depth: int) -> Any:
        if kind == "object":
            props = schema.get("properties")
            if not isinstance(props, Mapping):
                return {}
            return {str(k): self.value(v, str(k), depth + 1) for k, v in props.items()}
        if kind == "array":
            count = _bounded(schema.get("minItems"), default=1, low=1, high=_MAX_ITEMS)
            items = schema.get("items", {})
            return [self.value(items, f"{label}{i or ''}", depth + 1) for i in range(count)]
        if kind in {"integer", "number"}:
            return self._numeric(schema, kind, label)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string(schema, label)

    def _numeric(self, schema: Mapping[str, Any], kind: str, label: str) -> int | float:
        raw = _number(label, seed=self._seed, choice=self._choice)
        value: float = raw % 100 + 1 if kind == "integer" else round(0.5 + (raw % 50) / 100, 2)
        low, high = schema.get("minimum"), schema.get("maximum")
        integer = kind == "integer"
        if _finite(low):
            value = max(value, math.ceil(low) if integer else low)
        if _finite(high):
            value = min(value, math.floor(high) if integer else high)
        return int(value) if integer else float(value)

    def _string(self, schema: Mapping[str, Any], label: str) -> str:
        fmt = schema.get("format")
        if fmt == "date-time":
            return "2026-01-01T00:00:00Z"
        if fmt == "date":
            return "2026-01-01"
        if fmt == "email":
            return "user@example.com"
        if fmt in {"uri", "url"}:
            return "https://example.com/"
        text = _text(label, seed=self._seed, snippet=self._snippet, choice=self._choice)
        text = text[: _bounded(schema.get("maxLength"), default=len(text), low=0, high=len(text))]
        min_length = _bounded(schema.get("minLength"), default=0, low=0, high=_MAX_STRING)
        return text.ljust(min_length, "x")


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _bounded(value: Any, *, default: int, low: int, high: int) -> int:
    """An integer schema keyword clamped to [low, high]; `default` when absent or not an int."""
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return min(max(value, low), high)


def _schema_type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"
