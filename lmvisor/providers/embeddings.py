"""`OpenAIEmbeddings`: a client of the OpenAI-compatible `/v1/embeddings` endpoint.

It is the programs layer's `Embeddings` (`Embedder` batches over it): one POST per
batch of texts, `encoding_format` "float", vectors returned in the order of the texts
whatever order the server lists them in. Errors are the providers' typed errors, the
API key redacted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, final

from lmvisor.providers._base import decode_json, shape_error
from lmvisor.providers.aiohttp_transport import AiohttpTransport
from lmvisor.providers.errors import error_from_status
from lmvisor.providers.transport import Transport, request_build_error

__all__ = ["OpenAIEmbeddings"]


@final
class OpenAIEmbeddings:
    """Embeddings from an OpenAI-compatible server (OpenAI, vLLM, Ollama, the loopback LM).

    Args:
        model: "openai/model" (or "<name>/model") or a bare model name; that prefix is
            stripped for the wire, any other slash kept ("BAAI/bge-small").
        api_key: sent as a bearer token; never logged or shown in errors.
        base_url: the API root, ending in "/v1".
        timeout: seconds for a whole answer.
        transport: a `Transport` to send through (left open by `aclose()`); None creates
            an `AiohttpTransport` owned by this client.
        headers: extra headers sent with every request.
        name: the provider's name in errors.
        max_response_bytes: the longest answer body taken (256 MiB: a batch of 2048
            inputs at 3072 dimensions is ~130 MB of JSON); a longer one is refused with
            `ResponseFormatError`.

    Raises:
        ValueError: an empty model or base_url, timeout <= 0, or max_response_bytes < 1.
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str = "https://api.openai.com/v1",
        timeout: float = 60.0,
        transport: Transport | None = None,
        headers: Mapping[str, str] | None = None,
        name: str = "openai",
        max_response_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        if not model:
            raise ValueError("model must be a non-empty string")
        if not base_url:
            raise ValueError("base_url must be a non-empty string")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        if type(max_response_bytes) is not int or max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be an int >= 1, got {max_response_bytes!r}")
        self._max_response_bytes = max_response_bytes
        self._model = model
        prefix, sep, rest = model.partition("/")
        self._wire_model = rest if sep and rest and prefix in (name, "openai") else model
        self._api_key = api_key or None
        self._url = f"{base_url.rstrip('/')}/embeddings"
        self._timeout = float(timeout)
        self._name = name
        self._owns_transport = transport is None
        self._transport: Transport = transport or AiohttpTransport()
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self._headers.update(headers or {})

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

    async def aclose(self) -> None:
        """Close the transport if this client created it. Idempotent."""
        if self._owns_transport:
            await self._transport.aclose()
