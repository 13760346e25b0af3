"""Server-sent event streams: the wire framing and a response that heartbeats and drains.

`sse_frame` writes one event (`id:`, `event:`, one `data:` line per line of
JSON). `sse_response(source, context)` streams frames from an async iterator,
sends a `: keep-alive` comment when the source is idle for
`server.sse_heartbeat` seconds (so proxies keep the connection open and a
vanished client is noticed), and ends the stream with a final `end` event
whose data names the reason when the daemon starts draining or the request's
deadline (`X-Request-Timeout`) passes. The answer states the heartbeat interval in
seconds in its `X-SSE-Heartbeat` header (`HEARTBEAT_HEADER`), so a client can tell a
stalled daemon or a dead connection from a quiet stream: something arrives at least
that often. Starlette cancels the stream when the client disconnects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, final

from starlette.responses import StreamingResponse

from lmvisor.runtime.deadline import time_left
from lmvisor.server.context import ServerContext
from lmvisor.server.responses import dump_json

__all__ = ["HEARTBEAT_HEADER", "SSE_MEDIA_TYPE", "SSEMessage", "sse_frame", "sse_response"]

HEARTBEAT_HEADER: Final = "X-SSE-Heartbeat"
"""The answer header stating the seconds between heartbeats (`server.sse_heartbeat`)."""
SSE_MEDIA_TYPE: Final = "text/event-stream"
_HEARTBEAT: Final = b": keep-alive\n\n"


@final
@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One event to send: its type, JSON-ready data and optional id."""

    event: str
    data: Mapping[str, Any]
    id: str | None = None


def _dumps(data: Mapping[str, Any]) -> str:
    # Event data comes from anywhere in the runtime: never let one value break a stream.
    return dump_json(data).decode("utf-8")


def sse_frame(message: SSEMessage) -> bytes:
    """The wire bytes of one event (fields stripped of line breaks, data as JSON)."""
    lines = []
    if message.id is not None:
        lines.append(f"id: {_one_line(message.id)}")
    lines.append(f"event: {_one_line(message.event)}")
    lines.extend(f"data: {line}" for line in _dumps(message.data).splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def sse_response(source: AsyncIterator[SSEMessage], context: ServerContext) -> StreamingResponse:
    """Stream `source` as SSE with heartbeats, ending with `end` on drain or exhaustion.

    The final `end` event's data names why: `done` (the source is exhausted),
    `shutdown` (the daemon drains) or `deadline` (the request's deadline passed). The
    `X-SSE-Heartbeat` header states the heartbeat interval.
    """
    heartbeat = context.server.sse_heartbeat
    return StreamingResponse(
        _frames(source, context.draining, heartbeat),
        media_type=SSE_MEDIA_TYPE,
        headers={
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
            HEARTBEAT_HEADER: f"{heartbeat:g}",
        },
    )


async def _frames(
    source: AsyncIterator[SSEMessage], draining: asyncio.Event, heartbeat: float
) -> AsyncIterator[bytes]:
    drained = asyncio.ensure_future(draining.wait())
    # The pending `anext` survives heartbeats: cancelling it would end the source.
    step: asyncio.Future[SSEMessage] | None = None
    reason = "done"
    try:
        while True:
            left = time_left()
            if left is not None and left <= 0:
                reason = "deadline"
                break
            if step is None:
                step = asyncio.ensure_future(anext(source))
            waiting: set[asyncio.Future[Any]] = {step, drained}
            wait = heartbeat if left is None else min(heartbeat, left)
            done, _ = await asyncio.wait(waiting, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if step in done:
                finished, step = step, None
                try:
                    message = finished.result()
                except StopAsyncIteration:
                    break
                yield sse_frame(message)
            elif drained in done:
                reason = "shutdown"
                break
            elif left is None or left > heartbeat:
                yield _HEARTBEAT
        yield sse_frame(SSEMessage("end", {"reason": reason}))
    finally:
        drained.cancel()
        await _close(source, step)


async def _close(
    source: AsyncIterator[SSEMessage], step: asyncio.Future[SSEMessage] | None
) -> None:
    if step is not None:
        step.cancel()
        await asyncio.wait({step})
        if not step.cancelled():
            step.exception()  # retrieved: a failure here is the stream's end, not news
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()
