"""`HttpxTransport`: the transport seam over an `httpx.AsyncClient`, the user's own or its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import final

import httpx

from lmvisor.providers.client import MAX_RESPONSE_BYTES
from lmvisor.providers.errors import ResponseFormatError
from lmvisor.providers.transport import (
    ErrorMap,
    SSEResponse,
    TransportResponse,
    TransportStatistics,
    _content_length,
    _streamed,
    body_too_large,
    map_errors,
    read_bounded,
)

__all__ = ["HttpxTransport"]

_HTTPX_ERRORS = ErrorMap(
    timeouts=(httpx.TimeoutException, TimeoutError),
    body=(httpx.DecodingError,),
    body_error=ResponseFormatError,
    body_detail="undecodable body",
    wire=(httpx.HTTPError, httpx.StreamError, OSError),
    build=(httpx.LocalProtocolError, httpx.InvalidURL, httpx.UnsupportedProtocol),
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
    prefer the default transport unless the client's features are needed.

    Raises:
        ValueError: an option is out of range.
    """

    __slots__ = (
        "_client",
        "_closed",
        "_keepalive",
        "_max_connections",
        "_max_keepalive",
        "_owns_client",
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
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        provider: str,
        model: str,
    ) -> TransportResponse:
        """See `Transport.post_json`."""
        client = self._get_client()
        with map_errors(_HTTPX_ERRORS, provider, model, timeout):
            # httpx times each phase apart; this bounds the whole answer, as promised.
            async with asyncio.timeout(timeout):
                # What `client.post` does, with the body read here, within the bound.
                request = client.build_request(
                    "POST", url, content=body, headers=headers, timeout=timeout
                )
                resp = await client.send(request, stream=True)
                try:
                    data = await _read_body(resp, max_response_bytes, provider, model)
                finally:
                    await resp.aclose()  # a half-read connection is closed, not pooled
            return TransportResponse(resp.status_code, resp.headers, data)

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
        with map_errors(_HTTPX_ERRORS, provider, model, timeout):
            request = client.build_request(
                "POST", url, content=body, headers=headers, timeout=timeout
            )
            resp = await client.send(request, stream=True)
        async with _streamed(
            status=resp.status_code,
            headers=resp.headers,
            chunks=resp.aiter_bytes(),
            release=resp.aclose,
            errors=_HTTPX_ERRORS,
            provider=provider,
            model=model,
            within=timeout,
        ) as sse:
            yield sse

    def statistics(self) -> TransportStatistics:
        """See `Transport.statistics`."""
        client = self._client
        owns = self._owns_client
        is_open = client is not None and not client.is_closed
        return TransportStatistics(
            kind="httpx",
            max_connections=self._max_connections if owns else None,
            keepalive_timeout=self._keepalive if owns else None,
            open=is_open,
            owns_client=owns,
        )

    async def aclose(self) -> None:
        """Close a client this transport created; a user's client is left open."""
        self._closed = True
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def __repr__(self) -> str:
        return f"HttpxTransport(owns_client={self._owns_client}, open={self._client is not None})"


async def _read_body(
    resp: httpx.Response, limit: int, provider: str, model: str
) -> bytes | memoryview:
    """The body, at most `limit` bytes: in one read when its stated length is within the
    bound and it comes uncompressed, else in chunks up to the bound."""
    length = _content_length(resp.headers)
    if length is not None and length > limit:
        raise body_too_large(provider, model, resp.status_code, limit, resp.headers)
    if length is not None and "Content-Encoding" not in resp.headers:
        return await resp.aread()
    status, chunks = resp.status_code, resp.aiter_bytes()
    return memoryview(await read_bounded(chunks, limit, provider, model, status, resp.headers))
