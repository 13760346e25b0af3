"""The daemon's HTTP/1.1 protocol: uvicorn's httptools one, writing a response's head with its body.

uvicorn writes the status line and headers as soon as the app sends
`http.response.start`, then the body on `http.response.body`: two `send()` calls,
two TCP segments and two reads for the client for every small JSON answer. Here
the head is held back until the response's next write, which carries both in one
`writelines` (a single `send`); a head with no body in the same event-loop step
(a stream's first chunk still being made, a 204) goes out at the end of that step,
so nothing waits on the application. Only the request cycle's writes are held;
the protocol's own (a 400 for an unparsable request) go straight out.

Keep-alive: uvicorn arms a timer when a response ends and cancels it when the next
request's bytes arrive: a timer made and torn down for every request. Here the timer
stays armed across requests; the connection notes when it went idle, and the timer,
when it fires, closes it only if it has stayed idle the whole `timeout_keep_alive`,
else re-arms for what is left (a busy connection is re-armed when its response ends).
One timer per connection per timeout rather than one per request; an idle connection
closes at the same moment as before.

Body deadline: uvicorn waits for a request's body without bound, so a client that
sends its headers and then stalls (or trickles) holds a connection and a request
task forever. Here a request whose body is still incomplete when the bytes that
carried its headers have been parsed gets one timer (`body_timeout` seconds; a body
that comes with its headers, nearly every one, costs none). When it fires the
request is marked in its scope (`BODY_LATE`) and its `receive` woken: the body limit's
`receive` (`middleware`) then refuses the body with a typed 408, and the connection
closes after that answer. A request answered without reading its body has the
connection closed instead (nothing would read the rest). A pipelined request queued
behind another is timed from when it starts: uvicorn reads nothing for it until then.

Header deadline: uvicorn waits for a request's head without bound too, and its
keep-alive timer is off while a request is partly read, so a client that trickles
header bytes (slowloris) held a connection forever. Here a head still incomplete when
a read has been parsed gets one timer (`header_timeout` seconds; a head that arrives in
one read, nearly every one, costs none), cancelled when the head completes. When it
fires the client has started a request it has not finished: it is answered a typed
408 (`HeaderTimeout`, the daemon's error body, as nginx and Apache's mod_reqtimeout
answer) and the connection closed. If an earlier pipelined request's answer is still
being made, the 408 cannot go first: the connection closes after that answer. A new
connection counts as idle from the moment it is made (the keep-alive timer is armed
then, the one timer it would have made at its first answer), so one that sends
nothing is closed after `timeout_keep_alive`, as an idle keep-alive one is, silently.

Head size: httptools sets no bound on a head, and its callbacks join a long header
or URL piece by piece, so a client sending an endless header made the daemon buffer
(and re-copy) everything it sent until the deadline. A head still incomplete after
`MAX_HEAD_BYTES` have been read for it is answered a typed 431 (`HeadersTooLarge`)
and the connection closed, as nginx (8 KiB buffers) and h11 (16 KiB) refuse one.
Only reads that leave a head incomplete are counted: a head that comes in one read
costs nothing.

Malformed heads: uvicorn answers a head httptools cannot parse with a plain-text 400,
written at once, so with a request still being answered on the connection it went
out first, as that request's answer. Here it is a typed 400 (`RequestError`, the
daemon's error body), sent like a late head's 408: after any answer in progress.

Chunk framing and trailers: httptools hands over a chunked body's data but parses
its trailers like headers, buffering them without bound (an endless trailer grew the
daemon by 120 MB in 6 s and stalled its loop; the body limit counts body bytes only).
The bytes read for a body beyond the body bytes they carried may be at most
`MAX_HEAD_BYTES` plus 8 per body byte (a 1-byte chunk costs 5 or 6); past that the
request is marked (`BODY_REFUSED`) and its `receive` woken, and the body limit's
`receive` refuses it with a typed 413 (trailers are part of a chunked body); the
connection closes after that answer.

Disconnects: a request that put its task in its scope under `CANCEL_ON_DISCONNECT`
(the run routes, `fast_run`) has that task cancelled when the client goes away
before the answer starts, after `CLIENT_GONE` is set in its scope so the request can
tell that cancellation from any other; so does one being answered while a pipelined
request waits behind it (uvicorn told only the newest). No task watches `receive()`
for it: the protocol already learns of the disconnect (`connection_lost`). A client
that half-closes (shuts down its sending side) counts as gone: the server sees the
same FIN from it as from a client that closed, and cannot tell them apart without
writing; nginx too answers a FIN while it waits upstream with 499.

Send deadline: uvicorn writes an answer into the transport's buffer and, once the
buffer passes its high-water mark (64 KiB), the transport pauses writing and the
request's next `send` waits in `FlowControl.drain` until it resumes, without bound: a
client that stops reading held the request task (a stream's) and the connection
forever, and one whose answer was written whole held the connection (a close waits
for the buffer to drain). Here the pause arms one timer (`send_timeout` seconds; a
connection whose buffer never fills, nearly every one, costs none), cancelled when
writing resumes. Writing resumes only once the buffer is below its low-water mark, which
for one large answer (uvicorn writes a JSON body whole) may take longer than the deadline
however steadily the client reads, so the deadline is for no progress: when it passes
with the buffer smaller than when it was armed, it is armed again from there. A client
that reads, however slowly, keeps its answer. When it fires with no progress the
connection is reset (SO_LINGER 0, then `abort`: the unsent bytes are
dropped, in the kernel too) and `connection_lost` ends the request as for a
disconnect: a waiting `send` returns, a run not yet answered is cancelled, a stream's
disconnect listener cancels it.

Refusals: the answers the protocol gives itself (the 408s, 431 and 400 above, uvicorn's
400 for a malformed body) never reach the app's plumbing, so `refused` is told of each
(a reason, the status, the request if one was parsed), and of each body refused (whose
408 or 413 the app writes) and each send deadline: the daemon counts them
(`lmvisor_http_refused_total`) and logs them (one line each; see
`middleware.refusal_recorder`).

`http_protocol()` names the class for `uvicorn.Config(http=...)`: this one (httptools
is a dependency), else, where httptools cannot be imported, uvicorn's default choice
(h11, with neither the body deadline nor the cancellation on disconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any, Final, TypeAlias, final

from lmvisor.server.errors import HeadersTooLarge, HeaderTimeout, RequestError
from lmvisor.server.http_errors import error_payload
from lmvisor.server.responses import dump_json

__all__ = [
    "BODY_LATE",
    "BODY_REFUSED",
    "CANCEL_ON_DISCONNECT",
    "CLIENT_GONE",
    "MAX_HEAD_BYTES",
    "Refused",
    "http_protocol",
]

BODY_LATE: Final = "lmvisor.body_late"
"""Scope key: set to `body_timeout` (seconds) once the request's body has missed it."""
BODY_REFUSED: Final = "lmvisor.body_refused"
"""Scope key: set to True once the request's chunk framing and trailers passed their bound."""
CANCEL_ON_DISCONNECT: Final = "lmvisor.cancel_on_disconnect"
"""Scope key: the `asyncio.Task` to cancel if the client disconnects before the answer."""
CLIENT_GONE: Final = "lmvisor.client_gone"
"""Scope key: set to True just before the `CANCEL_ON_DISCONNECT` task is cancelled."""
_MALFORMED: Final = "malformed HTTP request: the request line or a header cannot be parsed"
MAX_HEAD_BYTES: Final = 64 * 1024
"""The most bytes read while a request's head is incomplete before it is refused (431)."""
# SO_LINGER on, zero seconds: close() resets the connection and drops the unsent bytes.
_RESET: Final = struct.pack("ii", 1, 0)

Refused: TypeAlias = Callable[[str, int | None, Mapping[str, Any] | None], None]
"""Told of each refusal: its reason (`http_metrics.REFUSAL_REASONS`), the status the
protocol answered (None: it answered none itself) and the request's scope, if one was
parsed (`middleware.refusal_recorder` makes the daemon's)."""


def http_protocol(
    *,
    body_timeout: float | None = None,
    header_timeout: float | None = None,
    send_timeout: float | None = None,
    refused: Refused | None = None,
) -> type[asyncio.Protocol] | str:
    """The HTTP protocol for uvicorn: the coalescing httptools protocol, else "auto".

    Args:
        body_timeout: seconds a request's body may take once its headers are in
            (`server.body_timeout`); None: no deadline.
        header_timeout: seconds a request's head may take once its first byte is in
            (`server.header_timeout`); None: no deadline.
        send_timeout: seconds the connection's write buffer may stay full (the client
            reads too little of the answer) before the connection is reset
            (`server.send_timeout`); None: no deadline.
        refused: told of each request or connection the protocol refuses or ends itself.
    """

    def tell(reason: str, status: int | None, scope: Mapping[str, Any] | None) -> None:
        if refused is not None:
            refused(reason, status, scope)

    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: uvicorn falls back to h11
        return "auto"

    @final
    class CoalescingHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol; each request cycle writes through `_HeadWithBody`,
        the keep-alive timer outlives requests, heads and bodies have deadlines and a
        disconnect cancels the request that asked for it (see the module docstring)."""

        # Loop time the last response ended with nothing after it; None while a request is on.
        _idle_since: float | None = None
        # Armed while a request's body is incomplete (see `data_received`).
        _body_timer: asyncio.TimerHandle | None = None
        # The cycle whose task was started last (`self.cycle` may be one queued behind it).
        _running: Any = None
        # True from a request's first byte until its head is parsed.
        _in_head: bool = False
        # Bytes read while the current body was incomplete, and the body bytes among them.
        _body_read: int = 0
        _body_seen: int = 0
        # Bytes read while the current head was incomplete (see `data_received`).
        _head_bytes: int = 0
        # Armed while a request's head is incomplete (see `data_received`).
        _head_timer: asyncio.TimerHandle | None = None
        # Armed while the transport has paused writing (see `pause_writing`).
        _send_timer: asyncio.TimerHandle | None = None
        # The write buffer's size when `_send_timer` was armed: less at its firing is progress.
        _send_mark: int = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._idle_since = self.loop.time()
            self._arm(self.timeout_keep_alive)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            in_body = cycle is not None and cycle.more_body and not self._in_head
            super().data_received(data)
            if in_body and not cycle.response_complete:
                self._body_read += len(data)
                if self._body_read - self._body_seen > MAX_HEAD_BYTES + 8 * self._body_seen:
                    self._body_refused(cycle)
            if self._in_head and not self.transport.is_closing():
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._refuse_head(HeadersTooLarge(limit=MAX_HEAD_BYTES), "head_too_large")
                elif self._head_timer is None and header_timeout is not None:
                    self._head_timer = self.loop.call_later(header_timeout, self._head_late)
            cycle = self.cycle
            if cycle is not None and cycle is self._running:
                self._time_body(cycle)

        def _time_body(self, cycle: Any) -> None:
            """Arm the body deadline for `cycle`, whose task runs, if its body is incomplete.

            Only a running request's body is timed: uvicorn stops reading while a pipelined
            request waits behind another, so its body could not arrive; it is timed when
            its task starts (`on_response_complete`)."""
            if (
                cycle.more_body
                and self._body_timer is None
                and body_timeout is not None
                and not cycle.response_complete
                and not self.transport.is_closing()
            ):
                self._body_timer = self.loop.call_later(body_timeout, self._body_late, cycle)

        def on_body(self, body: bytes) -> None:
            self._body_seen += len(body)
            super().on_body(body)

        def _body_refused(self, cycle: Any) -> None:
            self.flow.pause_reading()
            self._refuse_body(cycle, BODY_REFUSED, True, "body_too_large")

        def _refuse_body(self, cycle: Any, key: str, value: object, reason: str) -> None:
            """Mark `cycle`'s scope with `key` and wake its `receive` (the body limit's
            `receive` then answers); the connection closes after that answer, or now if
            the request was already answered (nothing would read the rest of its body)."""
            tell(reason, None, cycle.scope)
            cycle.keep_alive = False
            if cycle.response_complete:
                self.transport.close()
                return
            cycle.scope[key] = value
            cycle.message_event.set()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            timer = self._body_timer
            if timer is not None:
                self._body_timer = None
                timer.cancel()

        def _body_late(self, cycle: Any) -> None:
            self._body_timer = None
            if cycle.more_body and not cycle.disconnected:
                self._refuse_body(cycle, BODY_LATE, body_timeout, "body_timeout")

        def _head_late(self) -> None:
            self._head_timer = None
            if self._in_head and not self.transport.is_closing():
                assert header_timeout is not None  # the timer is only armed with one
                self._refuse_head(HeaderTimeout(seconds=header_timeout), "header_timeout")

        def send_400_response(self, msg: str) -> None:
            cycle = self.cycle
            if cycle is not None and cycle.more_body and not cycle.response_complete:
                tell("malformed", 400, cycle.scope)
                super().send_400_response(msg)  # the body being read is malformed: as uvicorn
                return
            self._refuse_head(RequestError(_MALFORMED), "malformed")

        def _refuse_head(self, error: RequestError, reason: str) -> None:
            """Answer a head that is late, too large or malformed with `error`, and close."""
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                # This head is refused and no more of it is read: no deadline may refuse it again.
                self._in_head = False
                timer, self._head_timer = self._head_timer, None
                if timer is not None:
                    timer.cancel()
                tell(reason, None, None)
                cycle.keep_alive = False  # an earlier answer is on its way: close after it
                self.flow.pause_reading()  # and read nothing more of this head
                return
            status, body = error_payload(error)
            tell(reason, status, None)
            payload = dump_json(body)
            head = [b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head.append(b"content-type: application/json\r\nconnection: close\r\n")
            head.append(b"content-length: %d\r\n\r\n" % len(payload))
            self.transport.write(b"".join((*head, payload)))
            self.transport.close()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._head_bytes = self._body_read = self._body_seen = 0
            timer = self._head_timer
            if timer is not None:
                self._head_timer = None
                timer.cancel()
            super().on_headers_complete()
            cycle = self.cycle
            # Set before the cycle's task first runs (tasks start on a later loop step).
            if cycle is not None and cycle.transport is self.transport:
                cycle.transport = _HeadWithBody(self.transport, self.loop)  # type: ignore[assignment]

        def _unset_keepalive_if_required(self) -> None:
            # Bytes arrived: busy until the response ends. The timer stays armed.
            self._idle_since = None

        def on_response_complete(self) -> None:
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self.flow.resume_reading()
            if self.pipeline:  # the next pipelined request starts: still busy
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
                self._time_body(cycle)
                return
            self._idle_since = self.loop.time()
            if self.timeout_keep_alive_task is None:
                self._arm(self.timeout_keep_alive)

        def timeout_keep_alive_handler(self) -> None:
            self.timeout_keep_alive_task = None
            if self._idle_since is None:  # busy: its response's end re-arms
                return
            left = self._idle_since + self.timeout_keep_alive - self.loop.time()
            if left > 0:
                self._arm(left)
            else:
                super().timeout_keep_alive_handler()

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._send_timer is None and send_timeout is not None:
                self._send_mark = self.transport.get_write_buffer_size()
                self._send_timer = self.loop.call_later(send_timeout, self._send_late)

        def resume_writing(self) -> None:
            super().resume_writing()
            timer = self._send_timer
            if timer is not None:
                self._send_timer = None
                timer.cancel()

        def _send_late(self) -> None:
            """The write buffer stayed full for `send_timeout`: reset the connection.

            A reset, not a close: a close waits for the buffer to drain, which a client
            that reads nothing never lets happen. `connection_lost` then ends the request
            as for a disconnect (a blocked `send` returns, a run not yet answered is
            cancelled, a stream is cancelled by its disconnect listener)."""
            self._send_timer = None
            if not self.flow.write_paused:
                return
            left = self.transport.get_write_buffer_size()
            if left < self._send_mark:  # the client reads: time it from here
                assert send_timeout is not None  # the timer is only armed with one
                self._send_mark = left
                self._send_timer = self.loop.call_later(send_timeout, self._send_late)
                return
            cycle = self._running
            tell("send_timeout", None, None if cycle is None else cycle.scope)
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                # An error means the socket is already gone: the abort is all there is to do.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            self.transport.abort()

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            timers = (self.timeout_keep_alive_task, self._body_timer, self._head_timer)
            for timer in (*timers, self._send_timer):
                if timer is not None:
                    timer.cancel()
            self.timeout_keep_alive_task = self._body_timer = self._head_timer = None
            self._send_timer = None
            # uvicorn marks only the newest cycle; a pipelined one may be queued behind the
            # one being answered, which must learn of the disconnect too.
            running = self._running
            if running is not None and running is not self.cycle:
                if not running.response_complete:
                    running.disconnected = True
                running.message_event.set()
                _cancel_unanswered(running)
            _cancel_unanswered(self.cycle)

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            self._running = cycle
            super()._start_asgi_task(cycle, app)

        def _arm(self, seconds: float) -> None:
            self.timeout_keep_alive_task = self.loop.call_later(
                seconds, self.timeout_keep_alive_handler
            )

    return CoalescingHttpToolsProtocol


def _cancel_unanswered(cycle: Any) -> None:
    """Cancel the task `cycle`'s request put under `CANCEL_ON_DISCONNECT`, if its answer
    has not started (see the module docstring)."""
    if cycle is None or cycle.response_started:
        return
    scope: dict[str, Any] = cycle.scope
    task: asyncio.Task[Any] | None = scope.get(CANCEL_ON_DISCONNECT)
    if task is not None:
        scope[CLIENT_GONE] = True
        task.cancel()


@final
class _HeadWithBody:
    """The transport as a request cycle sees it: its first write waits for the second.

    The held bytes go out with the next write, on `close()`, or at the end of the
    event-loop step, whichever comes first; after a close they are dropped, as
    the transport would drop them.
    """

    __slots__ = ("_first", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._first = True

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif self._first:
            self._first = False
            self._held = data
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def writelines(self, chunks: Iterable[bytes]) -> None:
        self.write(b"".join(chunks))

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)
