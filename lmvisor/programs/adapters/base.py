"""The adapter contract: format a signature, demos and inputs into chat messages, call
the LM once through the caller's `invoke`, and parse each completion into typed values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

from lmvisor.programs.callbacks import Callback, new_call_id, notify
from lmvisor.programs.errors import AdapterParseError
from lmvisor.programs.lm import LMCapabilities, LMResponse
from lmvisor.programs.signature import Signature

__all__ = ["Adapter", "AdapterResult", "LMInvoke"]

LMInvoke = Callable[[list[dict[str, Any]], Mapping[str, Any]], Awaitable[LMResponse]]
"""Sends messages with params to the LM and returns its response (built by Predict)."""

AdapterResult = tuple[list[dict[str, Any]], LMResponse]
"""The parsed values of each completion, and the LM's response."""


class Adapter:
    """Base adapter: subclasses implement `format`, `parse` and maybe `request_params`."""

    name: ClassVar[str] = "Adapter"

    def __init__(self, *, callbacks: Sequence[Callback] = ()) -> None:
        self.callbacks: tuple[Callback, ...] = tuple(callbacks)

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
        """Format, call the LM once, parse every completion.

        Raises:
            AdapterParseError: a completion does not fit the signature.
            LmvisorError: whatever `invoke` raises (LM failures) passes through.
        """
        hooks = (*callbacks, *self.callbacks)
        messages = self._format_hooked(hooks, signature, demos, inputs)
        extra = self.request_params(signature, capabilities)
        response = await invoke(messages, {**params, **extra} if extra else params)
        if not response.outputs:
            raise self._parse_error(signature, "", "the LM returned no completion")
        values = [self._parse_hooked(hooks, signature, out) for out in response.outputs]
        return values, response

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
