"""The transport seam: POST a JSON body, read the answer whole or as server-sent events.

Providers speak the vendors' formats; a `Transport` only moves bytes over one
pooled HTTP client. Two implementations:

- `AiohttpTransport`, the default: one `aiohttp.ClientSession` per instance,
  created lazily inside the running loop, its pool sized by `max_connections`
  and `keepalive_timeout`.
- `HttpxTransport`: wraps a user's own `httpx.AsyncClient` (proxies, mTLS,
  event hooks, `httpx.MockTransport` in tests) or creates one.

Each transport maps its library's failures once, through `_map_errors()` and
its library's `_ErrorMap`: a timeout becomes `ProviderTimeout`, anything else
on the wire `ProviderConnectionError`, each chained `from` the original; no
aiohttp or httpx exception leaves a transport. HTTP statuses are not judged here: the
caller receives every status and maps it with `errors.error_from_status`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Protocol, final

import aiohttp
import httpx

from lmvisor.providers.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ResponseFormatError,
)
from lmvisor.providers.sse import SSEEvent, iter_sse
from lmvisor.runtime.errors import LmvisorError

__all__ = [
    "AiohttpTransport",
    "HttpxTransport",
    "SSEResponse",
    "Transport",
    "TransportResponse",
    "TransportStatistics",
]


@dataclass(frozen=True, slots=True)
class TransportResponse:
    """A whole HTTP answer: status, headers (case-insensitive mapping) and raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class TransportStatistics:
    """A snapshot of one transport's pool and traffic.

    Attributes:
        kind: "aiohttp" or "httpx".
        requests: requests sent (whole and streamed).
        in_flight: requests sent whose answer is not yet fully read.
        max_connections: the pool's connection limit (None when unknown or unlimited).
        keepalive_timeout: seconds an idle pooled connection is kept (None when unknown).
        open: True while the underlying client exists and is not closed.
        owns_client: False for a client the user supplied (the transport never closes it).
    """

    kind: str
    requests: int
    in_flight: int
    max_connections: int | None
    keepalive_timeout: float | None
    open: bool
    owns_client: bool


@final
class SSEResponse:
    """An answer being streamed: status and headers now, then the body as events or bytes."""

    __slots__ = ("_chunks", "headers", "status")

    def __init__(
        self, *, status: int, headers: Mapping[str, str], chunks: AsyncGenerator[bytes, None]
    ) -> None:
        self.status = status
        self.headers = headers
        self._chunks = chunks

    async def read(self) -> bytes:
        """The rest of the body, whole (used for error answers)."""
        return b"".join([chunk async for chunk in self._chunks])

    def events(self) -> AsyncGenerator[SSEEvent, None]:
        """The rest of the body as server-sent events; a dropped connection raises
        `ProviderConnectionError`, a stalled one `ProviderTimeout`."""
        return iter_sse(self._chunks)

    def __repr__(self) -> str:
        return f"SSEResponse(status={self.status})"


class Transport(Protocol):
    """What a provider needs from HTTP. Implementations pool connections and are safe
    to use from many tasks of one event loop at once.

    `provider` and `model` only attribute the errors a transport raises.
    Cancelling the awaiting task abandons the request and frees its connection.
    """

    async def post_json(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float,  # noqa: ASYNC109 - the HTTP client enforces it
        provider: str,
        model: str,
    ) -> TransportResponse:
        """POST `body` (already JSON-encoded) and return the whole answer, any status.

        Raises:
            ProviderTimeout: no complete answer within `timeout` seconds.
            ProviderConnectionError: the connection failed or dropped.
            RuntimeError: the transport is closed or bound to another event loop.
        """
        ...

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
        """POST `body` and hold the answer open for streaming; leaving the block frees it.

        `timeout` bounds getting a connection (a free one from the pool, or a new
        one) and each wait for the next bytes, not the whole stream. Raises as
        `post_json` does, while opening and while reading.
        """
        ...

    def statistics(self) -> TransportStatistics:
        """A snapshot of the pool and traffic."""
        ...

    async def aclose(self) -> None:
        """Close the pool (a user-supplied client is left open). Idempotent."""
        ...


# --- shared by both transports --------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ErrorMap:
    """How one HTTP library's exceptions become provider errors, tried in field order.

    Attributes:
        timeouts: no answer in time -> `ProviderTimeout`.
        body: the answer broke off or cannot be decoded -> `body_error`, its
            detail prefixed with `body_detail`.
        wire: any other failure on the wire -> `ProviderConnectionError`.
    """

    timeouts: tuple[type[BaseException], ...]
    body: tuple[type[BaseException], ...]
    body_error: type[ProviderError]
    body_detail: str
    wire: tuple[type[BaseException], ...]


@contextmanager
def _map_errors(errors: _ErrorMap, provider: str, model: str, timeout: float) -> Iterator[None]:
    try:
        yield
    except LmvisorError:
        raise
    except errors.timeouts as exc:
        raise ProviderTimeout(
            provider=provider, model=model, detail=f"no answer within {timeout:g}s"
        ) from exc
    except errors.body as exc:
        raise errors.body_error(
            provider=provider, model=model, detail=f"{errors.body_detail}: {exc}"
        ) from exc
    except errors.wire as exc:
        raise ProviderConnectionError(
            provider=provider, model=model, detail=str(exc) or type(exc).__name__
        ) from exc


async def _mapped_chunks(
    chunks: AsyncIterator[bytes], errors: _ErrorMap, provider: str, model: str, within: float
) -> AsyncGenerator[bytes, None]:
    with _map_errors(errors, provider, model, within):
        async for chunk in chunks:
            yield chunk


class _Traffic:
    """Counts one transport's requests, and those whose answer is still being read."""

    __slots__ = ("in_flight", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.in_flight = 0

    @contextmanager
    def sending(self) -> Iterator[None]:
        """Count one request for the duration of the block."""
        self.requests += 1
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    def statistics(
        self, kind: str, *, pool: tuple[int | None, float | None], is_open: bool, owns: bool
    ) -> TransportStatistics:
        """A snapshot; `pool` is (max_connections, keepalive_timeout)."""
        max_connections, keepalive_timeout = pool
        return TransportStatistics(
            kind=kind,
            requests=self.requests,
            in_flight=self.in_flight,
            max_connections=max_connections,
            keepalive_timeout=keepalive_timeout,
            open=is_open,
            owns_client=owns,
        )


# --- aiohttp ----------------------------------------------------------------------


_AIOHTTP_ERRORS = _ErrorMap(
    timeouts=(TimeoutError,),  # aiohttp's timeouts are asyncio.TimeoutError subclasses
    body=(aiohttp.ClientPayloadError,),
    body_error=ProviderConnectionError,
    body_detail="connection dropped mid-answer",
    wire=(aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError, OSError),
)


@final
class AiohttpTransport:
    """The default transport: one pooled `aiohttp.ClientSession`, opened on first use.

    Args:
        max_connections: pool limit across hosts (0 = unlimited).
        max_connections_per_host: per-host limit (0 = only the pool limit).
        keepalive_timeout: seconds an idle connection stays pooled.

    The session is created inside the first running loop that uses the transport
    and is bound to it; `aclose()` closes it.
    """

    __slots__ = (
        "_closed",
        "_keepalive",
        "_loop",
        "_max_connections",
        "_per_host",
        "_session",
        "_stream_timeouts",
        "_timeouts",
        "_traffic",
    )

    def __init__(
        self,
        *,
        max_connections: int = 100,
        max_connections_per_host: int = 0,
        keepalive_timeout: float = 30.0,
    ) -> None:
        if max_connections < 0:
            raise ValueError(f"max_connections must be >= 0, got {max_connections!r}")
        if max_connections_per_host < 0:
            raise ValueError(
                f"max_connections_per_host must be >= 0, got {max_connections_per_host!r}"
            )
        if keepalive_timeout <= 0:
            raise ValueError(f"keepalive_timeout must be > 0, got {keepalive_timeout!r}")
        self._max_connections = max_connections
        self._per_host = max_connections_per_host
        self._keepalive = keepalive_timeout
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._traffic = _Traffic()
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._stream_timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is not None and self._loop is asyncio.get_running_loop():
            return session
        if self._closed:
            raise RuntimeError("AiohttpTransport is closed")
        if session is not None:
            raise RuntimeError("AiohttpTransport is bound to another event loop")
        self._loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=self._per_host,
            keepalive_timeout=self._keepalive,
        )
        self._session = aiohttp.ClientSession(connector=connector, raise_for_status=False)
        return self._session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    def _stream_timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._stream_timeouts.get(seconds)
        if timeout is None:
            # `connect` (not `sock_connect`) also bounds the wait for a pooled connection.
            timeout = aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)
            self._stream_timeouts[seconds] = timeout
        return timeout

    async def post_json(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float,  # noqa: ASYNC109 - the HTTP client enforces it
        provider: str,
        model: str,
    ) -> TransportResponse:
        """See `Transport.post_json`."""
        session = self._get_session()
        with self._traffic.sending(), _map_errors(_AIOHTTP_ERRORS, provider, model, timeout):
            async with session.post(
                url, data=body, headers=headers, timeout=self._timeout(timeout)
            ) as resp:
                data = await resp.read()
                return TransportResponse(resp.status, resp.headers, data)

    @asynccontextmanager
    async def stream_sse(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float,  # noqa: ASYNC109 - the HTTP client enforces it
        provider: str,
        model: str,
    ) -> AsyncIterator[SSEResponse]:
        """See `Transport.stream_sse`."""
        session = self._get_session()
        with self._traffic.sending():
            with _map_errors(_AIOHTTP_ERRORS, provider, model, timeout):
                resp = await session.post(
                    url, data=body, headers=headers, timeout=self._stream_timeout(timeout)
                )
            content = resp.content.iter_any()
            chunks = _mapped_chunks(content, _AIOHTTP_ERRORS, provider, model, timeout)
            try:
                yield SSEResponse(status=resp.status, headers=resp.headers, chunks=chunks)
            finally:
                await chunks.aclose()
                resp.release()

    def statistics(self) -> TransportStatistics:
        """See `Transport.statistics`."""
        session = self._session
        is_open = session is not None and not session.closed
        pool = (self._max_connections or None, self._keepalive)
        return self._traffic.statistics("aiohttp", pool=pool, is_open=is_open, owns=True)

    async def aclose(self) -> None:
        """Close the session and its pool; later use raises RuntimeError. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def __repr__(self) -> str:
        return (
            f"AiohttpTransport(max_connections={self._max_connections}, "
            f"in_flight={self._traffic.in_flight}, open={self._session is not None})"
        )


# --- httpx ------------------------------------------------------------------------


_HTTPX_ERRORS = _ErrorMap(
    timeouts=(httpx.TimeoutException, TimeoutError),
    body=(httpx.DecodingError,),
    body_error=ResponseFormatError,
    body_detail="undecodable body",
    wire=(httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError),
)


@final
class HttpxTransport:
    """A transport over an `httpx.AsyncClient`: the user's own, or one it creates.

    Args:
        client: a client to use as is; the transport never closes it. When None,
            a client is created on first use with the limits below, and closed
            by `aclose()`.
        max_connections: pool limit of a created client.
        max_keepalive_connections: idle connections a created client keeps.
        keepalive_timeout: seconds an idle connection of a created client is kept.

    httpx applies `timeout` to each phase (connect, write, each read, pool wait);
    `post_json` also bounds the whole answer by it, a stream only each phase.
    httpx's own pool slows sharply under high concurrency (encode/httpx#3215);
    prefer `AiohttpTransport` unless the client's features are needed.
    """

    __slots__ = (
        "_client",
        "_closed",
        "_keepalive",
        "_max_connections",
        "_max_keepalive",
        "_owns_client",
        "_traffic",
    )

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        max_connections: int = 100,
        max_keepalive_connections: int = 20,
        keepalive_timeout: float = 30.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections!r}")
        if max_keepalive_connections < 0:
            raise ValueError(
                f"max_keepalive_connections must be >= 0, got {max_keepalive_connections!r}"
            )
        if keepalive_timeout <= 0:
            raise ValueError(f"keepalive_timeout must be > 0, got {keepalive_timeout!r}")
        self._client = client
        self._owns_client = client is None
        self._max_connections = max_connections
        self._max_keepalive = max_keepalive_connections
        self._keepalive = keepalive_timeout
        self._closed = False
        self._traffic = _Traffic()

    def _get_client(self) -> httpx.AsyncClient:
        if self._closed:
            raise RuntimeError("HttpxTransport is closed")
        client = self._client
        if client is not None:
            return client
        limits = httpx.Limits(
            max_connections=self._max_connections,
            max_keepalive_connections=self._max_keepalive,
            keepalive_expiry=self._keepalive,
        )
        self._client = httpx.AsyncClient(limits=limits)
        return self._client

    async def post_json(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float,  # noqa: ASYNC109 - the HTTP client enforces it
        provider: str,
        model: str,
    ) -> TransportResponse:
        """See `Transport.post_json`."""
        client = self._get_client()
        with self._traffic.sending(), _map_errors(_HTTPX_ERRORS, provider, model, timeout):
            # httpx times each phase apart; this bounds the whole answer, as promised.
            async with asyncio.timeout(timeout):
                resp = await client.post(url, content=body, headers=headers, timeout=timeout)
            return TransportResponse(resp.status_code, resp.headers, resp.content)

    @asynccontextmanager
    async def stream_sse(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float,  # noqa: ASYNC109 - the HTTP client enforces it
        provider: str,
        model: str,
    ) -> AsyncIterator[SSEResponse]:
        """See `Transport.stream_sse`."""
        client = self._get_client()
        with self._traffic.sending():
            with _map_errors(_HTTPX_ERRORS, provider, model, timeout):
                request = client.build_request(
                    "POST", url, content=body, headers=headers, timeout=timeout
                )
                resp = await client.send(request, stream=True)
            chunks = _mapped_chunks(resp.aiter_bytes(), _HTTPX_ERRORS, provider, model, timeout)
            try:
                yield SSEResponse(status=resp.status_code, headers=resp.headers, chunks=chunks)
            finally:
                await chunks.aclose()
                with _map_errors(_HTTPX_ERRORS, provider, model, timeout):
                    await resp.aclose()

    def statistics(self) -> TransportStatistics:
        """See `Transport.statistics`."""
        client = self._client
        owns = self._owns_client
        is_open = client is not None and not client.is_closed
        pool = (self._max_connections, self._keepalive) if owns else (None, None)
        return self._traffic.statistics("httpx", pool=pool, is_open=is_open, owns=owns)

    async def aclose(self) -> None:
        """Close a client this transport created; a user's client is left open."""
        self._closed = True
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def __repr__(self) -> str:
        return (
            f"HttpxTransport(owns_client={self._owns_client}, in_flight={self._traffic.in_flight}, "
            f"open={self._client is not None})"
        )
