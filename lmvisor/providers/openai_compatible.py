"""A client of servers that speak OpenAI's Chat Completions: Ollama, vLLM, llama.cpp.

Differences from `OpenAIProvider`, because these servers differ from OpenAI:
the token limit is sent as `max_tokens` (`max_completion_tokens` is renamed to
it); a stream asks for usage only when `stream_usage=True` or the request's
params carry `stream_options`, since some servers reject the option; a stream
that ends without `data: [DONE]` is accepted once every choice has a finish
reason; no API key is needed; and an unknown model's 404 is a `ModelNotFound`
naming the model. Prices come from `prices`, then the built-in table by model
name, as for every provider: a local model ("llama3") has no cost (None)
unless `prices` gives one, while one named like a vendor's ("gpt-4o-mini") is
priced as that vendor's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, final

from lmvisor.programs.lm import LMCapabilities
from lmvisor.providers.openai import _OpenAIWire
from lmvisor.providers.pricing import ModelPrice
from lmvisor.providers.transport import Transport

__all__ = ["OpenAICompatibleProvider"]


@final
class OpenAICompatibleProvider(_OpenAIWire):
    """A client of an OpenAI-compatible server (Ollama's /v1, vLLM, llama.cpp server).

    Args:
        base_url: the server's API root, ending in "/v1" (Ollama's default here).
        api_key: sent as a bearer token when given (vLLM's --api-key); never logged.
        default_model, timeout, transport, headers, max_connections,
            keepalive_timeout, prices, capabilities, logger: as for `OpenAIProvider`.
        name: the provider's name, also accepted as a model prefix ("local/llama3")
            beside "openai_compatible/". Model names with other slashes
            ("meta-llama/Llama-3.1-8B") are sent unchanged.
        stream_usage: ask for the final usage chunk in streams (off by default).

    Raises:
        ValueError: an option is out of range (the message names it).
    """

    _vendor = "openai_compatible"
    _max_tokens_key = "max_tokens"
    _other_max_key = "max_completion_tokens"
    _require_done = False

    def __init__(
        self,
        *,
        base_url: str = "http://127.0.0.1:11434/v1",
        api_key: str | None = None,
        default_model: str | None = None,
        timeout: float = 60.0,
        transport: Transport | None = None,
        headers: Mapping[str, str] | None = None,
        name: str = "openai_compatible",
        max_connections: int | None = None,
        keepalive_timeout: float | None = None,
        prices: Mapping[str, ModelPrice] | None = None,
        capabilities: LMCapabilities | None = None,
        logger: Any = None,
        stream_usage: bool = False,
    ) -> None:
        super().__init__(
            name=name,
            api_key=api_key,
            base_url=base_url,
            default_model=default_model,
            timeout=timeout,
            transport=transport,
            max_connections=max_connections,
            keepalive_timeout=keepalive_timeout,
            prices=prices,
            capabilities=capabilities,
            logger=logger,
        )
        self._open_wire(headers, stream_usage=stream_usage)
