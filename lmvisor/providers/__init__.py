"""lmvisor.providers: vendor clients (OpenAI, Anthropic, OpenAI-compatible) over a transport seam.

Each provider turns an `LMRequest` into its vendor's wire format, sends it
through a `Transport` (aiohttp by default, httpx for a user's own client),
and returns an `LMResponse` or streams `LMDelta`s then an `LMDone`; every
failure is a `ProviderError` subclass with `retryable` set as the vendors'
SDKs do.
"""

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_package

if TYPE_CHECKING:
    from lmvisor.providers._base import ProviderStatistics as ProviderStatistics
    from lmvisor.providers.anthropic import AnthropicProvider as AnthropicProvider
    from lmvisor.providers.embeddings import OpenAIEmbeddings as OpenAIEmbeddings
    from lmvisor.providers.errors import AuthenticationError as AuthenticationError
    from lmvisor.providers.errors import BadRequestError as BadRequestError
    from lmvisor.providers.errors import ConflictError as ConflictError
    from lmvisor.providers.errors import ContextWindowExceeded as ContextWindowExceeded
    from lmvisor.providers.errors import ModelNotFound as ModelNotFound
    from lmvisor.providers.errors import NotFoundError as NotFoundError
    from lmvisor.providers.errors import OverloadedError as OverloadedError
    from lmvisor.providers.errors import ProviderConnectionError as ProviderConnectionError
    from lmvisor.providers.errors import ProviderError as ProviderError
    from lmvisor.providers.errors import ProviderTimeout as ProviderTimeout
    from lmvisor.providers.errors import QuotaExceeded as QuotaExceeded
    from lmvisor.providers.errors import RateLimitError as RateLimitError
    from lmvisor.providers.errors import ResponseFormatError as ResponseFormatError
    from lmvisor.providers.errors import ServerError as ServerError
    from lmvisor.providers.errors import UnsupportedMedia as UnsupportedMedia
    from lmvisor.providers.openai import OpenAIProvider as OpenAIProvider
    from lmvisor.providers.openai_compatible import (
        OpenAICompatibleProvider as OpenAICompatibleProvider,
    )
    from lmvisor.providers.pricing import ModelPrice as ModelPrice
    from lmvisor.providers.pricing import cost_of as cost_of
    from lmvisor.providers.pricing import price_for as price_for
    from lmvisor.providers.reasoning import supports_reasoning as supports_reasoning
    from lmvisor.providers.sse import SSEDecoder as SSEDecoder
    from lmvisor.providers.sse import SSEEvent as SSEEvent
    from lmvisor.providers.transport import AiohttpTransport as AiohttpTransport
    from lmvisor.providers.transport import HttpxTransport as HttpxTransport
    from lmvisor.providers.transport import SSEResponse as SSEResponse
    from lmvisor.providers.transport import Transport as Transport
    from lmvisor.providers.transport import TransportResponse as TransportResponse
    from lmvisor.providers.transport import TransportStatistics as TransportStatistics
else:
    __all__, __getattr__, __dir__ = lazy_package(__name__, __file__)
