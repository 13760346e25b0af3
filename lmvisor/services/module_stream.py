"""Streaming one execution to its caller: the LM's text, handed over as it arrives.

`Modules.execute(..., stream=sink)` runs the program's primary strategy with
`StreamingLM(lm, sink)` as its LM: each LM call the program makes is sent as a
streamed request, every `LMDelta` goes to `sink` the moment it arrives, and the
call returns the same `LMResponse` that `complete` would have. So a caller
sees the answer being written while the program, its adapter, its usage and
its events stay exactly as in an unstreamed run. Streamed answers are not
cached (`CachedLM.stream`); fallbacks, if the primary fails, run unstreamed.

An LM that cannot stream (`capabilities.streaming` False) is called as usual:
the caller then gets the result without deltas.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias, final

from lmvisor.programs.lm import LM, LMCapabilities, LMDelta, LMDone, LMRequest, LMResponse
from lmvisor.providers.errors import ProviderError

__all__ = ["StreamSink", "StreamingLM"]

StreamSink: TypeAlias = Callable[[Any], None]
"""Receives each streamed item (an `LMDelta`) of an execution; must not block."""


@final
class StreamingLM:
    """An `LM` whose `complete` streams from `upstream`, giving every delta to `sink`.

    Args:
        upstream: the LM the program would use (the cache-fronted router).
        sink: called with each `LMDelta` as it arrives; must not block or raise.

    Raises (from `complete`):
        ProviderError: the stream ended without its final `LMDone`.
        LmvisorError: whatever `upstream.stream` raises.
    """

    __slots__ = ("_sink", "_upstream")

    def __init__(self, upstream: LM, sink: StreamSink) -> None:
        self._upstream = upstream
        self._sink = sink

    @property
    def model(self) -> str:
        return self._upstream.model

    @property
    def capabilities(self) -> LMCapabilities:
        return self._upstream.capabilities

    async def complete(self, request: LMRequest) -> LMResponse:
        """Stream `request`, handing each delta to the sink; the assembled response."""
        if not self._upstream.capabilities.streaming:
            return await self._upstream.complete(request)
        response = None
        async for item in self._upstream.stream(request):
            if isinstance(item, LMDelta):
                self._sink(item)
            elif isinstance(item, LMDone):
                response = item.response
        if response is None:
            vendor, _, model = self.model.partition("/")
            raise ProviderError(
                provider=vendor,
                model=model or None,
                detail="the stream ended without its final response",
            )
        return response

    def stream(self, request: LMRequest) -> AsyncIterator[LMDelta | LMDone]:
        """Stream from upstream unchanged (a program that streams on its own)."""
        return self._upstream.stream(request)

    def __repr__(self) -> str:
        return f"StreamingLM({self._upstream!r})"
