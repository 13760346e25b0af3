"""`PyreqwestTransport`: the transport seam over pyreqwest (Rust's reqwest, on its own thread).

Requests are built and sent from the event loop, but connections, TLS
(rustls) and HTTP parsing run on pyreqwest's Tokio thread, so the loop spends
~25 us per request where aiohttp spends ~150 us: at hundreds of calls in
flight that is what keeps the loop from saturating. Installed with the
`fast` extra; pyreqwest 0.15 is a beta.

A whole answer is bounded by `timeout` end to end (reqwest's request
timeout). pyreqwest 0.15 reads a whole answer's body in Rust before `send()` returns,
with no size limit of its own: `max_response_bytes` is checked on the body read (the
same `ResponseFormatError` as the other transports), but the bytes a hostile vendor
sends are held by reqwest until the timeout ends the read. A streamed request would
let the bound stop the read, at the cost of the aborts at exit described below; where
a `base_url` is not trusted, use the aiohttp transport. The pool is reqwest's:
`max_connections` caps requests in flight, further ones wait for a slot within their
timeout.

Caveats found with pyreqwest 0.15 (checked again on 0.15.1): `Client.close()`
does not close pooled connections; they close when the last reference to the
client (or to a request builder of it) goes. `aclose()` drops the transport's
reference, and no request path keeps one in a frame a kept error's traceback
could hold, so the pool closes at once unless a request is still in flight.
Streams go over an `AiohttpTransport` the transport owns: a pyreqwest streamed
response whose body breaks mid-read can abort the interpreter at exit (a
GIL-state error: "PyGILState_Release ... finalizing").

The same abort at exit also follows whole answers (measured on 0.15.1): a
success or a failure, plain HTTP or TLS, with or without lmvisor, when
pyreqwest's thread is still inside the GIL as the interpreter finalizes. One
request (a TLS handshake refused, an aiohttp server in the same process),
`aclose()`, exit: 15 of 60 runs aborted; pure pyreqwest, one refused
connection: 2 of 60. An exit handler (`_let_pyreqwest_settle`, registered when
a client is built) releases the GIL for 50 ms before the interpreter
finalizes: 0 of 300 aborted in the same runs (`soak/pyreqwest_exit.py`).

A request whose task is cancelled, and whose client closes before the task
runs again, ends with pyreqwest's "Client was closed" rather than the
cancellation; `post_json` raises CancelledError then, as aiohttp does.

Parity with `AiohttpTransport`: no proxy from the environment (reqwest reads
HTTP(S)_PROXY by default), a cookie jar, redirects followed (307/308 resend the
POST, 301/302/303 become a GET; at most 10), gzip/deflate answers decompressed.
CA roots: both honour SSL_CERT_FILE/SSL_CERT_DIR set when the process starts
(aiohttp reads them once at import, pyreqwest when a client is built); without
them aiohttp trusts OpenSSL's default paths and pyreqwest the platform's roots
(rustls-platform-verifier: on Linux the same system bundle files; on macOS and
Windows the OS trust store, which python.org's macOS build does not use).
"""

from __future__ import annotations

import asyncio
import atexit
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import final

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import (
    BodyDecodeError,
    BuilderError,
    PyreqwestError,
    ReadError,
    RequestTimeoutError,
)

from lmvisor.providers.aiohttp_transport import AiohttpTransport
from lmvisor.providers.client import MAX_RESPONSE_BYTES
from lmvisor.providers.errors import ProviderConnectionError
from lmvisor.providers.transport import (
    ErrorMap,
    SSEResponse,
    TransportResponse,
    TransportStatistics,
    _cached_timeout,
    body_too_large,
    raise_mapped,
)

__all__ = ["PyreqwestTransport"]

_EXIT_SETTLE = 0.05  # seconds the interpreter waits at exit for pyreqwest's thread

_PYREQWEST_ERRORS = ErrorMap(
    timeouts=(RequestTimeoutError, TimeoutError),
    body=(BodyDecodeError, ReadError),
    body_error=ProviderConnectionError,
    body_detail="connection dropped mid-answer",
    wire=(PyreqwestError, OSError),
    # a PyreqwestError too: matched before `wire`, or a bad URL would be retried, quoted
    build=(BuilderError,),
)


@final
class PyreqwestTransport:
    """A transport over one pooled pyreqwest `Client`, built on first use.

    Args:
        max_connections: requests in flight at once (0 = unlimited).
        keepalive_timeout: seconds an idle connection stays pooled.

    Raises:
        ValueError: an option is out of range.
    """

    __slots__ = ("_client", "_closed", "_keepalive", "_max_connections", "_streams", "_timeouts")

    def __init__(self, *, max_connections: int = 1024, keepalive_timeout: float = 30.0) -> None:
        if max_connections < 0:
            raise ValueError(f"max_connections must be >= 0, got {max_connections!r}")
        if keepalive_timeout <= 0:
            raise ValueError(f"keepalive_timeout must be > 0, got {keepalive_timeout!r}")
        self._max_connections = max_connections
        self._keepalive = keepalive_timeout
        self._client: Client | None = None
        self._closed = False
        self._timeouts: dict[float, timedelta] = {}
        self._streams = AiohttpTransport(
            max_connections=max_connections, keepalive_timeout=keepalive_timeout
        )

    def _get_client(self) -> Client:
        client = self._client
        if client is not None:
            return client
        if self._closed:
            raise RuntimeError("PyreqwestTransport is closed")
        builder = (
            ClientBuilder()
            .max_connections(self._max_connections or None)
            .pool_idle_timeout(timedelta(seconds=self._keepalive))
            .error_for_status(False)
            # As the aiohttp transport: no proxy from the environment, a cookie jar.
            .no_proxy()
            .default_cookie_store(True)
        )
        self._client = builder.build()
        # One registration per process however many clients are built (see the module).
        atexit.unregister(_let_pyreqwest_settle)
        atexit.register(_let_pyreqwest_settle)
        return self._client

    def _timeout(self, seconds: float) -> timedelta:
        return _cached_timeout(self._timeouts, seconds, _as_timedelta)

    async def post_json(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float,  # noqa: ASYNC109 - the HTTP client enforces it
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        provider: str,
        model: str,
    ) -> TransportResponse:
        """See `Transport.post_json` (the bound is checked once reqwest has read the body:
        see the module)."""
        try:  # not `map_errors`: its generator would live as long as the request
            # One expression, no local for the client, builder or request: a failure's
            # traceback keeps this frame's locals, and any of them held there would keep
            # the pool (and its connections) open after `aclose()`.
            resp = await (
                self._get_client()
                .post(url)
                .headers(headers)
                .body_bytes(body)
                .timeout(self._timeout(timeout))
                .build()
                .send()
            )
            data = await resp.bytes()
        except Exception as exc:
            _raise_if_cancelled(exc)
            raise_mapped(_PYREQWEST_ERRORS, exc, provider, model, timeout)
        if len(data) > max_response_bytes:
            raise body_too_large(provider, model, resp.status, max_response_bytes, resp.headers)
        return TransportResponse(resp.status, resp.headers, memoryview(data))

    def stream_sse(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float,
        provider: str,
        model: str,
    ) -> AbstractAsyncContextManager[SSEResponse]:
        """See `Transport.stream_sse` (served by the owned aiohttp transport)."""
        if self._closed:
            raise RuntimeError("PyreqwestTransport is closed")
        return self._streams.stream_sse(
            url, headers=headers, body=body, timeout=timeout, provider=provider, model=model
        )

    def statistics(self) -> TransportStatistics:
        """See `Transport.statistics`."""
        return TransportStatistics(
            kind="pyreqwest",
            max_connections=self._max_connections or None,
            keepalive_timeout=self._keepalive,
            open=self._client is not None and not self._closed,
            owns_client=True,
        )

    async def aclose(self) -> None:
        """Close the client and its pool; later use raises RuntimeError. Idempotent."""
        self._closed = True
        client, self._client = self._client, None
        try:
            if client is not None:
                await client.close()
        finally:
            await self._streams.aclose()

    def __repr__(self) -> str:
        return (
            f"PyreqwestTransport(max_connections={self._max_connections}, "
            f"open={self._client is not None})"
        )


def _raise_if_cancelled(exc: Exception) -> None:
    """Raise CancelledError (from `exc`) when the running task has been cancelled.

    A request whose task is cancelled and whose client closes before the task runs
    again ends with pyreqwest's "Client was closed" instead of the cancellation (an
    actor's owned tasks are cancelled, then the task holding its client closes it):
    the caller must see the cancellation, as with aiohttp.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


def _let_pyreqwest_settle() -> None:
    """At exit, before finalizing: release the GIL briefly so pyreqwest's thread ends
    what it does under the GIL (see the module)."""
    time.sleep(_EXIT_SETTLE)


def _as_timedelta(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)
