"""Streaming one execution to its caller: each output field's text, handed over as it arrives.

`Modules.execute(..., stream=sink)` runs the program's primary strategy through the
programs layer's `streamify`, with a `StreamListener` on every output field of every
predictor (`listeners_for`): each predictor's LM call is streamed, the adapter's format
is cut into per-field `StreamResponse` chunks (predictor, field, text, last), and
`StatusMessage`s mark tool calls. Each goes to `sink` the moment it is produced, while
the program, its adapter, its usage and its events stay exactly as in an unstreamed run;
`stream_program` returns the program's result as `program(**inputs)` would.

Streamed answers are not cached (`CachedLM.stream`); fallbacks, if the primary fails,
run unstreamed. An LM that cannot stream is called as usual: the caller then gets the
result without chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from lmvisor.programs.lm import LMDelta
from lmvisor.programs.module import Module
from lmvisor.programs.streaming import StatusMessage, StreamResponse, listeners_for, streamify

__all__ = ["StreamSink", "stream_program"]

StreamSink: TypeAlias = Callable[[Any], None]
"""Receives each streamed item of an execution (a `StreamResponse`, a `StatusMessage`, or
an `LMDelta` from a program without predictors to listen to); must not block."""


async def stream_program(program: Module, inputs: Mapping[str, Any], sink: StreamSink) -> Any:
    """Run `program` on `inputs`, handing every streamed item to `sink`; its result.

    Cancelling the caller cancels the program and closes its LM stream.

    Raises:
        Exception: whatever `program(**inputs)` raises.
    """
    items = streamify(program, stream_listeners=listeners_for(program))(**inputs)
    result: Any = None
    try:
        async for item in items:
            if isinstance(item, StreamResponse | StatusMessage | LMDelta):
                sink(item)
            else:
                result = item
    finally:
        # Closed now, not when the abandoned generator is collected: it cancels the program.
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()
    return result
