"""The transport seam: POST a JSON body, read the answer whole or as server-sent events.

Providers speak the vendors' formats; a `Transport` only moves bytes over one
pooled HTTP client. Two implementations:

- `AiohttpTransport`, the default: one `aiohttp.ClientSession` per instance,
  created lazily inside the running loop, its pool sized by `max_connections`
  and `keepalive_timeout`.
- `HttpxTransport`: wraps a user's own `httpx.AsyncClient` (proxies, mTLS,
  event hooks, `httpx.MockTransport` in tests) or creates one.

Each transport maps its library's failures once, in its `_map_<library>_errors()`:
a timeout becomes `ProviderTimeout`, anything else on the wire
`ProviderConnectionError`, each chained `from` the original; no aiohttp or
httpx exception leaves a transport. HTTP statuses are not judged here: the
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

        `timeout` bounds connecting and each wait for the next bytes, not the whole
        stream. Raises as `post_json` does, while opening and while reading.
        """
        ...

    def statistics(self) -> TransportStatistics:
        """A snapshot of the pool and traffic."""
        ...

    async def aclose(self) -> None:
        """Close the pool (a user-supplied client is left open). Idempotent."""
        ...


# --- aiohttp ----------------------------------------------------------------------


@contextmanager
def _map_aiohttp_errors(provider: str, model: str, timeout: float) -> Iterator[None]:
    try:
        yield
    except LmvisorError:
        raise
    except TimeoutError as exc:  # aiohttp's timeouts are asyncio.TimeoutError subclasses
        raise ProviderTimeout(
            provider=provider, model=model, detail=f"no answer within {timeout:g}s"
        ) from exc
    except aiohttp.ClientPayloadError as exc:
        raise ProviderConnectionError(
            provider=provider, model=model, detail=f"connection dropped mid-answer: {exc}"
        ) from exc
    except (aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError, OSError) as exc:
        raise ProviderConnectionError(
            provider=provider, model=model, detail=str(exc) or type(exc).__name__
        ) from exc


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
        "_in_flight",
        "_keepalive",
        "_loop",
        "_max_connections",
        "_per_host",
        "_requests",
        "_session",
        "_stream_timeouts",
        "_timeouts",
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
        self._requests = 0
        self._in_flight = 0
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
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)
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
        self._requests += 1
        self._in_flight += 1
        try:
            with _map_aiohttp_errors(provider, model, timeout):
                async with session.post(
                    url, data=body, headers=headers, timeout=self._timeout(timeout)
                ) as resp:
                    data = await resp.read()
                    return TransportResponse(resp.status, resp.headers, data)
        finally:
            self._in_flight -= 1

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
        self._requests += 1
        self._in_flight += 1
        try:
            with _map_aiohttp_errors(provider, model, timeout):
                resp = await session.post(
                    url, data=body, headers=headers, timeout=self._stream_timeout(timeout)
                )
            chunks = self._chunks(resp, provider, model, timeout)
            try:
                yield SSEResponse(status=resp.status, headers=resp.headers, chunks=chunks)
            finally:
                await chunks.aclose()
                resp.release()
        finally:
            self._in_flight -= 1

    @staticmethod
    async def _chunks(
        resp: aiohttp.ClientResponse, provider: str, model: str, within: float
    ) -> AsyncGenerator[bytes, None]:
        with _map_aiohttp_errors(provider, model, within):
            async for chunk in resp.content.iter_any():
                yield chunk

    def statistics(self) -> TransportStatistics:
        """See `Transport.statistics`."""
        session = self._session
        return TransportStatistics(
            kind="aiohttp",
            requests=self._requests,
            in_flight=self._in_flight,
            max_connections=self._max_connections or None,
            keepalive_timeout=self._keepalive,
            open=session is not None and not session.closed,
            owns_client=True,
        )

    async def aclose(self) -> None:
        """Close the session and its pool; later use raises RuntimeError. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def __repr__(self) -> str:
        return (
            f"AiohttpTransport(max_connections={self._max_connections}, "
            f"in_flight={self._in_flight}, open={self._session is not None})"
        )


# --- httpx ------------------------------------------------------------------------


@contextmanager
def _map_httpx_errors(provider: str, model: str, timeout: float) -> Iterator[None]:
    try:
        yield
    except LmvisorError:
        raise
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(
            provider=provider, model=model, detail=f"no answer within {timeout:g}s"
        ) from exc
    except httpx.DecodingError as exc:
        raise ResponseFormatError(
            provider=provider, model=model, detail=f"undecodable body: {exc}"
        ) from exc
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
        raise ProviderConnectionError(
            provider=provider, model=model, detail=str(exc) or type(exc).__name__
        ) from exc


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

    httpx applies `timeout` to each phase (connect, write, each read, pool wait)
    rather than to the whole answer. httpx's own pool slows sharply under high
    concurrency (encode/httpx#3215); prefer `AiohttpTransport` unless the
    client's features are needed.
    """

    __slots__ = (
        "_client",
        "_closed",
        "_in_flight",
        "_keepalive",
        "_max_connections",
        "_max_keepalive",
        "_owns_client",
        "_requests",
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
        self._requests = 0
        self._in_flight = 0

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
        self._requests += 1
        self._in_flight += 1
        try:
            with _map_httpx_errors(provider, model, timeout):
                resp = await client.post(url, content=body, headers=headers, timeout=timeout)
                return TransportResponse(resp.status_code, resp.headers, resp.content)
        finally:
            self._in_flight -= 1

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
        self._requests += 1
        self._in_flight += 1
        try:
            with _map_httpx_errors(provider, model, timeout):
                request = client.build_request(
                    "POST", url, content=body, headers=headers, timeout=timeout
                )
                resp = await client.send(request, stream=True)
            chunks = self._chunks(resp, provider, model, timeout)
            try:
                yield SSEResponse(status=resp.status_code, headers=resp.headers, chunks=chunks)
            finally:
                await chunks.aclose()
                with _map_httpx_errors(provider, model, timeout):
                    await resp.aclose()
        finally:
            self._in_flight -= 1

    @staticmethod
    async def _chunks(
        resp: httpx.Response, provider: str, model: str, within: float
    ) -> AsyncGenerator[bytes, None]:
        with _map_httpx_errors(provider, model, within):
            async for chunk in resp.aiter_bytes():
                yield chunk

    def statistics(self) -> TransportStatistics:
        """See `Transport.statistics`."""
        client = self._client
        return TransportStatistics(
            kind="httpx",
            requests=self._requests,
            in_flight=self._in_flight,
            max_connections=self._max_connections if self._owns_client else None,
            keepalive_timeout=self._keepalive if self._owns_client else None,
            open=client is not None and not client.is_closed,
            owns_client=self._owns_client,
        )

    async def aclose(self) -> None:
        """Close a client this transport created; a user's client is left open."""
        self._closed = True
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def __repr__(self) -> str:
        return (
            f"HttpxTransport(owns_client={self._owns_client}, in_flight={self._in_flight}, "
            f"open={self._client is not None})"
        )
