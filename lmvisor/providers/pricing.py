"""Per-model prices and context windows for common OpenAI and Anthropic models.

Prices are US dollars per token (list prices, standard tier, as published by
the vendors in 2025). A dated or "-latest" snapshot name resolves to its base
model ("gpt-4o-2024-08-06" -> "gpt-4o"); an unknown model has no price, and
its cost is None rather than a guess.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from lmvisor.programs.lm import Usage

__all__ = ["PRICES", "ModelPrice", "cost_of", "price_for"]

_PER_MILLION = 1_000_000.0
_SNAPSHOT_RE = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest|v\d+(:\d+)?)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelPrice:
    """A model's price per token and its context window in tokens.

    `cached_input` is the price of a prompt token read from the vendor's prompt
    cache; None means cached tokens cost the full input price.
    """

    input: float
    output: float
    context_window: int
    cached_input: float | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output"):
            if getattr(self, name) < 0:
                raise ValueError(f"ModelPrice.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.cached_input is not None and self.cached_input < 0:
            raise ValueError(f"ModelPrice.cached_input must be >= 0, got {self.cached_input!r}")
        if self.context_window < 1:
            raise ValueError(f"ModelPrice.context_window must be >= 1, got {self.context_window!r}")

    def cost(self, usage: Usage) -> float:
        """Dollars for `usage`: uncached and cached prompt tokens, then completion tokens."""
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        return (
            (usage.prompt_tokens - cached) * self.input
            + cached * cached_price
            + usage.completion_tokens * self.output
        )


def _m(inp: float, out: float, window: int, cached: float | None = None) -> ModelPrice:
    return ModelPrice(
        input=inp / _PER_MILLION,
        output=out / _PER_MILLION,
        context_window=window,
        cached_input=None if cached is None else cached / _PER_MILLION,
    )


PRICES: Mapping[str, ModelPrice] = {
    # OpenAI
    "gpt-5": _m(1.25, 10.0, 400_000, 0.125),
    "gpt-5-mini": _m(0.25, 2.0, 400_000, 0.025),
    "gpt-5-nano": _m(0.05, 0.40, 400_000, 0.005),
    "gpt-4.1": _m(2.0, 8.0, 1_047_576, 0.50),
    "gpt-4.1-mini": _m(0.40, 1.60, 1_047_576, 0.10),
    "gpt-4.1-nano": _m(0.10, 0.40, 1_047_576, 0.025),
    "gpt-4o": _m(2.50, 10.0, 128_000, 1.25),
    "gpt-4o-mini": _m(0.15, 0.60, 128_000, 0.075),
    "gpt-4-turbo": _m(10.0, 30.0, 128_000),
    "gpt-4": _m(30.0, 60.0, 8_192),
    "gpt-3.5-turbo": _m(0.50, 1.50, 16_385),
    "o1": _m(15.0, 60.0, 200_000, 7.50),
    "o1-mini": _m(1.10, 4.40, 128_000, 0.55),
    "o3": _m(2.0, 8.0, 200_000, 0.50),
    "o3-mini": _m(1.10, 4.40, 200_000, 0.55),
    "o4-mini": _m(1.10, 4.40, 200_000, 0.275),
    # Anthropic (cache reads at a tenth of the input price)
    "claude-opus-4-5": _m(5.0, 25.0, 200_000, 0.50),
    "claude-opus-4-1": _m(15.0, 75.0, 200_000, 1.50),
    "claude-opus-4": _m(15.0, 75.0, 200_000, 1.50),
    "claude-sonnet-4-5": _m(3.0, 15.0, 200_000, 0.30),
    "claude-sonnet-4": _m(3.0, 15.0, 200_000, 0.30),
    "claude-haiku-4-5": _m(1.0, 5.0, 200_000, 0.10),
    "claude-3-7-sonnet": _m(3.0, 15.0, 200_000, 0.30),
    "claude-3-5-sonnet": _m(3.0, 15.0, 200_000, 0.30),
    "claude-3-5-haiku": _m(0.80, 4.0, 200_000, 0.08),
    "claude-3-opus": _m(15.0, 75.0, 200_000, 1.50),
    "claude-3-haiku": _m(0.25, 1.25, 200_000, 0.03),
}


def price_for(model: str, prices: Mapping[str, ModelPrice] | None = None) -> ModelPrice | None:
    """The price of `model` (bare or "vendor/model"), or None when unknown.

    `prices` (a provider's own table, e.g. for a local model) is consulted before
    the built-in `PRICES`; in each, a snapshot suffix is tried stripped too.
    """
    if not prices:
        return _builtin_price(model)
    name = model.rpartition("/")[2] if "/" in model and model not in prices else model
    for table in (prices, PRICES):
        if not table:
            continue
        found = table.get(name)
        if found is None:
            base = _SNAPSHOT_RE.sub("", name)
            found = table.get(base) if base != name else None
        if found is not None:
            return found
    return None


@functools.lru_cache(maxsize=1024)
def _builtin_price(model: str) -> ModelPrice | None:
    # Called once per response; the snapshot regex is worth memoising (bounded).
    name = model.rpartition("/")[2]
    found = PRICES.get(name)
    if found is None:
        base = _SNAPSHOT_RE.sub("", name)
        found = PRICES.get(base) if base != name else None
    return found


def cost_of(
    model: str, usage: Usage, prices: Mapping[str, ModelPrice] | None = None
) -> float | None:
    """Dollars for `usage` on `model`, or None when its price is unknown."""
    price = price_for(model, prices)
    return None if price is None else price.cost(usage)
