"""The daemon's HTTP/1.1 protocol: uvicorn's httptools one, writing a response's head with its body.

uvicorn writes the status line and headers as soon as the app sends
`http.response.start`, then the body on `http.response.body`: two `send()` calls,
two TCP segments and two reads for the client for every small JSON answer. Here
the head is held back until the response's next write, which carries both in one
`writelines` (a single `send`); a head with no body in the same event-loop step
(a stream's first chunk still being made, a 204) goes out at the end of that step,
so nothing waits on the application. Only the request cycle's writes are held;
the protocol's own (a 400 for an unparsable request) go straight out.

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
        """uvicorn's httptools protocol; each request cycle writes through `_HeadWithBody`."""

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            cycle = self.cycle
            # Set before the cycle's task first runs (tasks start on a later loop step).
            if cycle is not None and cycle.transport is self.transport:
                cycle.transport = _HeadWithBody(self.transport, self.loop)  # type: ignore[assignment]

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
