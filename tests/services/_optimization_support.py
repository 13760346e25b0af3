"""Deterministic pieces the optimization service tests import by path (metrics, an LM)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from lmvisor.programs.lm import LMCapabilities, LMRequest, LMResponse
from lmvisor.testing.scripted_lm import ScriptedLM


def hashed_metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    """Passes for about half the predictions, decided by a hash of the answer."""
    digest = hashlib.blake2b(str(prediction.answer).encode(), digest_size=2).digest()
    return digest[0] % 2 == 0


def always(example: Any, prediction: Any, trace: Any = None) -> bool:
    """Passes every prediction."""
    return True


def failing(example: Any, prediction: Any, trace: Any = None) -> bool:
    """Raises for every prediction."""
    raise RuntimeError("metric exploded")


class SlowLM:
    """A ScriptedLM (deterministic replies) that waits `delay` seconds per request."""

    def __init__(self, delay: float = 0.0) -> None:
        self.inner = ScriptedLM(model="openai/gpt-4o-mini")
        self.delay = delay
        self.calls = 0
        self.in_flight = 0
        self.peak = 0

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def capabilities(self) -> LMCapabilities:
        return self.inner.capabilities

    async def complete(self, request: LMRequest) -> LMResponse:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return await self.inner.complete(request)
        finally:
            self.in_flight -= 1

    def stream(self, request: LMRequest) -> Any:
        return self.inner.stream(request)


def train_rows(count: int) -> list[dict[str, str]]:
    """`count` arithmetic questions with answers."""
    return [{"question": f"What is {i} plus {i}?", "answer": str(2 * i)} for i in range(count)]
