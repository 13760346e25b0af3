"""HTTP side of the loopback LM: aiohttp responses for answers and errors, and broken ones.

`send_answer` writes an answer as a JSON body or an SSE stream, applying the fault the
request drew (cut the body, cut the stream, an error event, malformed JSON, a line
that never ends, keep-alives and no answer);
`error_response` is a vendor error with its request id and retry headers.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass

from aiohttp import web

from lmvisor.runtime.clock import Clock
from lmvisor.testing._lm_faults import FaultRule
from lmvisor.testing._lm_requests import Ask, Choice, Rejected
from lmvisor.testing._lm_wire import (
    anthropic_error_body,
    anthropic_error_event,
    anthropic_events,
    anthropic_message,
    openai_chunks,
    openai_completion,
    openai_error_body,
    openai_error_event,
)

__all__ = ["abort", "error_response", "rejected_response", "send_answer"]

_JSON = "application/json"
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_ENDLESS_PIECE = 64 * 1024
# An `endless_line` stops here if the client never hangs up: a test never fills the disk.
_ENDLESS_LINE_BYTES = 256 * 1024 * 1024
_KEEPALIVE_EVERY = 0.05
_KEEPALIVE_FOR = 3600.0  # a `keepalive_stall` whose client never leaves ends after an hour
_CUT_OFF = frozenset({"disconnect_mid_stream", "endless_line", "keepalive_stall"})


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pacing:
    """How a stream is written: all at once, or one event every `delay` seconds."""

    clock: Clock
    delay: float


async def send_answer(
    request: web.Request,
    ask: Ask,
    choices: list[Choice],
    *,
    seq: int,
    fault: FaultRule | None,
    clock: Clock,
    chunk_delay: float,
) -> web.StreamResponse:
    """Write the answer to `request`, broken as `fault` says (None: intact).

    A client that goes away mid-write is not an error: the connection is closed.
    """
    kind = fault.kind if fault is not None else None
    if ask.stream:
        events = _sse_events(ask, choices, seq)
        pacing = _Pacing(clock=clock, delay=chunk_delay)
        return await _send_stream(request, events, fault, pacing)
    body = _message_body(ask, choices, seq)
    return await _send_body(request, ask.api, body, seq, kind)


def error_response(
    api: str,
    status: int,
    seq: int,
    *,
    message: str | None = None,
    code: str | None = None,
    param: str | None = None,
    retry_after: float | None = None,
    retry_after_ms: float | None = None,
) -> web.Response:
    """The vendor's error body for `status`, with its request id and retry headers."""
    headers = _id_headers(api, seq)
    if retry_after is not None:
        headers["retry-after"] = _header_number(retry_after)
    if retry_after_ms is not None:
        headers["retry-after-ms"] = _header_number(retry_after_ms)
    if api == "openai":
        body = openai_error_body(status, message=message, code=code, param=param)
    else:
        body = anthropic_error_body(
            status, message=message, code=code, request_id=headers["request-id"]
        )
    return web.json_response(body, status=status, headers=headers)


def rejected_response(api: str, exc: Rejected, seq: int) -> web.Response:
    """The vendor's error response for a request its API would refuse."""
    code = exc.code if api == "openai" else None
    return error_response(api, exc.status, seq, message=exc.message, code=code, param=exc.param)


def abort(request: web.Request) -> None:
    """Close the connection at once, without a response or a clean end."""
    transport = request.transport
    if transport is not None:
        transport.abort()


@dataclass(frozen=True, slots=True)
class _Events:
    """The SSE events of one answer, and how to break them."""

    api: str
    seq: int
    items: list[bytes]

    def malformed_event(self) -> bytes:
        """An event whose JSON is cut short (named, so Anthropic clients do parse it)."""
        name = b"" if self.api == "openai" else b"event: content_block_delta\n"
        return name + b'data: {"id": "lmv' + str(self.seq).encode() + b'", "cho\n\n'

    def error_event(self, fault: FaultRule) -> bytes:
        """OpenAI's `data: {"error": ...}`; Anthropic's `event: error` (overloaded_error)."""
        if self.api == "openai":
            return openai_error_event(fault.message, fault.code)
        return anthropic_error_event(529, fault.message, fault.code)

    def broken_by(self, fault: FaultRule | None) -> list[bytes]:
        """The events to send under `fault`: a prefix, then maybe an error or bad event."""
        kind = fault.kind if fault is not None else None
        half = self.items[: max(1, len(self.items) // 2)]
        if kind == "disconnect_mid_stream":
            return half
        if kind == "error_event" and fault is not None:
            return [*half, self.error_event(fault)]
        if kind == "malformed_json":
            return [*half, self.malformed_event()]
        if kind == "endless_line":
            return [*half, b"data: "]
        if kind == "keepalive_stall":
            return half
        return self.items


def _sse_events(ask: Ask, choices: list[Choice], seq: int) -> _Events:
    if ask.api == "openai":
        created = int(time.time())
        items = openai_chunks(ask, choices, id=f"chatcmpl-lmv{seq:012d}", created=created)
    else:
        items = anthropic_events(ask, choices[0], id=f"msg_lmv{seq:012d}")
    return _Events(ask.api, seq, items)


def _message_body(ask: Ask, choices: list[Choice], seq: int) -> bytes:
    if ask.api == "openai":
        created = int(time.time())
        return openai_completion(ask, choices, id=f"chatcmpl-lmv{seq:012d}", created=created)
    return json.dumps(anthropic_message(ask, choices[0], id=f"msg_lmv{seq:012d}")).encode()


def _header_number(value: float) -> str:
    """`2` for whole numbers, else a plain decimal (`1.5`) to the microsecond, no exponent."""
    if float(value).is_integer():
        return str(int(value))
    return format(value, ".6f").rstrip("0").rstrip(".")


def _id_headers(api: str, seq: int) -> dict[str, str]:
    return {"x-request-id" if api == "openai" else "request-id": f"req_lmv{seq:012d}"}


async def _send_body(
    request: web.Request, api: str, body: bytes, seq: int, kind: str | None
) -> web.StreamResponse:
    headers = _id_headers(api, seq)
    if kind == "malformed_json":
        return web.Response(body=body[: len(body) // 2], content_type=_JSON, headers=headers)
    if kind != "disconnect_mid_stream":
        return web.Response(body=body, content_type=_JSON, headers=headers)
    # Announce the full length, send half, then hang up: a body cut in transit.
    response = web.StreamResponse(status=200, headers={**headers, "Content-Type": _JSON})
    response.content_length = len(body)
    with contextlib.suppress(ConnectionError):
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
    abort(request)
    return response


async def _send_stream(
    request: web.Request, events: _Events, fault: FaultRule | None, pacing: _Pacing
) -> web.StreamResponse:
    headers = {**_SSE_HEADERS, **_id_headers(events.api, events.seq)}
    response = web.StreamResponse(status=200, headers=headers)
    try:
        await response.prepare(request)
        await _write_events(response, events.broken_by(fault), pacing)
        if fault is not None and fault.kind == "endless_line":
            await _write_endless_line(response)
        if fault is not None and fault.kind == "keepalive_stall":
            await _write_keepalives(response, fault.delay or _KEEPALIVE_EVERY, pacing.clock)
        if fault is not None and fault.kind in _CUT_OFF:
            abort(request)
            return response
        await response.write_eof()
    except ConnectionError:
        abort(request)
    return response


async def _write_endless_line(response: web.StreamResponse) -> None:
    """Write one line's bytes, never its end, until the client leaves (or the bound)."""
    piece = b"x" * _ENDLESS_PIECE
    for _ in range(_ENDLESS_LINE_BYTES // _ENDLESS_PIECE):
        await response.write(piece)


async def _write_keepalives(response: web.StreamResponse, every: float, clock: Clock) -> None:
    """Write a comment every `every` seconds, and nothing else, until the client leaves."""
    for _ in range(int(_KEEPALIVE_FOR / every)):
        await response.write(b": keep-alive\n\n")
        await clock.sleep(every)


async def _write_events(response: web.StreamResponse, items: list[bytes], pacing: _Pacing) -> None:
    if not pacing.delay:
        await response.write(b"".join(items))
        return
    for index, item in enumerate(items):
        if index:
            await pacing.clock.sleep(pacing.delay)
        await response.write(item)
