"""Embeddings for programs: the `Embeddings` protocol, `Embedder` (batching over it, as
DSPy's `Embedder`) and the `KNN` retriever of similar examples.

Like the `LM` protocol, `Embeddings` is all a program needs: the providers layer gives an
OpenAI-compatible `/v1/embeddings` client, tests a deterministic one, and a plain
function of a list of texts works too.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, final, overload, runtime_checkable

from lmvisor.programs.example import Example

if TYPE_CHECKING:
    import asyncio

__all__ = ["KNN", "Embedder", "Embeddings", "Vector"]

Vector = list[float]
"""One embedding."""


@runtime_checkable
class Embeddings(Protocol):
    """An embedding model a program can call.

    `embed` returns one vector per text, in order, or raises an `LmvisorError` subclass;
    cancelling the awaiting task cancels the request.
    """

    @property
    def model(self) -> str:
        """The model name ("openai/text-embedding-3-small")."""
        ...

    async def embed(self, texts: Sequence[str], **params: Any) -> list[Vector]:
        """The embeddings of `texts` (one request; the caller batches)."""
        ...


_EmbedFn = Callable[[list[str]], Sequence[Sequence[float]] | Awaitable[Sequence[Sequence[float]]]]


@final
class Embedder:
    """Embeds texts in batches through an `Embeddings` model or a function of texts.

    Args:
        model: an `Embeddings` (the providers' client), or a sync or async function from a
            list of texts to their vectors.
        batch_size: texts per request.
        **params: options sent with every request (`dimensions`...).

    Raises:
        ValueError: batch_size < 1.
        TypeError: model is neither.
    """

    def __init__(
        self, model: Embeddings | _EmbedFn, *, batch_size: int = 200, **params: Any
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not isinstance(model, Embeddings) and not callable(model):
            raise TypeError("model must be an Embeddings or a function of a list of texts")
        self.model = model
        self.batch_size = batch_size
        self.params = params

    def __repr__(self) -> str:
        name = self.model.model if isinstance(self.model, Embeddings) else repr(self.model)
        return f"Embedder({name}, batch_size={self.batch_size})"

    @overload
    async def __call__(self, texts: str, **params: Any) -> Vector: ...

    @overload
    async def __call__(self, texts: Sequence[str], **params: Any) -> list[Vector]: ...

    async def __call__(self, texts: str | Sequence[str], **params: Any) -> Vector | list[Vector]:
        """The embedding of one text, or of each text in order.

        Raises:
            ValueError: a text is not a str, or the model returned the wrong count.
            LmvisorError: whatever the model raises.
        """
        single = isinstance(texts, str)
        items = [texts] if isinstance(texts, str) else list(texts)
        if not all(isinstance(t, str) for t in items):
            raise ValueError("every input to embed must be a str")
        options = {**self.params, **params}
        vectors: list[Vector] = []
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            got = await self._embed(batch, options)
            if len(got) != len(batch):
                raise ValueError(f"the model returned {len(got)} embeddings for {len(batch)} texts")
            vectors.extend([float(x) for x in v] for v in got)
        return vectors[0] if single else vectors

    acall = __call__

    async def _embed(self, batch: list[str], options: dict[str, Any]) -> Sequence[Sequence[float]]:
        if isinstance(self.model, Embeddings):
            return await self.model.embed(batch, **options)
        result = self.model(batch, **options)
        return await result if inspect.isawaitable(result) else result


@final
class KNN:
    """The `k` training examples most similar to the inputs (DSPy's KNN).

    Each example is embedded as `"key: value | key: value"` over its input keys, the
    query over the keyword arguments; similarity is the dot product. The training set is
    embedded once, on the first call.

    Args:
        k: how many examples to return.
        trainset: examples with `with_inputs(...)` marked.
        vectorizer: the Embedder.

    Raises:
        ValueError: k < 1, or an example has no input keys marked.
    """

    def __init__(self, k: int, trainset: Sequence[Example], vectorizer: Embedder) -> None:
        if k < 1:
            raise ValueError("k must be >= 1")
        for i, example in enumerate(trainset):
            if example.input_keys is None:
                raise ValueError(f"trainset[{i}] has no input keys: call with_inputs(...) on it")
        self.k = k
        self.trainset = list(trainset)
        self.embedding = vectorizer
        self._vectors: list[Vector] | None = None
        self._fitting: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"KNN(k={self.k}, trainset={len(self.trainset)})"

    async def __call__(self, **inputs: Any) -> list[Example]:
        """The k most similar examples, most similar first.

        Raises:
            LmvisorError: whatever the embedding model raises.
        """
        vectors = await self._train_vectors()
        query = await self.embedding(" | ".join(f"{key}: {value}" for key, value in inputs.items()))
        scores = [_dot(vector, query) for vector in vectors]
        order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
        return [self.trainset[i] for i in order[: self.k]]

    async def _train_vectors(self) -> list[Vector]:
        if self._vectors is not None:
            return self._vectors
        if self._fitting is None:
            import asyncio  # lazily: keeps `import lmvisor.programs` cheap

            self._fitting = asyncio.Lock()
        async with self._fitting:
            if self._vectors is None:
                texts = [_example_text(example) for example in self.trainset]
                self._vectors = await self.embedding(texts) if texts else []
        return self._vectors


def _example_text(example: Example) -> str:
    keys = example.input_keys or frozenset()
    return " | ".join(f"{key}: {value}" for key, value in example.items() if key in keys)


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b):
        raise ValueError(f"embeddings of different sizes: {len(a)} and {len(b)}")
    return math.fsum(x * y for x, y in zip(a, b, strict=True))
