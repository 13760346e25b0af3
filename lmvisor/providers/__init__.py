"""lmvisor.providers: vendor clients (OpenAI, Anthropic, OpenAI-compatible) over a transport seam.

Each provider turns an `LMRequest` into its vendor's wire format, sends it
through a `Transport` (aiohttp by default, httpx for a user's own client),
and returns an `LMResponse` or streams `LMDelta`s then an `LMDone`; every
failure is a `ProviderError` subclass with `retryable` set as the vendors'
SDKs do.
"""

from lmvisor.providers._base import ProviderStatistics
from lmvisor.providers.anthropic import AnthropicProvider
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
from lmvisor.providers.openai import OpenAIProvider
from lmvisor.providers.openai_compatible import OpenAICompatibleProvider
from lmvisor.providers.pricing import ModelPrice, cost_of, price_for
from lmvisor.providers.reasoning import supports_reasoning
from lmvisor.providers.sse import SSEDecoder, SSEEvent
from lmvisor.providers.transport import (
    AiohttpTransport,
    HttpxTransport,
    SSEResponse,
    Transport,
    TransportResponse,
    TransportStatistics,
)

__all__ = [
    "AiohttpTransport",
    "AnthropicProvider",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ContextWindowExceeded",
    "HttpxTransport",
    "ModelNotFound",
    "ModelPrice",
    "NotFoundError",
    "OpenAICompatibleProvider",
    "OpenAIEmbeddings",
    "OpenAIProvider",
    "OverloadedError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderStatistics",
    "ProviderTimeout",
    "QuotaExceeded",
    "RateLimitError",
    "ResponseFormatError",
    "SSEDecoder",
    "SSEEvent",
    "SSEResponse",
    "ServerError",
    "Transport",
    "TransportResponse",
    "TransportStatistics",
    "UnsupportedMedia",
    "cost_of",
    "price_for",
    "supports_reasoning",
]
