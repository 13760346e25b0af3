"""`AiohttpTransport`: the transport seam over one pooled `aiohttp.ClientSession`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import final

import aiohttp

from lmvisor.providers.client import MAX_RESPONSE_BYTES
from lmvisor.providers.errors import ProviderConnectionError
from lmvisor.providers.transport import (
    ErrorMap,
    SSEResponse,
    TransportResponse,
    TransportStatistics,
    _cached_timeout,
    _streamed,
    body_too_large,
    map_errors,
    raise_mapped,
    read_bounded,
)

__all__ = ["AiohttpTransport"]

_ENCODING = "Content-Encoding"

_AIOHTTP_ERRORS = ErrorMap(
    timeouts=(TimeoutError,),  # aiohttp's timeouts are asyncio.TimeoutError subclasses
    body=(aiohttp.ClientPayloadError,),
    body_error=ProviderConnectionError,
    body_detail="connection dropped mid-answer",
    wire=(aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError, OSError),
    # ClientErrors too: matched before `wire`, or a URL it cannot use would be retried, quoted
    build=(aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError),
)


@final
class AiohttpTransport:
    """A transport over one pooled `aiohttp.ClientSession`, opened on first use.

    Args:
        max_connections: pool limit across hosts (0 = unlimited).
        max_connections_per_host: per-host limit (0 = only the pool limit).
        keepalive_timeout: seconds an idle connection stays pooled.

    The session is created inside the first running loop that uses the transport
    and is bound to it; `aclose()` closes it.

    Raises:
        ValueError: an option is out of range.
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
    )

    def __init__(
        self,
        *,
        max_connections: int = 1024,
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
        return _cached_timeout(self._timeouts, seconds, _whole_answer_timeout)

    def _stream_timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        return _cached_timeout(self._stream_timeouts, seconds, _stream_phase_timeout)

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
        """See `Transport.post_json`."""
        # How this calls aiohttp was measured (200 in flight, lean loopback server): the
        # str URL, the dict headers and the cached `ClientTimeout` cost under 1 us of the
        # ~150-230 us of loop CPU a request takes (~45-60 us of it the loop and the kernel,
        # as a bare asyncio.Protocol client shows): a prebuilt `yarl.URL` (0.04 us) or
        # multidict headers (0.5 us) do not pay for a wider seam. The timer is the
        # attempt's only bound (`_lm_call` passes min(timeout, time left) down and wraps
        # nothing around the attempt), so it stays. So does the cookie jar (0.02 us when
        # empty): vendors' edges and sticky load balancers set cookies and expect them
        # back, and the vendors' own SDKs (httpx clients) send them.
        session = self._get_session()
        try:  # not `map_errors`: its generator would live as long as the request
            async with session.post(
                url, data=body, headers=headers, timeout=self._timeout(timeout)
            ) as resp:
                length = resp.content_length
                # The hot path: a stated length within the bound, as it came (no
                # Content-Encoding: aiohttp would inflate it past the stated length).
                if (
                    length is not None
                    and length <= max_response_bytes
                    and _ENCODING not in resp.headers
                ):
                    data: bytes | memoryview = await resp.read()
                else:
                    data = await _read_bounded(resp, max_response_bytes, provider, model)
                return TransportResponse(resp.status, resp.headers, data)
        except Exception as exc:
            raise_mapped(_AIOHTTP_ERRORS, exc, provider, model, timeout)

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
        with map_errors(_AIOHTTP_ERRORS, provider, model, timeout):
            resp = await session.post(
                url, data=body, headers=headers, timeout=self._stream_timeout(timeout)
            )
        async with _streamed(
            status=resp.status,
            headers=resp.headers,
            chunks=resp.content.iter_any(),
            release=resp.release,
            errors=_AIOHTTP_ERRORS,
            provider=provider,
            model=model,
            within=timeout,
        ) as sse:
            yield sse

    def statistics(self) -> TransportStatistics:
        """See `Transport.statistics`."""
        session = self._session
        return TransportStatistics(
            kind="aiohttp",
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
            f"open={self._session is not None})"
        )


async def _read_bounded(
    resp: aiohttp.ClientResponse, limit: int, provider: str, model: str
) -> memoryview:
    """A body with no usable length (or past the bound), read up to `limit` bytes; past
    it the connection is closed (a half-read one must not go back to the pool)."""
    length = resp.content_length
    try:
        if length is not None and length > limit:
            raise body_too_large(provider, model, resp.status, limit, resp.headers)
        chunks = resp.content.iter_any()
        return memoryview(
            await read_bounded(chunks, limit, provider, model, resp.status, resp.headers)
        )
    except BaseException:
        resp.close()
        raise


def _whole_answer_timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


def _stream_phase_timeout(seconds: float) -> aiohttp.ClientTimeout:
    # `connect` (not `sock_connect`) also bounds the wait for a pooled connection.
    return aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)
