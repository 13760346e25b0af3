"""What a vendor client is: the `VendorClient` protocol and the `ClientOptions` every client takes.

A vendor client speaks one vendor's HTTP API (`OpenAIClient`, `AnthropicClient`,
`OpenAICompatibleClient`); the supervised actor that owns one, protects it and
counts its calls is `lmvisor.services.LMProvider`. Options are one frozen,
validated object, so every client is built the same way:

    OpenAIClient(ClientOptions(api_key=key, default_model="gpt-4o-mini"))
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Protocol, final

from lmvisor.programs.lm import LMCapabilities, LMRequest, LMResponse, LMStreamItem
from lmvisor.providers.pricing import ModelPrice

__all__ = ["MAX_RESPONSE_BYTES", "ClientOptions", "TransportKind", "VendorClient"]

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""The longest whole-answer body taken by default: a completion's JSON is kilobytes,
and one holding the largest context window's worth of output still fits many times."""

TransportKind = Literal["auto", "aiohttp", "httpx", "pyreqwest"]
"""Which HTTP library a client builds its transport on ("auto": pyreqwest when installed)."""

_EMPTY: Mapping[str, str] = MappingProxyType({})


class VendorClient(Protocol):
    """What the provider actor needs of a vendor client.

    `timeout` bounds one attempt (a whole answer; for a stream, the connection
    and each wait for the next bytes); None uses the client's own. Cancelling
    the awaiting task abandons the HTTP request and frees its connection.
    """

    @property
    def capabilities(self) -> LMCapabilities:
        """What the vendor's models support."""
        ...

    async def complete(
        self,
        request: LMRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - one attempt's bound, the transport's
    ) -> LMResponse:
        """Send `request`; return the whole answer or raise a `ProviderError`."""
        ...

    def stream(
        self, request: LMRequest, *, timeout: float | None = None
    ) -> AsyncGenerator[LMStreamItem, None]:
        """Send `request` streaming: `LMDelta`s as text arrives, then one `LMDone`."""
        ...

    async def aclose(self) -> None:
        """Close the connections the client owns. Idempotent."""
        ...


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOptions:
    """How a vendor client reaches its API (validated on construction).

    Attributes:
        base_url: the API root; None uses the vendor's (OpenAI's ends in "/v1",
            Anthropic's does not, an OpenAI-compatible server's is Ollama's).
        api_key: sent as the vendor's credential; never logged, shown in errors or repr.
        name: the client's name in errors and logs, also accepted as a model
            prefix ("name/model"); None uses the vendor's ("openai", ...).
        default_model: used when a request names no model.
        timeout: seconds for one attempt's whole answer; for a stream, for the
            connection and each wait for the next bytes (finite, > 0).
        headers: extra headers sent with every request.
        transport: the HTTP library of the transport the client builds (ignored
            when a transport instance is given to the client): aiohttp by default;
            "auto" is pyreqwest when the `fast` extra is installed, else aiohttp.
        max_connections: the built transport's pool size (0 = unlimited).
        keepalive_timeout: seconds an idle pooled connection is kept.
        prices: per-model prices consulted before the built-in table.
        capabilities: overrides the vendor's defaults.
        stream_usage: ask for the final usage chunk in OpenAI-format streams;
            None uses the vendor's default (on for OpenAI, off for compatible servers).
        max_stream_bytes: the most event data one stream may carry (64 MiB: many times
            any model's answer); a vendor sending more fails the stream with
            `ResponseFormatError` rather than fill memory until the call's deadline.
        max_response_bytes: the longest body a whole answer (or a stream's error answer)
            may have (64 MiB); a longer one is refused, by its `Content-Length` before it
            is read: a success with `ResponseFormatError`, an error status with its own
            error (a 5xx is a retryable `ServerError` whatever its body). Its own option,
            not `max_stream_bytes`: that one counts a stream's event data over the
            stream's life, this one the bytes of one body held at once, and raising one
            must not lift the other.

    Raises:
        ValueError: an option is out of range (the message names it).
    """

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    name: str | None = None
    default_model: str | None = None
    timeout: float = 60.0
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    transport: TransportKind = "aiohttp"
    max_connections: int = 1024
    keepalive_timeout: float = 30.0
    prices: Mapping[str, ModelPrice] | None = None
    capabilities: LMCapabilities | None = None
    stream_usage: bool | None = None
    max_stream_bytes: int = 64 * 1024 * 1024
    max_response_bytes: int = MAX_RESPONSE_BYTES

    def __post_init__(self) -> None:
        if self.name is not None and not self.name:
            raise ValueError("ClientOptions.name must be a non-empty string or None")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"ClientOptions.base_url must start with http:// or https://, got {self.base_url!r}"
            )
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"ClientOptions.timeout must be finite and > 0, got {self.timeout!r}")
        if type(self.max_stream_bytes) is not int or self.max_stream_bytes < 1:
            raise ValueError(
                f"ClientOptions.max_stream_bytes must be an int >= 1, got {self.max_stream_bytes!r}"
            )
        if type(self.max_response_bytes) is not int or self.max_response_bytes < 1:
            raise ValueError(
                "ClientOptions.max_response_bytes must be an int >= 1, "
                f"got {self.max_response_bytes!r}"
            )
        if self.max_connections < 0:
            raise ValueError(
                f"ClientOptions.max_connections must be >= 0, got {self.max_connections!r}"
            )
        if not (math.isfinite(self.keepalive_timeout) and self.keepalive_timeout > 0):
            raise ValueError(
                "ClientOptions.keepalive_timeout must be finite and > 0, "
                f"got {self.keepalive_timeout!r}"
            )
        if self.transport not in ("auto", "aiohttp", "httpx", "pyreqwest"):
            raise ValueError(
                "ClientOptions.transport must be 'auto', 'aiohttp', 'httpx' or 'pyreqwest', "
                f"got {self.transport!r}"
            )
