"""TwoStepAdapter: DSPy 3.4.1's two-stage call, byte for byte.

The main LM (often a reasoning model, poor at strict formats) gets a plain prompt: the
task, the fields, and the inputs as `name: value` lines. A second, smaller LM then
extracts the outputs from that free text with a ChatAdapter call of its own
(`text -> <the outputs>`). Both calls are recorded, accounted and hooked as any LM call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from lmvisor.programs.adapters._native import tool_calls_output
from lmvisor.programs.adapters.base import Adapter, AdapterResult, LMInvoke
from lmvisor.programs.adapters.chat import ChatAdapter, format_fields
from lmvisor.programs.callbacks import Callback
from lmvisor.programs.errors import AdapterParseError
from lmvisor.programs.fields import InputField
from lmvisor.programs.lm import LM, LMCapabilities, LMResponse
from lmvisor.programs.lm_invoker import LMInvoker
from lmvisor.programs.signature import Signature
from lmvisor.programs.tool_calls import ToolCalls

__all__ = ["TwoStepAdapter"]


class TwoStepAdapter(Adapter):
    """A plain prompt for the main LM, then structured extraction by `extraction_model`.

    Args:
        extraction_model: the LM that extracts the outputs from the main LM's text.
        callbacks: adapter-level hooks.

    Raises:
        TypeError: `extraction_model` is not an LM.
    """

    name: ClassVar[str] = "TwoStepAdapter"

    def __init__(self, extraction_model: LM, *, callbacks: Sequence[Callback] = ()) -> None:
        super().__init__(callbacks=callbacks)
        if not isinstance(extraction_model, LM):
            raise TypeError("extraction_model must be an LM")
        self.extraction_model = extraction_model

    def format(
        self,
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        """The task as a system message, the demos, then the inputs as `name: value` lines."""
        return [
            {"role": "system", "content": self.format_task_description(signature)},
            *self.format_demos(signature, demos),
            {"role": "user", "content": self.format_user_message_content(signature, inputs)},
        ]

    def format_task_description(self, signature: type[Signature]) -> str:
        """What the main LM is told: its role, the inputs, the outputs, the instructions."""
        parts = [
            "You are a helpful assistant that can solve tasks based on user input.",
            "As input, you will be provided with:\n" + format_fields(signature._inputs),
            "Your outputs must contain:\n" + format_fields(signature._outputs),
            "You should lay out your outputs in detail so that your answer can be understood "
            "by another agent",
        ]
        if signature.instructions:
            parts.append(f"Specific instructions: {signature.instructions}")
        return "\n".join(parts)

    def format_user_message_content(
        self,
        signature: type[Signature],
        inputs: Mapping[str, Any],
        *,
        prefix: str = "",
        main_request: bool = False,
    ) -> str:
        """The given inputs as `name: value` paragraphs (values as Python prints them)."""
        parts = [prefix, *(f"{n}: {inputs[n]}" for n in signature._inputs if n in inputs)]
        return "\n\n".join(parts).strip()

    def format_assistant_message_content(
        self,
        signature: type[Signature],
        outputs: Mapping[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        """A demo's given outputs as `name: value` paragraphs."""
        return "\n\n".join(f"{n}: {outputs[n]}" for n in signature._outputs if n in outputs)

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """Not available: extraction is an LM call; use `run` (or `aparse`)."""
        raise TypeError("TwoStepAdapter parses with an LM call: use `await adapter.aparse(...)`")

    async def aparse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """The outputs the extraction model reads in `completion`.

        Raises:
            AdapterParseError: the extraction did not parse.
        """
        from lmvisor.programs.settings import active_callbacks, current_history

        invoke = LMInvoker(self.extraction_model, active_callbacks(), current_history())
        return await self._extract(invoke, signature, completion)

    async def run(
        self,
        invoke: LMInvoke,
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
        *,
        params: Mapping[str, Any],
        capabilities: LMCapabilities,
        callbacks: Sequence[Callback] = (),
    ) -> AdapterResult:
        """The main call, then one extraction call per completion.

        Raises:
            AdapterParseError: the main LM returned nothing, or an extraction failed.
            LmvisorError: whatever either LM raises.
        """
        from lmvisor.programs.settings import current_history

        hooks = (*callbacks, *self.callbacks)
        messages = self._format_hooked(hooks, signature, demos, inputs)
        response = await invoke(messages, params)
        if not response.outputs:
            raise self._parse_error(signature, "", "the LM returned no completion")
        extract = LMInvoker(self.extraction_model, hooks, current_history())
        values = []
        for index, text in enumerate(response.outputs):
            value = await self._extract(extract, signature, text)
            values.append(_with_tool_calls(signature, value, response, index))
        return values, response

    async def _extract(
        self, invoke: LMInvoke, signature: type[Signature], text: str
    ) -> dict[str, Any]:
        extractor = _extractor_signature(signature)
        try:
            values, _ = await ChatAdapter().run(
                invoke,
                extractor,
                [],
                {"text": text},
                params={},
                capabilities=self.extraction_model.capabilities,
            )
        except AdapterParseError as exc:
            raise self._parse_error(
                signature, text, f"the extraction model's answer did not parse: {exc.problem}"
            ) from exc
        return values[0]


def _with_tool_calls(
    signature: type[Signature], value: dict[str, Any], response: LMResponse, index: int
) -> dict[str, Any]:
    field = tool_calls_output(signature)
    if field is not None and index == 0 and response.tool_calls:
        calls = ToolCalls({"name": c.name, "args": dict(c.arguments)} for c in response.tool_calls)
        return {**value, field: calls}  # a copy: the extraction's parse callbacks saw `value`
    return value


def _extractor_signature(signature: type[Signature]) -> type[Signature]:
    """`text -> <the outputs>`, with DSPy's extraction instructions (cached on `signature`)."""
    key = ("TwoStepAdapter", "extractor")
    cached = signature._cache.get(key)
    if cached is None:
        outputs = ", ".join(f"`{name}`" for name in signature._outputs)
        # DSPy's text runs on from a continued source line: 13 spaces before "Your job".
        instructions = (
            "The input is a text that should contain all the necessary information to "
            f"produce the fields {outputs}. {' ' * 12}Your job is to extract the fields from "
            "the text verbatim. Extract precisely the appropriate value (content) for each field."
        )
        extractor = signature
        for name in signature._inputs:
            extractor = extractor.delete(name)
        cached = extractor.prepend("text", InputField(), str).with_instructions(instructions)
        signature._cache[key] = cached
    return cached
