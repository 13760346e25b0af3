"""`LMInvoker`: sends one request to an LM on a program's behalf — LM callbacks, call
history and usage accounting around `LM.complete` — for Predict and for adapters that
make calls of their own (TwoStepAdapter's extraction).

When the program is being streamed to its caller (`streaming`), the request goes through
`LM.stream` instead, each delta handed to the stream's receiver as it arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, final

from lmvisor.programs._usage import record_usage
from lmvisor.programs.callbacks import Callback, new_call_id, notify
from lmvisor.programs.lm import LM, LMDelta, LMDone, LMRequest, LMResponse
from lmvisor.programs.lm_history import CallHistory

__all__ = ["LMInvoker"]


@final
class LMInvoker:
    """An `LMInvoke` bound to one LM, its hooks and the history calls are recorded in.

    Args:
        lm: the LM to call.
        hooks: callbacks told of each call (`on_lm_start` / `on_lm_end`).
        history: where calls are recorded (None: nowhere).
        stream: a receiver of the LM's deltas (then None at the end): the call streams.
    """

    __slots__ = ("_history", "_hooks", "_lm", "_stream")

    def __init__(
        self,
        lm: LM,
        hooks: Sequence[Callback],
        history: CallHistory | None,
        *,
        stream: Callable[[LMDelta | None], None] | None = None,
    ) -> None:
        self._lm = lm
        self._hooks = hooks
        self._history = history
        self._stream = stream if stream is not None and lm.capabilities.streaming else None

    @property
    def lm(self) -> LM:
        """The LM this invoker calls."""
        return self._lm

    async def __call__(
        self, messages: list[dict[str, Any]], params: Mapping[str, Any]
    ) -> LMResponse:
        """Send `messages` with `params`; the LM's response.

        Raises:
            LmvisorError: whatever the LM raises; cancellation cancels the request.
        """
        lm = self._lm
        request = LMRequest(model=lm.model, messages=messages, params=params)
        if self._hooks:
            response = await self._complete_hooked(request)
        elif self._stream is None:
            response = await lm.complete(request)  # the common case: one frame fewer
        else:
            response = await self._streamed(request, self._stream)
        record_usage(response.usage, response.cost, response.cached)
        if self._history is not None:
            self._history.record(lm.model, request, response)
        return response

    async def _complete_hooked(self, request: LMRequest) -> LMResponse:
        call_id = new_call_id()
        notify(self._hooks, "on_lm_start", call_id, self._lm, {"request": request})
        try:
            response = await self._send(request)
        except BaseException as exc:
            notify(self._hooks, "on_lm_end", call_id, None, exc)
            raise
        notify(self._hooks, "on_lm_end", call_id, response, None)
        return response

    async def _send(self, request: LMRequest) -> LMResponse:
        if self._stream is None:
            return await self._lm.complete(request)
        return await self._streamed(request, self._stream)

    async def _streamed(
        self, request: LMRequest, receive: Callable[[LMDelta | None], None]
    ) -> LMResponse:
        """The response of a streamed call; the LM stream is closed however this ends."""
        response: LMResponse | None = None
        items = self._lm.stream(request)
        try:
            async for item in items:
                if isinstance(item, LMDelta):
                    receive(item)
                elif isinstance(item, LMDone):
                    response = item.response
        finally:
            close = getattr(items, "aclose", None)
            if close is not None:  # an async generator: close it now, not when collected
                await close()
        receive(None)
        if response is None:
            raise RuntimeError(f"{self._lm.model}: the LM stream ended without LMDone")
        return response
