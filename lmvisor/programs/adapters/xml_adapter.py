"""XMLAdapter: DSPy 3.4.1's XML layout — each field between `<name>` tags — byte for byte.

Structured outputs (lists, dicts, pydantic models) are written and read as nested XML:
`<items><item>a</item></items>`, `<item><name>...</name></item>`, with a skeleton of the
nesting shown in the system message and the reminder. Parsing reads the completion as an
XML fragment; each output is read against its type's JSON schema, trying the branches of
an optional or union type in turn.

Unlike DSPy, a bare `&` in the completion (as in "salt & pepper") is read as text rather
than failing the parse.
"""

from __future__ import annotations

import re
import types
import typing
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Union, get_args, get_origin

from lmvisor.programs._types import type_adapter
from lmvisor.programs.adapters._values import (
    field_placeholder,
    format_field_value,
    parse_value,
    serialize_for_json,
)
from lmvisor.programs.adapters.chat import ChatAdapter
from lmvisor.programs.custom_types import Type
from lmvisor.programs.fields import Field
from lmvisor.programs.signature import Signature

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

__all__ = ["XMLAdapter"]

_BARE_AMPERSAND = re.compile(r"&(?!#\d+;|#x[0-9a-fA-F]+;|\w+;)")


class XMLAdapter(ChatAdapter):
    """Fields between XML tags in, fields between XML tags out (JSONAdapter as fallback)."""

    name: ClassVar[str] = "XMLAdapter"

    def format_field_structure(self, signature: type[Signature]) -> str:
        """Each field with its placeholder (or nested skeleton), inputs then outputs."""
        groups = (
            "\n\n".join(self._structure_of(f) for f in fields.values())
            for fields in (signature._inputs, signature._outputs)
        )
        return "\n\n".join(
            (
                "All interactions will be structured in the following way, "
                "with the appropriate values filled in.",
                *groups,
            )
        )

    def _structure_of(self, field: Field) -> str:
        if field.kind == "output" and _uses_nested_xml(field.annotation):
            return _xml_skeleton(field.name, field.annotation)
        return self.format_fields_with_values([(field, field_placeholder(field))])

    def format_fields_with_values(self, pairs: Iterable[tuple[Field, Any]]) -> str:
        """Each field's value between its tags; structured outputs as nested XML."""
        parts = []
        for field, value in pairs:
            output = field.kind == "output"
            if output and _uses_nested_xml(field.annotation):
                serialized = serialize_for_json(value)
                if isinstance(serialized, dict | list):
                    parts.append(_value_to_xml(serialized, field.name))
                    continue
            text = format_field_value(field, value)
            if output and field.annotation is str:
                text = text.replace("&", "&amp;").replace("<", "&lt;")
            parts.append(f"<{field.name}>\n{text}\n</{field.name}>")
        return "\n\n".join(parts).strip()

    def format_user_message_content(
        self,
        signature: type[Signature],
        inputs: Mapping[str, Any],
        *,
        prefix: str = "",
        main_request: bool = False,
    ) -> str:
        """The given inputs between their tags, plus the output reminder if asked."""
        given = [(f, inputs[n]) for n, f in signature._inputs.items() if n in inputs]
        parts = [prefix, self.format_fields_with_values(given)]
        if main_request:
            parts.append(self.user_message_output_requirements(signature))
        return "\n\n".join(parts).strip()

    def format_assistant_message_content(
        self,
        signature: type[Signature],
        outputs: Mapping[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        """A demo's outputs between their tags."""
        return self.format_fields_with_values(
            (f, outputs.get(n, missing_field_message)) for n, f in signature._outputs.items()
        )

    def _output_requirements(self, signature: type[Signature]) -> str:
        tags = ", then ".join(f"`<{name}>`" for name in signature._outputs)
        skeletons = [
            _xml_skeleton(f.name, f.annotation)
            for f in signature._outputs.values()
            if _uses_nested_xml(f.annotation)
        ]
        nested = f" Use this nested XML structure: {' '.join(skeletons)}" if skeletons else ""
        return f"Respond with the corresponding output fields wrapped in XML tags {tags}.{nested}"

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """Read each output from its element, typed against its JSON schema.

        Raises:
            AdapterParseError: the completion is not XML, an output is missing or
                does not fit its type.
            ConstraintError: an output breaks its field's bound.
        """
        import xml.etree.ElementTree as ET

        text = _BARE_AMPERSAND.sub("&amp;", completion)
        try:
            root = ET.fromstring(f"<dspy_root>{text}</dspy_root>")
        except ET.ParseError as exc:
            raise self._parse_error(signature, completion, f"not XML: {exc}") from None
        except UnicodeEncodeError as exc:  # a lone surrogate: the parser takes UTF-8 only
            raise self._parse_error(signature, completion, f"not XML: {exc.reason}") from None
        elements = _group_children(root)
        values: dict[str, Any] = {}
        for name, field in signature._outputs.items():
            if name in elements:
                value = self._read_field(signature, completion, field, elements[name], values)
                values[name] = self._checked(signature, completion, field, value, values)
        return self._complete(signature, completion, values)

    def _read_field(
        self,
        signature: type[Signature],
        completion: str,
        field: Field,
        elements: list[ET.Element],
        parsed: Mapping[str, Any],
    ) -> Any:
        """The field's value from its elements: the first schema branch that reads and fits.

        Raises:
            AdapterParseError: no branch fits.
        """
        schema = type_adapter(field.annotation).json_schema(by_alias=False)
        definitions = schema.get("$defs", {})
        problem = "no value"
        for candidate in [schema, *schema.get("anyOf", [])]:
            try:
                value = _elements_to_value(elements, candidate, definitions)
                return _fitting(value, field.annotation)
            except RecursionError:
                problem = "nested too deeply"
                break
            except ValueError as exc:
                problem = str(exc)
        raise self._parse_error(
            signature, completion, f"field {field.name!r} cannot be read: {problem}", parsed
        )


def _fitting(value: Any, annotation: Any) -> Any:
    """The value typed as DSPy types it: its text rules first, then pydantic by field name.

    Raises:
        ValueError: neither fits.
    """
    try:
        return parse_value(value, annotation)
    except ValueError:
        return type_adapter(annotation).validate_python(value, by_name=True)


def _uses_nested_xml(annotation: Any) -> bool:
    """True for list, dict, TypedDict and pydantic model outputs (not lmvisor's own types)."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if len(args) == 1 and get_origin(annotation) in (Union, types.UnionType):
        annotation = args[0]
    origin = get_origin(annotation)
    item = get_args(annotation)[0] if origin is list and get_args(annotation) else annotation
    if isinstance(item, type) and issubclass(item, Type):
        return False
    if origin in (list, dict) or typing.is_typeddict(annotation):
        return True
    return isinstance(annotation, type) and hasattr(annotation, "model_json_schema")


def _value_to_xml(value: Any, tag: str, key: str | None = None) -> str:
    attrs = f" key={_quote_attribute(key)}" if key is not None else ""
    if isinstance(value, list):
        children = "".join(_value_to_xml(item, "item") for item in value)
        return f"<{tag}{attrs}>{children}</{tag}>" if children else f"<{tag}{attrs} />"
    if isinstance(value, dict):
        parts = []
        for name, child in value.items():
            name = str(name)
            valid = (name[:1] + name[1:].replace("-", "_").replace(".", "_")).isidentifier()
            parts.append(
                _value_to_xml(child, name) if valid else _value_to_xml(child, "entry", name)
            )
        return f"<{tag}{attrs}>{''.join(parts)}</{tag}>"
    if value is None:
        return f"<{tag}{attrs} />"
    text = str(value).replace("&", "&amp;").replace("<", "&lt;")
    return f"<{tag}{attrs}>{text}</{tag}>"


def _xml_skeleton(tag: str, annotation: Any) -> str:
    schema = type_adapter(annotation).json_schema(by_alias=False)
    return _schema_to_xml(tag, schema, schema.get("$defs", {}), frozenset())


def _schema_to_xml(
    tag: str, schema: Mapping[str, Any], definitions: Mapping[str, Any], seen: frozenset[str]
) -> str:
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        if name in seen:
            return f"<{tag}>...</{tag}>"
        return _schema_to_xml(tag, definitions[name], definitions, seen | {name})
    choices = schema.get("anyOf")
    if choices:
        chosen = next((c for c in choices if c.get("type") != "null"), choices[0])
        return _schema_to_xml(tag, chosen, definitions, seen)
    if schema.get("type") == "array":
        item = _schema_to_xml("item", schema.get("items", {}), definitions, seen)
        return f"<{tag}>{item}</{tag}>"
    children = "".join(
        _schema_to_xml(name, child, definitions, seen)
        for name, child in schema.get("properties", {}).items()
    )
    return f"<{tag}>{children}</{tag}>" if children else f"<{tag}>...</{tag}>"


def _group_children(element: ET.Element) -> dict[str, list[ET.Element]]:
    groups: dict[str, list[ET.Element]] = defaultdict(list)
    for child in element:
        key = child.attrib.get("key", child.tag) if child.tag == "entry" else child.tag
        groups[key].append(child)
    return groups


def _elements_to_value(
    elements: list[ET.Element], schema: Mapping[str, Any], definitions: Mapping[str, Any]
) -> Any:
    """The JSON-like value of same-named elements read against a schema node.

    Raises:
        ValueError: from pydantic, never here; RecursionError on absurd nesting.
    """
    schema = definitions.get(str(schema.get("$ref", "")).rsplit("/", 1)[-1], schema)
    choices = schema.get("anyOf")
    if choices:
        first = elements[0]
        if {"type": "null"} in choices and not list(first) and not (first.text or "").strip():
            return None
        choices = [c for c in choices if c.get("type") != "null"]
        schema = choices[0]
        if list(first):
            schema = next((c for c in choices if c.get("type") != "string"), schema)
    if schema.get("type") == "array":
        return _array_value(elements, schema, definitions)
    element = elements[0]
    if schema.get("type") == "string" and list(element):
        from xml.etree.ElementTree import tostring

        inner = "".join(tostring(child, encoding="unicode") for child in element)
        return (element.text or "") + inner
    children = _group_children(element)
    if not children:
        if schema.get("type") == "object" and not (element.text or "").strip():
            return {}
        texts = [(e.text or "").strip() for e in elements]
        return texts[0] if len(texts) == 1 else texts
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", {})
    extra = extra if isinstance(extra, dict) else {}
    return {
        name: _elements_to_value(items, properties.get(name, extra), definitions)
        for name, items in children.items()
    }


def _array_value(
    elements: list[ET.Element], schema: Mapping[str, Any], definitions: Mapping[str, Any]
) -> Any:
    if len(elements) == 1 and not list(elements[0]):
        text = (elements[0].text or "").strip()
        if not text or text.startswith("["):
            return text or []  # empty, or JSON written inside the tag
    if len(elements) == 1:
        items = _group_children(elements[0]).get("item")
        if items:
            elements = items
    return [_elements_to_value([e], schema.get("items", {}), definitions) for e in elements]


def _quote_attribute(value: str) -> str:
    """An XML attribute value, quoted and escaped as `xml.sax.saxutils.quoteattr` does."""
    text = value.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")
    text = text.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    return '"{}"'.format(text.replace('"', "&quot;"))
