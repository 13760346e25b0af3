"""lmvisor.providers: vendor HTTP clients (OpenAI, Anthropic, OpenAI-compatible) over a transport.

Each vendor client turns an `LMRequest` into its vendor's wire format, sends it
through a `Transport` (aiohttp by default, pyreqwest with the `fast` extra,
httpx for a user's own client), and returns an `LMResponse` or streams `LMDelta`s then an
`LMDone`; every failure is a `ProviderError` subclass with `retryable` set as
the vendors' SDKs do. Clients are built from one frozen `ClientOptions`. The
supervised actor that owns a client (protections, counters, events) is
`lmvisor.services.LMProvider`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_exports

if TYPE_CHECKING:
    from lmvisor.providers.aiohttp_transport import AiohttpTransport
    from lmvisor.providers.anthropic import AnthropicClient
    from lmvisor.providers.client import ClientOptions, TransportKind, VendorClient
    from lmvisor.providers.embeddings import OpenAIEmbeddings
    from lmvisor.providers.errors import (
        AuthenticationError,
        BadRequestError,
        ConflictError,
        ContextWindowExceeded,
        ModelNotFound,
        NotFoundError,
        OverloadedError,
        ProviderConnectionError,
        ProviderError,
        ProviderTimeout,
        QuotaExceeded,
        RateLimitError,
        ResponseFormatError,
        ServerError,
        UnsupportedMedia,
    )
    from lmvisor.providers.httpx_transport import HttpxTransport
    from lmvisor.providers.openai import OpenAIClient
    from lmvisor.providers.openai_compatible import OpenAICompatibleClient
    from lmvisor.providers.pricing import ModelPrice, cost_of, price_for
    from lmvisor.providers.pyreqwest_transport import PyreqwestTransport
    from lmvisor.providers.reasoning import supports_reasoning
    from lmvisor.providers.sse import SSEDecoder, SSEEvent
    from lmvisor.providers.transport import (
        SSEResponse,
        Transport,
        TransportResponse,
        TransportStatistics,
        build_transport,
        default_transport_kind,
    )

__all__ = [
    "AiohttpTransport",
    "AnthropicClient",
    "AuthenticationError",
    "BadRequestError",
    "ClientOptions",
    "ConflictError",
    "ContextWindowExceeded",
    "HttpxTransport",
    "ModelNotFound",
    "ModelPrice",
    "NotFoundError",
    "OpenAIClient",
    "OpenAICompatibleClient",
    "OpenAIEmbeddings",
    "OverloadedError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "PyreqwestTransport",
    "QuotaExceeded",
    "RateLimitError",
    "ResponseFormatError",
    "SSEDecoder",
    "SSEEvent",
    "SSEResponse",
    "ServerError",
    "Transport",
    "TransportKind",
    "TransportResponse",
    "TransportStatistics",
    "UnsupportedMedia",
    "VendorClient",
    "build_transport",
    "cost_of",
    "default_transport_kind",
    "price_for",
    "supports_reasoning",
]

_ERRORS = "lmvisor.providers.errors"
_TRANSPORT = "lmvisor.providers.transport"
_EXPORTS = {
    "AiohttpTransport": "lmvisor.providers.aiohttp_transport",
    "AnthropicClient": "lmvisor.providers.anthropic",
    "AuthenticationError": _ERRORS,
    "BadRequestError": _ERRORS,
    "ClientOptions": "lmvisor.providers.client",
    "ConflictError": _ERRORS,
    "ContextWindowExceeded": _ERRORS,
    "HttpxTransport": "lmvisor.providers.httpx_transport",
    "ModelNotFound": _ERRORS,
    "ModelPrice": "lmvisor.providers.pricing",
    "NotFoundError": _ERRORS,
    "OpenAIClient": "lmvisor.providers.openai",
    "OpenAICompatibleClient": "lmvisor.providers.openai_compatible",
    "OpenAIEmbeddings": "lmvisor.providers.embeddings",
    "OverloadedError": _ERRORS,
    "ProviderConnectionError": _ERRORS,
    "ProviderError": _ERRORS,
    "ProviderTimeout": _ERRORS,
    "PyreqwestTransport": "lmvisor.providers.pyreqwest_transport",
    "QuotaExceeded": _ERRORS,
    "RateLimitError": _ERRORS,
    "ResponseFormatError": _ERRORS,
    "SSEDecoder": "lmvisor.providers.sse",
    "SSEEvent": "lmvisor.providers.sse",
    "SSEResponse": _TRANSPORT,
    "ServerError": _ERRORS,
    "Transport": _TRANSPORT,
    "TransportKind": "lmvisor.providers.client",
    "TransportResponse": _TRANSPORT,
    "TransportStatistics": _TRANSPORT,
    "UnsupportedMedia": _ERRORS,
    "VendorClient": "lmvisor.providers.client",
    "build_transport": _TRANSPORT,
    "cost_of": "lmvisor.providers.pricing",
    "default_transport_kind": _TRANSPORT,
    "price_for": "lmvisor.providers.pricing",
    "supports_reasoning": "lmvisor.providers.reasoning",
}

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
