"""lmvisor.providers: vendor HTTP clients (OpenAI, Anthropic, OpenAI-compatible) over a transport.

Each vendor client turns an `LMRequest` into its vendor's wire format, sends it
through a `Transport` (aiohttp by default, pyreqwest with the `fast` extra,
httpx for a user's own client), and returns an `LMResponse` or streams `LMDelta`s then an
`LMDone`; every failure is a `ProviderError` subclass with `retryable` set as
the vendors' SDKs do. Clients are built from one frozen `ClientOptions`. The
supervised actor that owns a client (protections, counters, events) is
`lmvisor.services.LMProvider`.
"""

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_package

if TYPE_CHECKING:
    from lmvisor.providers.aiohttp_transport import AiohttpTransport as AiohttpTransport
    from lmvisor.providers.anthropic import AnthropicClient as AnthropicClient
    from lmvisor.providers.client import MAX_RESPONSE_BYTES as MAX_RESPONSE_BYTES
    from lmvisor.providers.client import ClientOptions as ClientOptions
    from lmvisor.providers.client import TransportKind as TransportKind
    from lmvisor.providers.client import VendorClient as VendorClient
    from lmvisor.providers.embeddings import (
        EMBEDDINGS_MAX_RESPONSE_BYTES as EMBEDDINGS_MAX_RESPONSE_BYTES,
    )
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
    from lmvisor.providers.errors import RequestBuildError as RequestBuildError
    from lmvisor.providers.errors import ResponseFormatError as ResponseFormatError
    from lmvisor.providers.errors import ServerError as ServerError
    from lmvisor.providers.errors import UnsupportedMedia as UnsupportedMedia
    from lmvisor.providers.httpx_transport import HttpxTransport as HttpxTransport
    from lmvisor.providers.openai import OpenAIClient as OpenAIClient
    from lmvisor.providers.openai_compatible import OpenAICompatibleClient as OpenAICompatibleClient
    from lmvisor.providers.pricing import ModelPrice as ModelPrice
    from lmvisor.providers.pricing import cost_of as cost_of
    from lmvisor.providers.pricing import price_for as price_for
    from lmvisor.providers.pyreqwest_transport import PyreqwestTransport as PyreqwestTransport
    from lmvisor.providers.reasoning import supports_reasoning as supports_reasoning
    from lmvisor.providers.sse import MAX_EVENT_BYTES as MAX_EVENT_BYTES
    from lmvisor.providers.sse import SSEDecoder as SSEDecoder
    from lmvisor.providers.sse import SSEEvent as SSEEvent
    from lmvisor.providers.sse import SSEEventTooLarge as SSEEventTooLarge
    from lmvisor.providers.transport import SSEResponse as SSEResponse
    from lmvisor.providers.transport import Transport as Transport
    from lmvisor.providers.transport import TransportResponse as TransportResponse
    from lmvisor.providers.transport import TransportStatistics as TransportStatistics
    from lmvisor.providers.transport import build_transport as build_transport
    from lmvisor.providers.transport import default_transport_kind as default_transport_kind
    from lmvisor.providers.transport import transport_for as transport_for
else:
    __all__, __getattr__, __dir__ = lazy_package(__name__, __file__)
