"""`OpenAIEmbeddings`: a client of the OpenAI-compatible `/v1/embeddings` endpoint.

It is the programs layer's `Embeddings` (`Embedder` batches over it): one POST per
batch of texts, `encoding_format` "float", vectors returned in the order of the texts
whatever order the server lists them in. Errors are the providers' typed errors, the
API key redacted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, final

from lmvisor.providers._base import decode_json, shape_error
from lmvisor.providers.client import MAX_RESPONSE_BYTES, ClientOptions
from lmvisor.providers.errors import error_from_status
from lmvisor.providers.transport import (
    Transport,
    TransportStatistics,
    request_build_error,
    transport_for,
)

__all__ = ["EMBEDDINGS_MAX_RESPONSE_BYTES", "OpenAIEmbeddings"]

EMBEDDINGS_MAX_RESPONSE_BYTES: Final = 256 * 1024 * 1024
"""The longest embeddings answer taken by default (see `OpenAIEmbeddings`)."""
_OPENAI_BASE_URL: Final = "https://api.openai.com/v1"


@final
class OpenAIEmbeddings:
    """Embeddings from an OpenAI-compatible server (OpenAI, vLLM, Ollama, the loopback LM).

    Built from the `ClientOptions` the chat clients take, and honouring them as they do:
    `base_url` (None: OpenAI's), `api_key`, `name`, `headers`, `timeout` (seconds for a
    whole answer), and the transport it builds (`transport`, `max_connections`,
    `keepalive_timeout`, through `transport_for`). One option differs: the answer bound.
    `ClientOptions.max_response_bytes` is sized for completions (64 MiB); an embeddings
    answer is larger by nature (a batch of 2,048 inputs at 3,072 dimensions is ~130 MB of
    JSON), so this client takes 256 MiB unless told otherwise: by `max_response_bytes`, or
    by options whose `max_response_bytes` was changed from the default.

    Args:
        model: "openai/model" (or "<name>/model") or a bare model name; that prefix is
            stripped for the wire, any other slash kept ("BAAI/bge-small").
        options: how to reach the server (None: `ClientOptions()`, OpenAI's API).
        transport: a `Transport` to send through instead of building one (left open by
            `aclose()`; the options' transport settings then do not apply).
        max_response_bytes: the longest answer body taken; a longer one is refused with
            `ResponseFormatError` (by its `Content-Length` before it is read). None: the
            options' bound when set to other than the default, else 256 MiB.

    Raises:
        TypeError: `options` is not a `ClientOptions`.
        ValueError: an empty model, or max_response_bytes < 1.
        ImportError: the options ask for "pyreqwest" and it is not installed.
    """

    def __init__(
        self,
        model: str,
        options: ClientOptions | None = None,
        *,
        transport: Transport | None = None,
        max_response_bytes: int | None = None,
    ) -> None:
        options = ClientOptions() if options is None else options
        if not isinstance(options, ClientOptions):
            raise TypeError(f"options must be ClientOptions, got {type(options).__name__}")
        if max_response_bytes is None:  # a bound lowered in the options is kept, not raised
            chosen = options.max_response_bytes
            custom = chosen != MAX_RESPONSE_BYTES
            max_response_bytes = chosen if custom else EMBEDDINGS_MAX_RESPONSE_BYTES
        if not model:
            raise ValueError("model must be a non-empty string")
        if type(max_response_bytes) is not int or max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be an int >= 1, got {max_response_bytes!r}")
        self._max_response_bytes = max_response_bytes
        self._model = model
        self._name = name = options.name or "openai"
        prefix, sep, rest = model.partition("/")
        self._wire_model = rest if sep and rest and prefix in (name, "openai") else model
        self._api_key = options.api_key or None
        base_url = options.base_url or _OPENAI_BASE_URL
        self._url = f"{base_url.rstrip('/')}/embeddings"
        self._timeout = float(options.timeout)
        self._owns_transport = transport is None
        self._transport: Transport = transport or transport_for(options)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self._headers.update(options.headers)

    def __repr__(self) -> str:
        return f"OpenAIEmbeddings(model={self._model!r}, url={self._url!r})"

    @property
    def model(self) -> str:
        """The model name as given ("openai/text-embedding-3-small")."""
        return self._model

    async def embed(self, texts: Sequence[str], **params: Any) -> list[list[float]]:
        """The embeddings of `texts`, in order (one request).

        `params` are sent as given (`dimensions`, `user`...).

        Raises:
            ProviderError: the matching subclass for an HTTP or transport failure.
            ResponseFormatError: the body is not an embeddings list of the right size.
        """
        body = {"model": self._wire_model, "input": list(texts), "encoding_format": "float"}
        body.update({k: v for k, v in params.items() if v is not None})
        encoded = json.dumps(body).encode()
        try:
            resp = await self._transport.post_json(
                self._url,
                headers=self._headers,
                body=encoded,
                timeout=self._timeout,
                max_response_bytes=self._max_response_bytes,
                provider=self._name,
                model=self._wire_model,
            )
        except ValueError as exc:  # the body is built: this is the HTTP client's own
            raise request_build_error(exc, self._name, self._wire_model) from exc
        if resp.status >= 300:
            raise error_from_status(
                provider=self._name,
                model=self._wire_model,
                status=resp.status,
                headers=resp.headers,
                body=resp.body,
                secret=self._api_key,
            )
        data = decode_json(resp.body, provider=self._name, model=self._wire_model, what="body")
        return self._vectors(data, len(texts))

    def _vectors(self, data: Any, count: int) -> list[list[float]]:
        items = data.get("data") if isinstance(data, Mapping) else None
        if not isinstance(items, list) or len(items) != count:
            raise shape_error(self._name, self._wire_model, "data", f"expected {count} embeddings")
        vectors: list[list[float] | None] = [None] * count
        for position, item in enumerate(items):
            index = item.get("index", position) if isinstance(item, Mapping) else None
            vector = item.get("embedding") if isinstance(item, Mapping) else None
            if not isinstance(index, int) or not 0 <= index < count or vectors[index] is not None:
                raise shape_error(self._name, self._wire_model, f"data[{position}].index", "bad")
            if not isinstance(vector, list) or not all(isinstance(x, int | float) for x in vector):
                where = f"data[{position}].embedding"
                raise shape_error(self._name, self._wire_model, where, "expected a list of numbers")
            vectors[index] = [float(x) for x in vector]
        return [v for v in vectors if v is not None]

    def statistics(self) -> TransportStatistics:
        """A snapshot of the transport's pool."""
        return self._transport.statistics()

    async def aclose(self) -> None:
        """Close the transport if this client created it. Idempotent."""
        if self._owns_transport:
            await self._transport.aclose()
