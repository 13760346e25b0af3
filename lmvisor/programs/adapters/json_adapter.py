"""JSONAdapter: DSPy 3.4.1's JSON layout and structured-output request.

Same field lists as the ChatAdapter, then the JSON skeleton of the outputs. The request
carries `response_format`: a strict json_schema named "DSPyProgramOutputs" when the LM
supports schemas (and no output is an open-ended dict), else `{"type": "json_object"}`.
Native function calling is on by default, as in DSPy. Parsing reads the completion as
DSPy does: the whole text leniently, else its first balanced `{...}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, get_origin

from lmvisor.programs._json_repair import repair_json
from lmvisor.programs.adapters._native import tool_calls_output
from lmvisor.programs.adapters._schema import structured_output_schema
from lmvisor.programs.adapters._values import field_placeholder, serialize_for_json, type_hint
from lmvisor.programs.adapters.chat import ChatAdapter
from lmvisor.programs.callbacks import Callback
from lmvisor.programs.lm import LMCapabilities
from lmvisor.programs.signature import Signature
from lmvisor.programs.tool_calls import ToolCalls

__all__ = ["JSONAdapter", "first_json_object"]

_JSON_OBJECT: dict[str, Any] = {"type": "json_object"}


class JSONAdapter(ChatAdapter):
    """Asks for one JSON object holding every output field; no further fallback.

    Args:
        callbacks: adapter-level hooks.
        use_native_function_calling: send a `ToolCalls` output's tools natively (default).
        parallel_tool_calls: with native calls, ask for parallel calls (None: vendor default).
    """

    name: ClassVar[str] = "JSONAdapter"

    def __init__(
        self,
        *,
        callbacks: Sequence[Callback] = (),
        use_native_function_calling: bool = True,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        super().__init__(
            callbacks=callbacks,
            use_native_function_calling=use_native_function_calling,
            use_json_adapter_fallback=False,
            parallel_tool_calls=parallel_tool_calls,
        )

    def request_params(
        self, signature: type[Signature], capabilities: LMCapabilities
    ) -> dict[str, Any]:
        """`response_format`: the strict json_schema when possible, else json_object."""
        if not capabilities.json_schema:
            return {"response_format": _JSON_OBJECT}
        native = self.use_native_function_calling
        key = ("JSONAdapter", "response_format", native)
        cached = signature._cache.get(key)
        if cached is None:
            cached = signature._cache[key] = _response_format(signature, native)
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

        A missing output whose type allows None parses to None, as in DSPy.

        Raises:
            AdapterParseError: no JSON object, a missing field, or a value of the wrong type.
            ConstraintError: an output breaks its field's bound.
        """
        data = _load_object(completion)
        if data is None:
            raise self._parse_error(signature, completion, "no JSON object in the completion")
        outputs = signature._outputs
        values: dict[str, Any] = {}
        for name, field in outputs.items():
            if name in data:
                values[name] = self._parse_field(signature, completion, field, data[name], values)
        return self._complete(signature, completion, values)


def _response_format(signature: type[Signature], native: bool) -> dict[str, Any]:
    open_ended = any(
        get_origin(f.annotation) is dict or f.annotation is dict
        for f in signature._outputs.values()
    )
    if open_ended or (not native and tool_calls_output(signature) is not None):
        return _JSON_OBJECT
    try:
        schema = structured_output_schema(
            signature, skip=(lambda t: t is ToolCalls) if native else (lambda t: False)
        )
    except Exception:  # a type pydantic cannot put in a schema: JSON mode, as DSPy falls back
        return _JSON_OBJECT
    return {
        "type": "json_schema",
        "json_schema": {"name": "DSPyProgramOutputs", "schema": schema, "strict": True},
    }


def _load_object(completion: str) -> dict[str, Any] | None:
    """The completion's JSON object, read as DSPy 3.4.1 reads it; None if there is none."""
    try:
        data = json.loads(completion)
    except (ValueError, RecursionError):
        data = _lenient(completion)
    if isinstance(data, dict):
        return data
    found = first_json_object(completion)
    if found is None:
        return None
    data = _lenient(found)
    return data if isinstance(data, dict) else None


def _lenient(text: str) -> Any:
    try:
        return repair_json(text)
    except ValueError:
        return None


def first_json_object(text: str) -> str | None:
    """The first balanced `{...}` in `text` (braces counted as DSPy's recursive pattern
    counts them, inside strings too), or None. One pass, whatever the text.
    """
    opened: list[int] = []
    best: tuple[int, int] | None = None
    for i, ch in enumerate(text):
        if ch == "{":
            opened.append(i)
        elif ch == "}" and opened:
            start = opened.pop()
            if best is None or start < best[0]:
                best = (start, i)
    return None if best is None else text[best[0] : best[1] + 1]
