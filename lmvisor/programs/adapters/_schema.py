"""The strict JSON schema JSONAdapter sends as `response_format`, shaped as DSPy 3.4.1
sends it: pydantic's schema of the outputs, every object closed and fully required, then
OpenAI's strict-mode rules (null defaults dropped, a described `$ref` inlined).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, get_origin

from lmvisor.programs.custom_types import Type
from lmvisor.programs.signature import Signature

__all__ = ["structured_output_schema"]


def structured_output_schema(
    signature: type[Signature], *, skip: Callable[[Any], bool] = lambda annotation: False
) -> dict[str, Any]:
    """The strict JSON schema of the outputs (OpenAI Structured Outputs rules).

    Outputs whose annotation `skip` accepts are left out (ToolCalls answered natively).

    Raises:
        ValueError: an output is an open-ended dict, which strict schemas cannot express.
    """
    import pydantic

    fields: dict[str, Any] = {}
    for name, field in signature._outputs.items():
        if get_origin(field.annotation) is dict or field.annotation is dict:
            raise ValueError(f"output field {name!r} is an open-ended mapping")
        if not skip(field.annotation):
            fields[name] = (field.annotation, ...)
    model = pydantic.create_model(
        "DSPyProgramOutputs", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )
    schema: dict[str, Any] = model.model_json_schema()
    _untitle_type_refs(schema, signature)
    _close_objects(schema)
    strict: dict[str, Any] = _strict(schema, schema, frozenset())
    return strict


def _untitle_type_refs(schema: dict[str, Any], signature: type[Signature]) -> None:
    """Drop the title pydantic puts beside the `$ref` of an output typed with a `Type`.

    DSPy's types are pydantic models, whose references carry no field title; lmvisor's are
    validated by function, so pydantic adds one, and a `$ref` with a sibling would be
    inlined below. Without it, the output is the bare reference DSPy sends.
    """
    properties = schema.get("properties", {})
    for name, field in signature._outputs.items():
        node = properties.get(name)
        annotation = field.annotation
        is_type = isinstance(annotation, type) and issubclass(annotation, Type)
        if is_type and isinstance(node, dict) and set(node) == {"$ref", "title"}:
            del node["title"]


def _close_objects(part: dict[str, Any]) -> None:
    """Every object lists all its properties as required and takes no others (in place)."""
    if part.get("type") == "object":
        props = part.get("properties")
        if props is None:
            part["properties"], part["required"] = {}, []
        else:
            part["required"] = list(props)
            for sub in props.values():
                if isinstance(sub, dict):
                    _close_objects(sub)
        part["additionalProperties"] = False
    items = part.get("items")
    if part.get("type") == "array" and isinstance(items, dict):
        _close_objects(items)
    for key in ("$defs", "definitions"):
        for sub in part.get(key, {}).values():
            _close_objects(sub)


def _strict(node: Any, root: Mapping[str, Any], inlining: frozenset[str]) -> Any:
    """OpenAI's strict-mode shape of a schema node, as a new dict (key order as DSPy's).

    `inlining` holds the refs being inlined around this node: a recursive model keeps its
    inner `$ref` rather than being inlined forever.
    """
    if not isinstance(node, dict):
        return node

    def sub(item: Any) -> Any:
        return _strict(item, root, inlining)

    out = dict(node)
    for key in ("$defs", "definitions"):
        if isinstance(out.get(key), dict):
            out[key] = {name: sub(item) for name, item in out[key].items()}
    if out.get("type") == "object" and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if isinstance(out.get("properties"), dict):
        out["required"] = list(out["properties"])
        out["properties"] = {name: sub(item) for name, item in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = sub(out["items"])
    if isinstance(out.get("anyOf"), list):
        out["anyOf"] = [sub(item) for item in out["anyOf"]]
    if isinstance(out.get("allOf"), list):
        if len(out["allOf"]) == 1:
            out.update(sub(out.pop("allOf")[0]))
        else:
            out["allOf"] = [sub(item) for item in out["allOf"]]
    if "default" in out and out["default"] is None:
        del out["default"]  # the field stays nullable; strict mode refuses the default
    ref = out.get("$ref")
    if isinstance(ref, str) and len(out) > 1 and ref not in inlining:
        # Strict mode refuses a $ref with siblings ("description"): inline the target.
        target = _resolve(root, ref)
        if isinstance(target, dict):
            inlined = _strict(target, root, inlining | {ref})
            out = {**inlined, **{k: v for k, v in out.items() if k != "$ref"}}
    return out


def _resolve(root: Mapping[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"unsupported $ref {ref!r}: only local references are resolved")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            raise ValueError(f"cannot resolve $ref {ref!r}")
    return node
