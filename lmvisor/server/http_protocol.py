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

`http_protocol()` names the class for `uvicorn.Config(http=...)`: this one when
httptools is installed (the `fast` extra), else uvicorn's default choice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import final

__all__ = ["http_protocol"]


def http_protocol() -> type[asyncio.Protocol] | str:
    """The HTTP protocol for uvicorn: the coalescing httptools protocol, else "auto"."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: uvicorn falls back to h11
        return "auto"

    @final
    class CoalescingHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol; each request cycle writes through `_HeadWithBody`,
        and the keep-alive timer outlives requests (see the module docstring)."""

        # Loop time the last response ended with nothing after it; None while a request is on.
        _idle_since: float | None = None

        def on_headers_complete(self) -> None:
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

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            timer = self.timeout_keep_alive_task
            if timer is not None:
                self.timeout_keep_alive_task = None
                timer.cancel()

        def _arm(self, seconds: float) -> None:
            self.timeout_keep_alive_task = self.loop.call_later(
                seconds, self.timeout_keep_alive_handler
            )

    return CoalescingHttpToolsProtocol


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
