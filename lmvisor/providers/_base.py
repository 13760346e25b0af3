"""What every provider shares: options, the request path, streaming, statistics.

A concrete provider supplies the vendor's pieces (endpoint and headers through
`_set_endpoint`, payload, response parser, stream accumulator); this module
sends them through the transport, maps non-2xx answers with
`error_from_status` (secret redacted), decodes JSON into typed errors, and
keeps the counters.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, ClassVar

import json_repair

from lmvisor.programs.lm import (
    LMCapabilities,
    LMDelta,
    LMDone,
    LMRequest,
    LMResponse,
    LMStreamItem,
)
from lmvisor.providers.errors import (
    ProviderConnectionError,
    ProviderError,
    ResponseFormatError,
    error_from_status,
)
from lmvisor.providers.pricing import ModelPrice, price_for
from lmvisor.providers.sse import SSEEvent
from lmvisor.providers.transport import AiohttpTransport, Transport, TransportStatistics
from lmvisor.runtime.observe.logs import get_logger

__all__ = [
    "ProviderBase",
    "ProviderStatistics",
    "StreamState",
    "decode_arguments",
    "decode_json",
    "shape_error",
]

_log = get_logger("lmvisor.providers")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_MODEL_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderStatistics:
    """A snapshot of one provider.

    Attributes:
        name: the provider's name ("openai", "local", ...).
        requests: `complete()` and `stream()` calls started.
        errors: of those, calls that ended in a `ProviderError`.
        in_flight: calls started and not yet finished (a stream until its end).
        transport: the transport's pool and traffic.
    """

    name: str
    requests: int
    errors: int
    in_flight: int
    transport: TransportStatistics


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


def decode_json(body: bytes | str, *, provider: str, model: str, what: str) -> Any:
    """Decode a vendor's JSON, or raise `ResponseFormatError` naming `what` was bad."""
    try:
        return json.loads(body)
    except ValueError as exc:
        raw = body if isinstance(body, str) else body[:200].decode("utf-8", "replace")
        raise ResponseFormatError(
            provider=provider, model=model, detail=f"{what} is not valid JSON: {raw[:200]!r}"
        ) from exc


def decode_arguments(raw: Any, *, provider: str, model: str, what: str) -> Mapping[str, Any]:
    """A tool call's arguments as a mapping; slightly broken JSON from a model is repaired."""
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, str):
        if not raw.strip():
            return {}
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = json_repair.loads(raw)
        if isinstance(value, Mapping):
            return value
    raise ResponseFormatError(
        provider=provider,
        model=model,
        detail=f"{what} must be a JSON object, got {str(raw)[:200]!r}",
    )


def shape_error(provider: str, model: str, field: str, problem: str) -> ResponseFormatError:
    """A `ResponseFormatError` naming the body field and what is wrong with it."""
    return ResponseFormatError(provider=provider, model=model, detail=f"{field}: {problem}")


class ProviderBase(ABC):
    """The shared provider machinery; `OpenAIProvider` and friends subclass it."""

    _vendor: ClassVar[str] = ""
    _capabilities_default: ClassVar[LMCapabilities] = LMCapabilities()
    _endpoint: str
    _plain_headers: Mapping[str, str]
    _sse_headers: Mapping[str, str]

    def __init__(
        self,
        *,
        name: str,
        api_key: str | None,
        base_url: str,
        default_model: str | None,
        timeout: float,
        transport: Transport | None,
        max_connections: int | None,
        keepalive_timeout: float | None,
        prices: Mapping[str, ModelPrice] | None,
        capabilities: LMCapabilities | None,
        logger: Any = None,
    ) -> None:
        if not name:
            raise ValueError("name must be a non-empty string")
        if not base_url:
            raise ValueError("base_url must be a non-empty string")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        if transport is not None and (max_connections is not None or keepalive_timeout):
            raise ValueError(
                "max_connections and keepalive_timeout configure the default transport; "
                "set them on the transport given instead"
            )
        self._name = name
        self._api_key = api_key or None
        self._base_url = base_url.rstrip("/")
        self._default_model = default_model
        self._timeout = float(timeout)
        self._owns_transport = transport is None
        self._transport: Transport = transport or AiohttpTransport(
            max_connections=100 if max_connections is None else max_connections,
            keepalive_timeout=keepalive_timeout or 30.0,
        )
        self._prices = dict(prices) if prices else None
        self._capabilities = capabilities or self._capabilities_default
        self._log = logger if logger is not None else _log
        self._prefixes = frozenset({name, self._vendor})
        self._wire_models: dict[str, str] = {}
        self._closed = False
        self._requests = 0
        self._errors = 0
        self._in_flight = 0

    # --- public surface -------------------------------------------------------

    @property
    def name(self) -> str:
        """The provider's name, also accepted as the "name/" prefix of request models."""
        return self._name

    @property
    def default_model(self) -> str | None:
        """The model used when a request names none."""
        return self._default_model

    @property
    def capabilities(self) -> LMCapabilities:
        """What this provider's models support."""
        return self._capabilities

    def statistics(self) -> ProviderStatistics:
        """A snapshot of the counters and the transport's pool."""
        return ProviderStatistics(
            name=self._name,
            requests=self._requests,
            errors=self._errors,
            in_flight=self._in_flight,
            transport=self._transport.statistics(),
        )

    async def aclose(self) -> None:
        """Close the transport if this provider created it (a given one is left open).

        Later calls raise RuntimeError. Idempotent.
        """
        self._closed = True
        if self._owns_transport:
            await self._transport.aclose()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self._name!r}, base_url={self._base_url!r}, "
            f"default_model={self._default_model!r}, in_flight={self._in_flight})"
        )

    async def complete(self, request: LMRequest) -> LMResponse:
        """Send `request` and return the vendor's whole answer.

        The request's model may be bare or prefixed with the provider's name or
        vendor ("openai/gpt-4o-mini"); the prefix is stripped for the wire.
        Cancelling the awaiting task abandons the HTTP request.

        Raises:
            ProviderError: the matching subclass for each failure (see `errors`).
            ValueError: the request has no model and the provider no default, or
                its params cannot be mapped to the vendor's format.
            RuntimeError: the provider is closed.
        """
        model = self._wire_model(request)
        self._requests += 1
        self._in_flight += 1
        try:
            return await self._complete(request, model)
        except ProviderError as exc:
            self._failed(exc)
            raise
        finally:
            self._in_flight -= 1

    async def stream(self, request: LMRequest) -> AsyncGenerator[LMStreamItem, None]:
        """Send `request` streaming: yield `LMDelta`s as text arrives, then one `LMDone`.

        `LMDone.response` holds the whole text, finish reason, tool calls and
        the usage the vendor reported. Leaving the iteration early closes the
        connection. A stream that ends before the vendor's end marker raises
        `ProviderConnectionError`; an error event mid-stream raises its typed error.

        Raises:
            ProviderError, ValueError, RuntimeError: as `complete()`.
        """
        model = self._wire_model(request)
        body = self._encode(self._payload(request, model, stream=True))
        self._requests += 1
        self._in_flight += 1
        try:
            async with self._transport.stream_sse(
                self._url(),
                headers=self._headers(stream=True),
                body=body,
                timeout=self._timeout,
                provider=self._name,
                model=model,
            ) as resp:
                if resp.status >= 300:
                    raise self._status_error(model, resp.status, resp.headers, await resp.read())
                state = self._stream_state(request, model)
                async with aclosing(resp.events()) as events:
                    async for event in events:
                        for delta in state.feed(event):
                            yield delta
                        if state.finished:
                            break
                yield LMDone(response=state.response())
        except ProviderError as exc:
            self._failed(exc)
            raise
        finally:
            self._in_flight -= 1

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

    def _url(self) -> str:
        """The endpoint every request is POSTed to."""
        return self._endpoint

    def _headers(self, *, stream: bool) -> Mapping[str, str]:
        """The request headers, built once at construction."""
        return self._sse_headers if stream else self._plain_headers

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

    async def _complete(self, request: LMRequest, model: str) -> LMResponse:
        return await self._send(self._payload(request, model, stream=False), model)

    async def _send(self, payload: dict[str, Any], model: str) -> LMResponse:
        resp = await self._transport.post_json(
            self._url(),
            headers=self._headers(stream=False),
            body=self._encode(payload),
            timeout=self._timeout,
            provider=self._name,
            model=model,
        )
        if resp.status >= 300:
            raise self._status_error(model, resp.status, resp.headers, resp.body)
        data = decode_json(resp.body, provider=self._name, model=model, what="response body")
        if not isinstance(data, dict):
            raise shape_error(self._name, model, "response body", "expected a JSON object")
        return self._parse(data, model)

    def _status_error(
        self, model: str, status: int, headers: Mapping[str, str], body: bytes
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
                raise ValueError("LMRequest.model is empty and the provider has no default_model")
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
            return _ENCODER.encode(payload).encode()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"LMRequest params are not JSON-serializable: {exc}") from exc

    def _cost(self, model: str, reported: str, usage: Any) -> float | None:
        price = price_for(model, self._prices) or (
            price_for(reported, self._prices) if reported else None
        )
        return None if price is None else price.cost(usage)

    def _failed(self, exc: ProviderError) -> None:
        self._errors += 1
        self._log.warning(
            "provider.request_failed",
            provider=self._name,
            model=exc.model,
            error=exc.code,
            status=exc.status,
            retryable=exc.retryable,
            message=exc.message,
        )

    def _incomplete(self, model: str, marker: str) -> ProviderConnectionError:
        return ProviderConnectionError(
            provider=self._name, model=model, detail=f"stream ended before {marker}"
        )
