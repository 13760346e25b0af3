"""The adapter contract: format a signature, demos and inputs into chat messages, call
the LM once through the caller's `invoke`, and parse each completion into typed values.

Around that, as DSPy 3.4.1 does: native features are planned first (`_native`: tools
sent natively for a `ToolCalls` output, native reasoning for a `Reasoning` output), and
each parsed completion is completed (missing optional outputs None, native outputs
filled from the response).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

from lmvisor.programs.adapters._native import CallPlan, finish_values, plan_call
from lmvisor.programs.callbacks import Callback, new_call_id, notify
from lmvisor.programs.errors import AdapterParseError
from lmvisor.programs.lm import LMCapabilities, LMResponse
from lmvisor.programs.signature import Signature
from lmvisor.programs.streaming import streamed_chunks

__all__ = ["Adapter", "AdapterResult", "LMInvoke"]

_INCOMPLETE_DEMO = (
    "This is an example of the task, though some input or output fields are not supplied."
)
_MISSING_IN_DEMO = "Not supplied for this particular example. "
_MISSING_IN_HISTORY = "Not supplied for this conversation history message. "

LMInvoke = Callable[[list[dict[str, Any]], Mapping[str, Any]], Awaitable[LMResponse]]
"""Sends messages with params to the LM and returns its response (built by Predict)."""

AdapterResult = tuple[list[dict[str, Any]], LMResponse]
"""The parsed values of each completion, and the LM's response."""


class Adapter:
    """Base adapter: subclasses implement `format`, `parse` and maybe `request_params`.

    Args:
        callbacks: adapter-level hooks (format/parse start and end).
        use_native_function_calling: send a `ToolCalls` output's tools natively.
        parallel_tool_calls: with native calls, ask the vendor for parallel calls (or not);
            None leaves the vendor's default.
    """

    name: ClassVar[str] = "Adapter"

    def __init__(
        self,
        *,
        callbacks: Sequence[Callback] = (),
        use_native_function_calling: bool = False,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        self.callbacks: tuple[Callback, ...] = tuple(callbacks)
        self.use_native_function_calling = use_native_function_calling
        self.parallel_tool_calls = parallel_tool_calls

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def format(
        self,
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        """The chat messages for one call (system, demo turns, the request)."""
        raise TypeError(f"{type(self).__name__} must implement format()")

    def format_demos(
        self, signature: type[Signature], demos: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Incomplete demos first (with a note), then complete ones, as turn pairs.

        A demo missing every input or every output is dropped, as DSPy does.
        """
        complete, incomplete = _split_demos(signature, demos)
        messages: list[dict[str, Any]] = []
        for demo in incomplete:
            user = self.format_user_message_content(signature, demo, prefix=_INCOMPLETE_DEMO)
            reply = self.format_assistant_message_content(signature, demo, _MISSING_IN_DEMO)
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        for demo in complete:
            user = self.format_user_message_content(signature, demo)
            reply = self.format_assistant_message_content(signature, demo, _MISSING_IN_HISTORY)
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        return messages

    def format_assistant_message_content(
        self,
        signature: type[Signature],
        outputs: Mapping[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        """The text of an assistant turn holding a demo's (or a history entry's) outputs."""
        raise TypeError(f"{type(self).__name__} must implement format_assistant_message_content()")

    def format_user_message_content(
        self,
        signature: type[Signature],
        inputs: Mapping[str, Any],
        *,
        prefix: str = "",
        main_request: bool = False,
    ) -> str:
        """The text of a user turn holding `inputs` (ReAct writes its trajectory with it)."""
        raise TypeError(f"{type(self).__name__} must implement format_user_message_content()")

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """The typed output values in one completion.

        Raises:
            AdapterParseError: a field is missing or does not fit its type.
        """
        raise TypeError(f"{type(self).__name__} must implement parse()")

    def request_params(
        self, signature: type[Signature], capabilities: LMCapabilities
    ) -> dict[str, Any]:
        """Extra request params this adapter needs (e.g. `response_format`)."""
        return {}

    def plan(
        self,
        signature: type[Signature],
        inputs: Mapping[str, Any],
        params: Mapping[str, Any],
        capabilities: LMCapabilities,
    ) -> CallPlan:
        """The native features this call uses, and the signature left to format and parse.

        Raises:
            ValueError: a ToolCalls output has no tools input.
        """
        return plan_call(
            signature,
            inputs,
            params,
            capabilities,
            native_function_calling=self.use_native_function_calling,
            parallel_tool_calls=self.parallel_tool_calls,
        )

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
        """Plan, format, call the LM once, parse and complete every completion.

        When parsing fails, the call is made once more with `_fallback()`'s adapter
        (ChatAdapter's JSONAdapter), unless text of the first answer was already
        streamed to the caller.

        Raises:
            AdapterParseError: a completion does not fit the signature (and the
                fallback's did not either: the message gives both problems).
            LmvisorError: whatever `invoke` raises (LM failures) passes through.
        """
        shown = streamed_chunks()
        own = self.callbacks
        # `(*a, *b)` builds a list first: the usual call has no hooks at all.
        hooks = (*callbacks, *own) if callbacks and own else callbacks or own
        plan = self.plan(signature, inputs, params, capabilities)
        if hooks:
            messages = self._format_hooked(hooks, plan.signature, demos, inputs)
        else:
            messages = self.format(plan.signature, demos, inputs)
        # DSPy sizes the response format on the signature as declared, before planning.
        extra = self.request_params(signature, capabilities)
        # An empty plan's params may be shared (read-only): the request gets a dict of its own.
        sent = {**plan.params, **extra} if extra else plan.params or {}
        response = await invoke(messages, sent)
        try:
            return self._parse_all(hooks, plan, signature, response), response
        except AdapterParseError as error:
            fallback = self._fallback()
            if fallback is None or streamed_chunks() != shown:
                raise
            first = error
        try:
            return await fallback.run(
                invoke,
                signature,
                demos,
                inputs,
                params=params,
                capabilities=capabilities,
                callbacks=callbacks,
            )
        except AdapterParseError as second:
            raise _both_failed(first, second) from second

    def _fallback(self) -> Adapter | None:
        """The adapter to retry with once parsing failed; None: no retry (the default)."""
        return None

    def _parse_all(
        self,
        hooks: Sequence[Callback],
        plan: CallPlan,
        signature: type[Signature],
        response: LMResponse,
    ) -> list[dict[str, Any]]:
        """Every completion parsed and completed (a method, not a comprehension in `run`:
        a comprehension's closure would keep cells alive across the LM call)."""
        count = len(response.outputs)
        if not count:
            raise self._parse_error(signature, "", "the LM returned no completion")
        if count == 1:  # the usual call: no comprehension frame
            return [
                finish_values(
                    plan, signature, self._parse_one(hooks, plan, response, 0), response, 0
                )
            ]
        return [
            finish_values(plan, signature, self._parse_one(hooks, plan, response, i), response, i)
            for i in range(count)
        ]

    def _parse_one(
        self, hooks: Sequence[Callback], plan: CallPlan, response: LMResponse, index: int
    ) -> dict[str, Any]:
        text = response.outputs[index]
        native_calls = plan.tool_calls_field is not None and index == 0 and response.tool_calls
        if text and not native_calls:
            if not hooks:
                return self.parse(plan.signature, text)
            return self._parse_hooked(hooks, plan.signature, text)
        if native_calls:
            if not text or not plan.signature._outputs:
                return {}
            try:
                return self._parse_hooked(hooks, plan.signature, text)
            except AdapterParseError:
                return {}  # the tool calls are the answer; text around them is optional
        raise self._parse_error(plan.signature, text, "the LM returned an empty response")

    def _format_hooked(
        self,
        hooks: Sequence[Callback],
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        if not hooks:
            return self.format(signature, demos, inputs)
        call_id = new_call_id()
        args = {"signature": signature, "demos": demos, "inputs": inputs}
        notify(hooks, "on_adapter_format_start", call_id, self, args)
        try:
            messages = self.format(signature, demos, inputs)
        except BaseException as exc:
            notify(hooks, "on_adapter_format_end", call_id, None, exc)
            raise
        notify(hooks, "on_adapter_format_end", call_id, messages, None)
        return messages

    def _parse_hooked(
        self, hooks: Sequence[Callback], signature: type[Signature], completion: str
    ) -> dict[str, Any]:
        if not hooks:
            return self.parse(signature, completion)
        call_id = new_call_id()
        notify(
            hooks,
            "on_adapter_parse_start",
            call_id,
            self,
            {"signature": signature, "completion": completion},
        )
        try:
            values = self.parse(signature, completion)
        except BaseException as exc:
            notify(hooks, "on_adapter_parse_end", call_id, None, exc)
            raise
        notify(hooks, "on_adapter_parse_end", call_id, values, None)
        return values

    def _parse_error(
        self,
        signature: type[Signature],
        completion: str,
        problem: str,
        parsed: Mapping[str, Any] | None = None,
    ) -> AdapterParseError:
        return AdapterParseError(
            adapter=self.name,
            signature=signature.signature,
            completion=completion,
            problem=problem,
            parsed=parsed,
        )


def _split_demos(
    signature: type[Signature], demos: Sequence[Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    complete, incomplete = [], []
    for demo in demos:
        if all(demo.get(k) is not None for k in signature._fields):
            complete.append(demo)
        elif any(k in demo for k in signature._inputs) and any(
            k in demo for k in signature._outputs
        ):
            incomplete.append(demo)
    return complete, incomplete


def _both_failed(first: AdapterParseError, second: AdapterParseError) -> AdapterParseError:
    """One error naming the first adapter's problem and its fallback's."""
    return AdapterParseError(
        adapter=first.adapter,
        signature=first.signature,
        completion=first.completion,
        problem=f"{first.problem}; the {second.adapter} fallback failed too: {second.problem}",
        parsed=first.parsed,
    )
