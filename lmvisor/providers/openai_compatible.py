"""A client of servers that speak OpenAI's Chat Completions: Ollama, vLLM, llama.cpp.

Differences from `OpenAIClient`, because these servers differ from OpenAI:
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

from typing import final

from lmvisor.providers.openai import _OpenAIWire

__all__ = ["OpenAICompatibleClient"]


@final
class OpenAICompatibleClient(_OpenAIWire):
    """A client of an OpenAI-compatible server (Ollama's /v1, vLLM, llama.cpp server).

    Built from `ClientOptions` (base URL default Ollama's
    "http://127.0.0.1:11434/v1", name "openai_compatible", usage asked for in
    streams only with `stream_usage=True`) and, optionally, a `Transport`. The
    API key is sent as a bearer token when given (vLLM's --api-key). Models are
    accepted bare or prefixed "<name>/" ("local/llama3") or
    "openai_compatible/"; other slashes ("meta-llama/Llama-3.1-8B") are sent unchanged.

    Raises:
        TypeError: `options` is not a `ClientOptions`.
        ValueError: the transport cannot be built from the options.
    """

    _vendor = "openai_compatible"
    _default_base_url = "http://127.0.0.1:11434/v1"
    _max_tokens_key = "max_tokens"
    _other_max_key = "max_completion_tokens"
    _require_done = False
