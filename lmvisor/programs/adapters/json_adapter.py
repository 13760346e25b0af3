"""JSONAdapter: DSPy 3.4.1's JSON layout and structured-output request.

Same field lists as the ChatAdapter, then the JSON skeleton of the outputs. The request
carries `response_format`: a strict json_schema named "DSPyProgramOutputs" when the LM
supports schemas (and no output is an open-ended dict), else `{"type": "json_object"}`.
Parsing tolerates code fences, text around the object and small syntax slips.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, get_origin

from lmvisor.programs.adapters._values import (
    field_placeholder,
    parse_value,
    serialize_for_json,
    type_hint,
)
from lmvisor.programs.adapters.chat import ChatAdapter
from lmvisor.programs.callbacks import Callback
from lmvisor.programs.lm import LMCapabilities
from lmvisor.programs.signature import Signature

__all__ = ["JSONAdapter", "structured_output_schema"]

_JSON_OBJECT: dict[str, Any] = {"type": "json_object"}


class JSONAdapter(ChatAdapter):
    """Asks for one JSON object holding every output field; no further fallback."""

    name: ClassVar[str] = "JSONAdapter"

    def __init__(self, *, callbacks: Sequence[Callback] = ()) -> None:
        super().__init__(callbacks=callbacks, use_json_adapter_fallback=False)

    def request_params(
        self, signature: type[Signature], capabilities: LMCapabilities
    ) -> dict[str, Any]:
        """`response_format`: the strict json_schema when possible, else json_object."""
        if not capabilities.json_schema:
            return {"response_format": _JSON_OBJECT}
        key = ("JSONAdapter", "response_format")
        cached = signature._cache.get(key)
        if cached is None:
            try:
                schema = structured_output_schema(signature)
            except ValueError:
                cached = _JSON_OBJECT
            else:
                cached = {
                    "type": "json_schema",
                    "json_schema": {"name": "DSPyProgramOutputs", "schema": schema, "strict": True},
                }
            signature._cache[key] = cached
        return {"response_format": cached}

    def format_field_structure(self, signature: type[Signature]) -> str:
        """Inputs as marker sections, outputs as the JSON skeleton with type notes."""
        inputs = "\n\n".join(
            f"[[ ## {f.name} ## ]]\n{field_placeholder(f)}" for f in signature._inputs.values()
        ).strip()
        skeleton = {f.name: field_placeholder(f) for f in signature._outputs.values()}
        parts = [
            "All interactions will be structured in the following way, "
            "with the appropriate values filled in.",
            "Inputs will have the following structure:",
            inputs,
            "Outputs will be a JSON object with the following fields.",
            json.dumps(skeleton, indent=2, ensure_ascii=False),
        ]
        return "\n\n".join(parts).strip()

    def _output_requirements(self, signature: type[Signature]) -> str:
        order = ", then ".join(f"`{f.name}`{type_hint(f)}" for f in signature._outputs.values())
        return f"Respond with a JSON object in the following order of fields: {order}."

    def format_assistant_message_content(
        self,
        signature: type[Signature],
        outputs: Mapping[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        """A demo's outputs as an indented JSON object."""
        values = {
            f.name: outputs.get(f.name, missing_field_message) for f in signature._outputs.values()
        }
        return json.dumps(serialize_for_json(values), indent=2, ensure_ascii=False)

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """Read the JSON object (fences, prose and slips tolerated) and type each output.

        Raises:
            AdapterParseError: no JSON object, a missing field, or a value of the wrong type.
        """
        data = _load_object(completion)
        if data is None:
            raise self._parse_error(signature, completion, "no JSON object in the completion")
        outputs = signature._outputs
        values: dict[str, Any] = {}
        for name, field in outputs.items():
            if name not in data:
                continue
            try:
                values[name] = parse_value(data[name], field.annotation)
            except ValueError as exc:
                problem = f"field {name!r} does not fit {field.annotation!r}: {exc}"
                raise self._parse_error(signature, completion, problem, values) from None
        if len(values) != len(outputs):
            missing = [n for n in outputs if n not in values]
            raise self._parse_error(
                signature, completion, f"missing output fields {missing}", values
            )
        return values


def _load_object(completion: str) -> dict[str, Any] | None:
    text = completion.strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return data
    import json_repair

    start, end = text.find("{"), text.rfind("}")
    candidates = [text[start : end + 1]] if 0 <= start < end else []
    candidates.append(text)
    for candidate in candidates:
        try:
            repaired = json_repair.loads(candidate)
        except Exception:  # json_repair raises assorted errors on pathological input
            continue
        if isinstance(repaired, dict):
            return repaired
    return None


def structured_output_schema(signature: type[Signature]) -> dict[str, Any]:
    """The strict JSON schema of the outputs (OpenAI Structured Outputs rules).

    Raises:
        ValueError: an output is an open-ended dict, which strict schemas cannot express.
    """
    import pydantic

    fields: dict[str, Any] = {}
    for name, field in signature._outputs.items():
        if get_origin(field.annotation) is dict or field.annotation is dict:
            raise ValueError(f"output field {name!r} is an open-ended mapping")
        fields[name] = (field.annotation, ...)
    model = pydantic.create_model(
        "DSPyProgramOutputs", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )
    schema: dict[str, Any] = model.model_json_schema()
    _enforce_required(schema)
    return schema


def _enforce_required(part: dict[str, Any]) -> None:
    if part.get("type") == "object":
        props = part.get("properties")
        if props is None:
            part["properties"], part["required"] = {}, []
        else:
            part["required"] = list(props)
            for sub in props.values():
                if isinstance(sub, dict):
                    _enforce_required(sub)
        part["additionalProperties"] = False
    items = part.get("items")
    if part.get("type") == "array" and isinstance(items, dict):
        _enforce_required(items)
    for key in ("$defs", "definitions"):
        for sub in part.get(key, {}).values():
            _enforce_required(sub)
