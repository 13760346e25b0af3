"""The transport seam: POST a JSON body, read the answer whole or as server-sent events.

Vendor clients speak the vendors' formats; a `Transport` only moves bytes over
one pooled HTTP client. Three implementations, each in its own module:

- `AiohttpTransport` (`aiohttp_transport`): one `aiohttp.ClientSession`; the default.
- `PyreqwestTransport` (`pyreqwest_transport`): Rust's reqwest; its I/O runs on
  a thread of its own, so the event loop spends ~40 us per request where
  aiohttp spends ~150-200 us; what "auto" picks when the `fast` extra is
  installed. Opt-in, measured: in-process work gains (Evaluate of 500 examples
  at 200 in flight, efficiency 0.87 against aiohttp's 0.78 in the same run;
  0.80 against 0.55 on a busier machine), the daemon's /run at 200 clients
  loses (0.69 against 0.78), and pyreqwest 0.15.1 is a beta whose defects are
  only contained here (pooled connections after close, an abort at interpreter
  exit held off by a timed wait, a cancellation lost to a closing client). Its
  results need the GIL from its own thread, so its gain shrinks as the loop gets
  busier; TLS is rustls; streams go over aiohttp.
- `HttpxTransport` (`httpx_transport`): wraps a user's own `httpx.AsyncClient`
  (proxies, mTLS, event hooks, `httpx.MockTransport` in tests) or creates one.

`build_transport(kind, ...)` makes one by name ("auto": pyreqwest when installed, else
aiohttp); `transport_for(options)` the one a `ClientOptions` asks for (every client that
builds its own transport builds it there). Each transport maps its library's failures
once, through `map_errors()` and its `ErrorMap`: a timeout becomes `ProviderTimeout`,
anything else on the wire `ProviderConnectionError`, a `ValueError` (the library refusing
to build the request: a header value or URL it cannot send) `RequestBuildError`, each
chained `from` the original; no library exception leaves a transport. The vendor clients
hold any transport, a user's own included, to that (`request_build_error`): a `ValueError`
from its `post_json`, or from `stream_sse` while opening or reading the stream, is the
HTTP client's own, never the caller's bad input. HTTP statuses are not judged here: the
caller receives every status and maps it with `errors.error_from_status`. Counting
requests is the provider actor's job, not the transport's.

A whole answer is bounded by the caller's `max_response_bytes` (a vendor client's
`ClientOptions.max_response_bytes`): a `Content-Length` above it is refused before a
byte of the body is read, a body without one (chunked, or compressed) is read in
chunks up to it; past it, `body_too_large` (the error of the answer's status when it is
one, whatever its body, else `ResponseFormatError`) and the connection is closed, never
pooled half-read. An answer that states its length within the bound
is read in one `read()` as before: the bound costs one header check.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import NoReturn, Protocol, TypeVar, final

from lmvisor.providers.client import MAX_RESPONSE_BYTES, ClientOptions, TransportKind
from lmvisor.providers.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RequestBuildError,
    ResponseFormatError,
    error_from_status,
)
from lmvisor.providers.sse import SSEEvent, iter_sse
from lmvisor.runtime.errors import LmvisorError

__all__ = [
    "ErrorMap",
    "SSEResponse",
    "Transport",
    "TransportResponse",
    "TransportStatistics",
    "body_too_large",
    "build_transport",
    "default_transport_kind",
    "map_errors",
    "mapped_chunks",
    "mapped_error",
    "raise_mapped",
    "read_bounded",
    "request_build_error",
    "transport_for",
]

_T = TypeVar("_T")
_TIMEOUT_CACHE = 64  # distinct per-attempt timeouts whose library objects are kept
_MAX_LENGTH_DIGITS = 18  # a longer Content-Length is no length (int() of it would be slow)


@final
@dataclass(frozen=True, slots=True)
class TransportResponse:
    """A whole HTTP answer: status, headers (case-insensitive mapping) and raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes | memoryview


@final
@dataclass(frozen=True, slots=True)
class TransportStatistics:
    """A snapshot of one transport's pool.

    Attributes:
        kind: "aiohttp", "httpx" or "pyreqwest".
        max_connections: the pool's connection limit (None when unknown or unlimited).
        keepalive_timeout: seconds an idle pooled connection is kept (None when unknown).
        open: True while the underlying client exists and is not closed.
        owns_client: False for a client the user supplied (the transport never closes it).
    """

    kind: str
    max_connections: int | None
    keepalive_timeout: float | None
    open: bool
    owns_client: bool


@final
class SSEResponse:
    """An answer being streamed: status and headers now, then the body as events or bytes.

    `provider` and `model` only attribute the error `read()` raises past its bound.
    """

    __slots__ = ("_chunks", "headers", "model", "provider", "status")

    def __init__(
        self,
        *,
        status: int,
        headers: Mapping[str, str],
        chunks: AsyncGenerator[bytes, None],
        provider: str = "",
        model: str = "",
    ) -> None:
        self.status = status
        self.headers = headers
        self._chunks = chunks
        self.provider = provider
        self.model = model

    async def read(self, max_bytes: int | None = None) -> bytes:
        """The rest of the body, whole (used for error answers); None reads it unbounded.

        Raises:
            ProviderError: the body is longer than `max_bytes` (`body_too_large`: the
                status's error, or `ResponseFormatError` for a success): refused before
                reading when its `Content-Length` says so, else once the bytes read
                pass it (the rest is left unread; leaving the stream's block closes it).
        """
        if max_bytes is None:
            return b"".join([chunk async for chunk in self._chunks])
        length = _content_length(self.headers)
        if length is not None and length > max_bytes:
            raise body_too_large(self.provider, self.model, self.status, max_bytes, self.headers)
        return bytes(
            await read_bounded(
                self._chunks, max_bytes, self.provider, self.model, self.status, self.headers
            )
        )

    def events(self) -> AsyncGenerator[SSEEvent, None]:
        """The rest of the body as server-sent events; a dropped connection raises
        `ProviderConnectionError`, a stalled one `ProviderTimeout`."""
        return iter_sse(self._chunks)

    def __repr__(self) -> str:
        return f"SSEResponse(status={self.status})"


class Transport(Protocol):
    """What a vendor client needs from HTTP. Implementations pool connections and are
    safe to use from many tasks of one event loop at once.

    `provider` and `model` only attribute the errors a transport raises.
    Cancelling the awaiting task abandons the request and frees its connection.

    A transport of one's own should raise the typed errors below. A plain `ValueError`
    from `post_json`, or from `stream_sse` while opening or reading the stream, is taken
    as the HTTP client refusing to build the request: the vendor client raises a
    non-retryable `RequestBuildError` from it (its message left out: it may quote a
    header, often the key), as it does for the built-in transports. Any other
    exception passes through as it is.
    """

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
        """POST `body` (already JSON-encoded) and return the whole answer, any status.

        The answer's body may hold at most `max_response_bytes` (the vendor clients always
        pass their options' bound; a transport of one's own takes the argument, with the
        same default for direct callers, and should honour it): a longer one is refused,
        by its `Content-Length` before reading, else as the bytes arrive (`read_bounded`),
        holding little more than the bound, and its connection closed, not pooled.

        Raises:
            ProviderError: the body is longer than `max_response_bytes`
                (`body_too_large`: an error status's own error, a 5xx or 429 retried;
                a success's `ResponseFormatError`, not retried).
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
        """A snapshot of the pool."""
        ...

    async def aclose(self) -> None:
        """Close the pool (a user-supplied client is left open). Idempotent."""
        ...


# --- shared by the transports ----------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class ErrorMap:
    """How one HTTP library's exceptions become provider errors, tried in field order.

    Attributes:
        timeouts: no answer in time -> `ProviderTimeout`.
        body: the answer broke off or cannot be decoded -> `body_error`, its
            detail prefixed with `body_detail`.
        build: the library would not build the request (a header value or URL it
            cannot send) -> `RequestBuildError`; tried before `wire` (a library may
            file it under its wire errors). Any other `ValueError` counts as one too,
            once `wire` did not claim it (ssl's verify failure is a ValueError).
        wire: any other failure on the wire -> `ProviderConnectionError`.
    """

    timeouts: tuple[type[BaseException], ...]
    body: tuple[type[BaseException], ...]
    body_error: type[ProviderError]
    body_detail: str
    wire: tuple[type[BaseException], ...]
    build: tuple[type[BaseException], ...] = ()


@contextmanager
def map_errors(errors: ErrorMap, provider: str, model: str, timeout: float) -> Iterator[None]:
    """Translate the library's exceptions raised inside the block (see `ErrorMap`)."""
    try:
        yield
    except Exception as exc:
        raise_mapped(errors, exc, provider, model, timeout)


def raise_mapped(
    errors: ErrorMap, exc: Exception, provider: str, model: str, timeout: float
) -> NoReturn:
    """Raise the typed error for the library's `exc` (from it), or `exc` itself when it has none.

    For a request path that runs per call: `try`/`except` around the await and this,
    rather than `map_errors`, whose generator and context manager would live as long
    as the request.
    """
    mapped = mapped_error(errors, exc, provider, model, timeout)
    try:
        if mapped is None:
            raise exc
        raise mapped from exc
    finally:
        del exc, mapped  # the traceback keeps this frame: it must not hold the error too


def mapped_error(
    errors: ErrorMap, exc: Exception, provider: str, model: str, timeout: float
) -> Exception | None:
    """The typed error for the library's `exc` (see `ErrorMap`); None: raise `exc` as it is."""
    if isinstance(exc, LmvisorError):
        return None
    if isinstance(exc, errors.timeouts):
        return ProviderTimeout(
            provider=provider, model=model, detail=f"no answer within {timeout:g}s"
        )
    if isinstance(exc, errors.body):
        return errors.body_error(
            provider=provider, model=model, detail=f"{errors.body_detail}: {exc}"
        )
    if isinstance(exc, errors.build):
        return request_build_error(exc, provider, model)
    if isinstance(exc, errors.wire):
        return ProviderConnectionError(
            provider=provider, model=model, detail=str(exc) or type(exc).__name__
        )
    if isinstance(exc, ValueError):  # after `wire`: a TLS verify failure is a ValueError too
        return request_build_error(exc, provider, model)
    return None


def request_build_error(exc: Exception, provider: str, model: str) -> RequestBuildError:
    """The typed error for the HTTP client refusing to build a request (`exc`).

    The library's own message is left out: it may quote the header value it refused,
    often the API key (read from a file with its newline). `exc` stays chained as the cause.
    """
    return RequestBuildError(
        provider=provider,
        model=model,
        detail=f"{type(exc).__name__}: a header value or the URL cannot be sent as "
        "configured (check the provider's api_key, headers and base_url)",
    )


async def mapped_chunks(
    chunks: AsyncIterator[bytes], errors: ErrorMap, provider: str, model: str, within: float
) -> AsyncGenerator[bytes, None]:
    """`chunks` with the library's exceptions translated."""
    with map_errors(errors, provider, model, within):
        async for chunk in chunks:
            yield chunk


@asynccontextmanager
async def _streamed(
    *,
    status: int,
    headers: Mapping[str, str],
    chunks: AsyncIterator[bytes],
    release: Callable[[], Awaitable[object]],
    errors: ErrorMap,
    provider: str,
    model: str,
    within: float,
) -> AsyncIterator[SSEResponse]:
    """An opened streamed answer as an `SSEResponse`, its failures mapped; leaving the
    block closes the chunk reader, then `release()`s the library's response."""
    mapped = mapped_chunks(chunks, errors, provider, model, within)
    try:
        yield SSEResponse(
            status=status, headers=headers, chunks=mapped, provider=provider, model=model
        )
    finally:
        await mapped.aclose()
        with map_errors(errors, provider, model, within):
            await release()


def body_too_large(
    provider: str,
    model: str,
    status: int,
    limit: int,
    headers: Mapping[str, str] | None = None,
) -> ProviderError:
    """The error for an answer whose body is longer than `limit` bytes, judged by its
    status first: an error status is that status's error whatever its body (a 5xx a
    retryable `ServerError`, a 429 a `RateLimitError` honouring the `Retry-After` of
    `headers`), the body left unread; a success is `ResponseFormatError`, not retried
    (the same vendor answers the same way, as for a stream past its bound)."""
    detail = f"response body: larger than {limit} bytes (max_response_bytes)"
    if status >= 300:
        unread = f"{detail}, left unread".encode()
        return error_from_status(
            provider=provider, model=model, status=status, headers=headers or {}, body=unread
        )
    return ResponseFormatError(provider=provider, model=model, status=status, detail=detail)


async def read_bounded(
    chunks: AsyncIterator[bytes],
    limit: int,
    provider: str,
    model: str,
    status: int,
    headers: Mapping[str, str] | None = None,
) -> bytearray:
    """The body from `chunks`, at most `limit` bytes; one past it raises `body_too_large`
    (for `status` and `headers`) at once (the caller closes the connection). Held in one
    buffer: no copy at the end."""
    body = bytearray()
    async for chunk in chunks:
        if len(body) + len(chunk) > limit:
            raise body_too_large(provider, model, status, limit, headers)
        body += chunk
    return body


def _content_length(headers: Mapping[str, str]) -> int | None:
    """The stated `Content-Length`, or None when absent or not a plain number."""
    raw = headers.get("Content-Length")
    if raw is None or not raw.isdigit() or len(raw) > _MAX_LENGTH_DIGITS:
        return None
    return int(raw)


def _cached_timeout(cache: dict[float, _T], seconds: float, make: Callable[[float], _T]) -> _T:
    """The library's timeout object for `seconds`, made once by `make`; the cache is
    emptied when full, since deadlines make nearly every value different."""
    found = cache.get(seconds)
    if found is None:
        if len(cache) >= _TIMEOUT_CACHE:
            cache.clear()
        found = cache[seconds] = make(seconds)
    return found


def default_transport_kind() -> TransportKind:
    """What "auto" means here: "pyreqwest" when it is installed, else "aiohttp"."""
    return "pyreqwest" if importlib.util.find_spec("pyreqwest") is not None else "aiohttp"


def build_transport(
    kind: TransportKind = "aiohttp", *, max_connections: int = 1024, keepalive_timeout: float = 30.0
) -> Transport:
    """A new transport of `kind` with a pool of `max_connections` (0 = unlimited).

    Raises:
        ValueError: an unknown kind, or pool options out of range.
        ImportError: "pyreqwest" is asked for and not installed (the `fast` extra).
    """
    if kind == "auto":
        kind = default_transport_kind()
    if kind == "aiohttp":
        from lmvisor.providers.aiohttp_transport import AiohttpTransport

        return AiohttpTransport(
            max_connections=max_connections, keepalive_timeout=keepalive_timeout
        )
    if kind == "httpx":
        from lmvisor.providers.httpx_transport import HttpxTransport

        pool = max_connections or 1_000_000  # httpx has no "unlimited"
        return HttpxTransport(
            max_connections=pool,
            max_keepalive_connections=pool,
            keepalive_timeout=keepalive_timeout,
        )
    if kind == "pyreqwest":
        from lmvisor.providers.pyreqwest_transport import PyreqwestTransport

        return PyreqwestTransport(
            max_connections=max_connections, keepalive_timeout=keepalive_timeout
        )
    raise ValueError(f"unknown transport {kind!r}: expected auto, aiohttp, httpx or pyreqwest")


def transport_for(options: ClientOptions) -> Transport:
    """The transport `options` ask for: its library (`transport`) and pool
    (`max_connections`, `keepalive_timeout`). Timeouts and bounds are per request.

    Raises:
        ImportError: "pyreqwest" is asked for and not installed (the `fast` extra).
    """
    return build_transport(
        options.transport,
        max_connections=options.max_connections,
        keepalive_timeout=options.keepalive_timeout,
    )
