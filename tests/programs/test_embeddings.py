"""Embedder (batching over an Embeddings model or a function) and the KNN retriever."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import pytest

from lmvisor.programs.embeddings import KNN, Embedder, Embeddings, Vector
from lmvisor.programs.example import Example


class BagOfWords:
    """A deterministic Embeddings: counts of a fixed vocabulary; records each batch."""

    VOCAB = ("cat", "dog", "fish", "bird", "paris", "rome")

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.params: list[dict[str, Any]] = []

    @property
    def model(self) -> str:
        return "test/bag-of-words"

    async def embed(self, texts: Sequence[str], **params: Any) -> list[Vector]:
        self.batches.append(list(texts))
        self.params.append(params)
        return [[float(t.lower().count(w)) for w in self.VOCAB] for t in texts]


class TestEmbedder:
    async def test_batches_in_order(self) -> None:
        """Texts are sent in batches of batch_size and come back in order."""
        model = BagOfWords()
        embedder = Embedder(model, batch_size=2, dimensions=6)
        vectors = await embedder(["cat", "dog dog", "fish", "rome"])
        assert model.batches == [["cat", "dog dog"], ["fish", "rome"]]
        assert model.params == [{"dimensions": 6}, {"dimensions": 6}]
        assert vectors[1] == [0.0, 2.0, 0.0, 0.0, 0.0, 0.0]
        assert isinstance(model, Embeddings)

    async def test_single_text(self) -> None:
        """One str in, one vector out."""
        assert await Embedder(BagOfWords())("bird") == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]

    async def test_sync_and_async_functions(self) -> None:
        """A plain function of texts works, sync or async."""

        def digest(texts: list[str]) -> list[list[float]]:
            return [[float(hashlib.sha256(t.encode()).digest()[0])] for t in texts]

        async def adigest(texts: list[str]) -> list[list[float]]:
            return digest(texts)

        assert await Embedder(digest)(["a", "b"]) == await Embedder(adigest)(["a", "b"])

    async def test_wrong_count(self) -> None:
        """A model returning the wrong number of vectors is an error, not a misalignment."""
        with pytest.raises(ValueError, match=r"^the model returned 1 embeddings for 2 texts$"):
            await Embedder(lambda texts: [[1.0]])(["a", "b"])

    async def test_inputs_must_be_text(self) -> None:
        """Non-str inputs are refused."""
        with pytest.raises(ValueError, match=r"^every input to embed must be a str$"):
            await Embedder(BagOfWords())(["a", 3])  # type: ignore[list-item]

    def test_bad_batch_size(self) -> None:
        """batch_size must be positive."""
        with pytest.raises(ValueError, match=r"^batch_size must be >= 1$"):
            Embedder(BagOfWords(), batch_size=0)


TRAIN = [
    Example(question="Where do cats sleep?", answer="anywhere").with_inputs("question"),
    Example(question="What do dogs eat?", answer="food").with_inputs("question"),
    Example(question="Is Rome in Italy?", answer="yes").with_inputs("question"),
    Example(question="Do fish and cats get along?", answer="no").with_inputs("question"),
]


class TestKNN:
    async def test_nearest_first(self) -> None:
        """The k most similar examples come back, most similar first."""
        knn = KNN(2, TRAIN, Embedder(BagOfWords()))
        found = await knn(question="cat cat fish")
        assert [e.answer for e in found] == ["no", "anywhere"]

    async def test_trainset_embedded_once(self) -> None:
        """The training set is embedded on the first call only, as `key: value` text."""
        model = BagOfWords()
        knn = KNN(1, TRAIN, Embedder(model))
        await knn(question="rome")
        await knn(question="dog")
        assert model.batches[0] == [f"question: {e.question}" for e in TRAIN]
        assert model.batches[1:] == [["question: rome"], ["question: dog"]]

    def test_inputs_must_be_marked(self) -> None:
        """Examples without input keys are refused up front."""
        with pytest.raises(ValueError, match=r"^trainset\[0\] has no input keys"):
            KNN(1, [Example(question="q")], Embedder(BagOfWords()))
