"""What every HTTP vendor client shares: options, the request path, streaming, JSON decoding.

A concrete client supplies the vendor's pieces (endpoint and headers through
`_set_endpoint`, payload, response parser, stream accumulator); this module
sends them through the transport, maps non-2xx answers with
`error_from_status` (secret redacted) and decodes JSON, hostile bodies
included, into typed errors. Calls are counted, logged and evented by the
provider actor that owns the client, never here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Coroutine, Mapping
from contextlib import AsyncExitStack, aclosing
from typing import Any, ClassVar

from lmvisor.programs._json_repair import repair_json
from lmvisor.programs.lm import (
    LMCapabilities,
    LMDelta,
    LMDone,
    LMRequest,
    LMResponse,
    LMStreamItem,
)
from lmvisor.providers import _json
from lmvisor.providers.client import ClientOptions
from lmvisor.providers.errors import (
    ProviderConnectionError,
    ProviderError,
    ResponseFormatError,
    error_from_status,
)
from lmvisor.providers.pricing import ModelPrice, price_for
from lmvisor.providers.sse import SSEEvent, SSEEventTooLarge
from lmvisor.providers.transport import (
    SSEResponse,
    Transport,
    TransportStatistics,
    request_build_error,
    transport_for,
)

__all__ = [
    "MAX_COUNT",
    "MAX_INDEX",
    "HttpVendorClient",
    "StreamState",
    "decode_arguments",
    "decode_json",
    "shape_error",
    "wire_int",
]

_MODEL_CACHE_SIZE = 256
MAX_COUNT = 2**53  # token counts past this are no counts (and would overflow a float price)
MAX_INDEX = 1024  # choice and tool-call indices a vendor may use
_SHOWN = 200  # characters of a bad body quoted in an error
_UNPRICED: Any = object()  # "not looked up yet" in the price cache (None is "no price")


class StreamState(ABC):
    """Accumulates one vendor stream; `feed` returns the deltas an event carried.

    `finished` turns True at the vendor's end marker; `response()` then builds
    the whole answer, or raises `ProviderConnectionError` if the stream ended early.
    """

    finished: bool = False

    @abstractmethod
    def feed(self, event: SSEEvent) -> list[LMDelta]:
        """Take one event; raise the typed error for an error event."""

    @abstractmethod
    def response(self) -> LMResponse:
        """The whole answer after the last event."""


def decode_json(body: bytes | memoryview | str, *, provider: str, model: str, what: str) -> Any:
    """Decode a vendor's JSON, or raise `ResponseFormatError` naming `what` was bad.

    Hostile bodies (nested past any sane depth, numbers too long to convert)
    are bad JSON too: never a `RecursionError`.
    """
    try:
        return _json.loads(body)
    except ValueError as exc:
        raw = (
            body[:_SHOWN]
            if isinstance(body, str)
            else bytes(body[:_SHOWN]).decode("utf-8", "replace")
        )
        raise ResponseFormatError(
            provider=provider, model=model, detail=f"{what} is not valid JSON: {raw!r}"
        ) from exc


def decode_arguments(raw: Any, *, provider: str, model: str, what: str) -> Mapping[str, Any]:
    """A tool call's arguments as a mapping; slightly broken JSON from a model is repaired."""
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, str):
        if not raw.strip():
            return {}
        try:
            value: Any = _json.loads(raw)
        except ValueError:
            value = _repair(raw)
        if isinstance(value, Mapping):
            return value
    raise ResponseFormatError(
        provider=provider,
        model=model,
        detail=f"{what} must be a JSON object, got {str(raw)[:200]!r}",
    )


def _repair(raw: str) -> Any:
    """json_repair's best reading of slightly broken JSON; None when it gives up."""
    try:
        return repair_json(raw)
    except ValueError:
        return None


def wire_int(value: Any, limit: int = MAX_COUNT) -> int:
    """A count or index from a vendor body: a non-negative int up to `limit`, else 0.

    Lenient on purpose: a missing or absurd number (negative, a bool, 10**400)
    must not lose an otherwise good answer, nor overflow a cost or allocate
    a list of that length.
    """
    if type(value) is int and 0 <= value <= limit:  # not a bool, nor an int subclass
        return value
    return 0


def shape_error(provider: str, model: str, field: str, problem: str) -> ResponseFormatError:
    """A `ResponseFormatError` naming the body field and what is wrong with it."""
    return ResponseFormatError(provider=provider, model=model, detail=f"{field}: {problem}")


class HttpVendorClient(ABC):
    """The shared vendor-client machinery; `OpenAIClient` and friends subclass it.

    Subclasses set `_vendor`, `_default_base_url` and their endpoint (through
    `_set_endpoint`) and supply the payload, the parser and the stream accumulator.
    """

    _vendor: ClassVar[str] = ""
    _default_base_url: ClassVar[str] = ""
    _default_stream_usage: ClassVar[bool] = False
    _capabilities_default: ClassVar[LMCapabilities] = LMCapabilities()
    _endpoint: str
    _plain_headers: Mapping[str, str]
    _sse_headers: Mapping[str, str]

    def __init__(self, options: ClientOptions, *, transport: Transport | None = None) -> None:
        if not isinstance(options, ClientOptions):
            raise TypeError(f"options must be ClientOptions, got {type(options).__name__}")
        self._options = options
        self._name = options.name or self._vendor
        self._api_key = options.api_key or None
        self._base_url = (options.base_url or self._default_base_url).rstrip("/")
        self._default_model = options.default_model
        self._timeout = float(options.timeout)
        self._max_stream_bytes = options.max_stream_bytes
        self._max_response_bytes = options.max_response_bytes
        self._owns_transport = transport is None
        self._transport: Transport = transport or transport_for(options)
        self._prices = dict(options.prices) if options.prices else None
        self._capabilities = options.capabilities or self._capabilities_default
        self._stream_usage = (
            self._default_stream_usage if options.stream_usage is None else options.stream_usage
        )
        self._prefixes = frozenset({self._name, self._vendor})
        self._wire_models: dict[str, str] = {}
        self._price_of: dict[tuple[str, str], ModelPrice | None] = {}
        self._closed = False

    # --- public surface -------------------------------------------------------

    @property
    def name(self) -> str:
        """The client's name, also accepted as the "name/" prefix of request models."""
        return self._name

    @property
    def options(self) -> ClientOptions:
        """The options the client was built with."""
        return self._options

    @property
    def default_model(self) -> str | None:
        """The model used when a request names none."""
        return self._default_model

    @property
    def capabilities(self) -> LMCapabilities:
        """What this vendor's models support."""
        return self._capabilities

    @property
    def closed(self) -> bool:
        """True once `aclose()` was called."""
        return self._closed

    def statistics(self) -> TransportStatistics:
        """A snapshot of the transport's pool (calls are counted by the provider actor)."""
        return self._transport.statistics()

    async def aclose(self) -> None:
        """Close the transport if this client built it (a given one is left open).

        Later calls raise RuntimeError. Idempotent.
        """
        self._closed = True
        if self._owns_transport:
            await self._transport.aclose()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self._name!r}, base_url={self._base_url!r}, "
            f"default_model={self._default_model!r})"
        )

    def complete(
        self,
        request: LMRequest,
        *,
        timeout: float | None = None,
    ) -> Coroutine[Any, Any, LMResponse]:
        """Send `request` and return the vendor's whole answer (await the result).

        The request's model may be bare or prefixed with the client's name or
        vendor ("openai/gpt-4o-mini"); the prefix is stripped for the wire.
        `timeout` bounds the whole answer (None: the options' timeout).
        Cancelling the awaiting task abandons the HTTP request. The request is
        checked when this is called (a misuse raises at once), sent when awaited.

        Raises:
            ProviderError: the matching subclass for each failure (see `errors`).
            ValueError: the request has no model and the client no default, or
                its params cannot be mapped to the vendor's format.
            RuntimeError: the client is closed.
        """
        model = self._wire_model(request)
        # The coroutine that sends it, awaited by the caller: no frame of this method's own.
        return self._complete(request, model, self._timeout if timeout is None else timeout)

    async def stream(
        self,
        request: LMRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - one attempt's bound, the transport's
    ) -> AsyncGenerator[LMStreamItem, None]:
        """Send `request` streaming: yield `LMDelta`s as text arrives, then one `LMDone`.

        `LMDone.response` holds the whole text, finish reason, tool calls and
        the usage the vendor reported. `timeout` bounds the connection and each
        wait for the next bytes. Leaving the iteration early closes the
        connection. A stream that ends before the vendor's end marker raises
        `ProviderConnectionError`; an error event mid-stream raises its typed error;
        an event past `sse.MAX_EVENT_BYTES` (or a line that never ends), or more
        event data than the options' `max_stream_bytes`, raises `ResponseFormatError`
        before it can fill memory; an error answer whose body is longer than
        `max_response_bytes` raises its status's error, the body left unread.

        Raises:
            ProviderError, ValueError, RuntimeError: as `complete()` (a `ValueError` from
                the transport, opening or reading, is a `RequestBuildError`).
        """
        model = self._wire_model(request)
        body = self._encode(self._payload(request, model, stream=True))
        async with AsyncExitStack() as stack:
            # Only the transport's own steps are in these `try`s: a ValueError there is the
            # HTTP client's (as for `_send`), never the caller's input nor the vendor parsing's.
            try:
                resp = await stack.enter_async_context(
                    self._transport.stream_sse(
                        self._endpoint,
                        headers=self._sse_headers,
                        body=body,
                        timeout=self._timeout if timeout is None else timeout,
                        provider=self._name,
                        model=model,
                    )
                )
                error_body = await self._error_body(resp, model) if resp.status >= 300 else None
            except ValueError as exc:
                raise request_build_error(exc, self._name, model) from exc
            if error_body is not None:
                raise self._status_error(model, resp.status, resp.headers, error_body)
            state = self._stream_state(request, model)
            events = await stack.enter_async_context(aclosing(resp.events()))
            left = self._max_stream_bytes
            while not state.finished:
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    break
                except SSEEventTooLarge as exc:  # the vendor's answer, not the HTTP client's
                    raise ResponseFormatError(
                        provider=self._name, model=model, detail=f"stream: {exc}"
                    ) from None
                except ValueError as exc:
                    raise request_build_error(exc, self._name, model) from exc
                left -= len(event.data)
                if left < 0:
                    raise self._too_long(model)
                for delta in state.feed(event):
                    yield delta
            yield LMDone(response=state.response())

    async def _error_body(self, resp: SSEResponse, model: str) -> bytes:
        """A streamed error answer's body, at most `max_response_bytes`."""
        if not resp.provider:  # a user's transport built it bare: attribute its error here
            resp.provider, resp.model = self._name, model
        return await resp.read(self._max_response_bytes)

    def _too_long(self, model: str) -> ResponseFormatError:
        limit = self._max_stream_bytes
        detail = f"stream: the answer carries more than {limit} bytes (max_stream_bytes)"
        return ResponseFormatError(provider=self._name, model=model, detail=detail)

    # --- vendor hooks -----------------------------------------------------------

    def _set_endpoint(
        self, path: str, vendor: dict[str, str], extra: Mapping[str, str] | None, *, accept: str
    ) -> None:
        """Set where requests go (`base_url` + `path`) and their headers, once.

        The headers are `vendor`'s, overridden by the user's `extra`, then the
        `accept` header (named as the vendor spells it) for a whole or a streamed answer.
        """
        self._endpoint = f"{self._base_url}{path}"
        common = {**vendor, **(extra or {})}
        self._plain_headers = {**common, accept: "application/json"}
        self._sse_headers = {**common, accept: "text/event-stream"}

    @abstractmethod
    def _payload(self, request: LMRequest, model: str, *, stream: bool) -> dict[str, Any]:
        """The vendor's JSON body for `request`."""

    @abstractmethod
    def _parse(self, data: dict[str, Any], model: str) -> LMResponse:
        """The response from the vendor's decoded JSON body."""

    @abstractmethod
    def _stream_state(self, request: LMRequest, model: str) -> StreamState:
        """A fresh accumulator for one stream."""

    # --- shared path ------------------------------------------------------------

    def _complete(
        self, request: LMRequest, model: str, timeout: float
    ) -> Coroutine[Any, Any, LMResponse]:
        """The coroutine answering `request` (a client that fans `n` out overrides this)."""
        # Encoded here, not in `_send`: the payload dict is garbage before the wait.
        return self._send(self._encode(self._payload(request, model, stream=False)), model, timeout)

    async def _send(
        self,
        body: bytes,
        model: str,
        timeout: float,  # noqa: ASYNC109 - passed down to the transport
    ) -> LMResponse:
        try:
            resp = await self._transport.post_json(
                self._endpoint,
                headers=self._plain_headers,
                body=body,
                timeout=timeout,
                max_response_bytes=self._max_response_bytes,
                provider=self._name,
                model=model,
            )
        except ValueError as exc:  # the request is built: this is the HTTP client's own
            raise request_build_error(exc, self._name, model) from exc
        if resp.status >= 300:
            raise self._status_error(model, resp.status, resp.headers, resp.body)
        try:
            data = _json.loads(resp.body)
        except ValueError:
            data = decode_json(resp.body, provider=self._name, model=model, what="response body")
        if type(data) is not dict:
            raise shape_error(self._name, model, "response body", "expected a JSON object")
        return self._parse(data, model)

    def _status_error(
        self, model: str, status: int, headers: Mapping[str, str], body: bytes | memoryview
    ) -> ProviderError:
        return error_from_status(
            provider=self._name,
            model=model,
            status=status,
            headers=headers,
            body=body,
            secret=self._api_key,
        )

    def _wire_model(self, request: LMRequest) -> str:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} {self._name!r} is closed")
        requested = request.model
        wire = self._wire_models.get(requested)
        if wire is not None:
            return wire
        if not requested:
            if not self._default_model:
                raise ValueError("LMRequest.model is empty and the client has no default_model")
            wire = self._default_model
        else:
            prefix, sep, rest = requested.partition("/")
            wire = rest if sep and prefix in self._prefixes and rest else requested
        if len(self._wire_models) >= _MODEL_CACHE_SIZE:
            self._wire_models.clear()
        self._wire_models[requested] = wire
        return wire

    def _encode(self, payload: dict[str, Any]) -> bytes:
        try:
            return _json.dumps(payload)
        except ValueError as exc:
            raise ValueError(f"the LM request cannot be written as JSON: {exc}") from exc

    def _cost(self, model: str, reported: str, usage: Any) -> float | None:
        key = (model, reported)
        price = self._price_of.get(key, _UNPRICED)
        if price is _UNPRICED:  # looked up once per model pair, not per answer
            if len(self._price_of) >= _MODEL_CACHE_SIZE:
                self._price_of.clear()
            price = self._price_of[key] = price_for(model, self._prices) or (
                price_for(reported, self._prices) if reported else None
            )
        return None if price is None else price.cost(usage)

    def _incomplete(self, model: str, marker: str) -> ProviderConnectionError:
        return ProviderConnectionError(
            provider=self._name, model=model, detail=f"stream ended before {marker}"
        )
