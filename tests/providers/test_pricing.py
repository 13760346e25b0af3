"""Tests for lmvisor.providers.pricing: model prices, snapshots and cost."""

from __future__ import annotations

import pytest

from lmvisor.programs.lm import Usage
from lmvisor.providers.pricing import PRICES, ModelPrice, cost_of, price_for


class TestPriceFor:
    def test_known_models(self) -> None:
        """Common OpenAI and Anthropic models have a price and a context window."""
        for name in ("gpt-4o-mini", "gpt-4.1", "o3-mini", "claude-sonnet-4-5", "claude-haiku-4-5"):
            price = price_for(name)
            assert price is not None and price.input > 0 and price.output > price.input
            assert price.context_window >= 128_000

    def test_snapshot_and_vendor_prefix(self) -> None:
        """Dated snapshots, -latest and a vendor prefix resolve to the base model."""
        assert price_for("gpt-4o-mini-2024-07-18") is PRICES["gpt-4o-mini"]
        assert price_for("claude-3-5-haiku-20241022") is PRICES["claude-3-5-haiku"]
        assert price_for("claude-3-5-haiku-latest") is PRICES["claude-3-5-haiku"]
        assert price_for("openai/gpt-4o") is PRICES["gpt-4o"]

    def test_longest_name_wins(self) -> None:
        """gpt-4o-mini is not priced as gpt-4o."""
        assert price_for("gpt-4o-mini") is not PRICES["gpt-4o"]

    def test_unknown_model(self) -> None:
        """An unknown model has no price and no cost."""
        assert price_for("llama3") is None
        assert cost_of("llama3", Usage(prompt_tokens=10)) is None

    def test_own_table_first(self) -> None:
        """A provider's own prices are consulted before the built-in table."""
        mine = ModelPrice(input=0.0, output=0.0, context_window=8192)
        assert price_for("gpt-4o", {"gpt-4o": mine}) is mine
        assert price_for("llama3", {"llama3": mine}) is mine


class TestModelPrice:
    def test_cost_counts_cached_tokens_at_cached_price(self) -> None:
        """Cached prompt tokens cost the cached price; the rest the input price."""
        price = ModelPrice(input=2.0, output=10.0, cached_input=0.5, context_window=1000)
        usage = Usage(prompt_tokens=100, completion_tokens=10, total_tokens=110, cached_tokens=40)
        assert price.cost(usage) == 60 * 2.0 + 40 * 0.5 + 10 * 10.0

    def test_cost_without_cached_price(self) -> None:
        """Without a cached price, cached tokens cost the full input price."""
        price = ModelPrice(input=1.0, output=3.0, context_window=1000)
        usage = Usage(prompt_tokens=10, completion_tokens=2, cached_tokens=5)
        assert price.cost(usage) == 16.0

    def test_gpt_4o_mini_list_price(self) -> None:
        """gpt-4o-mini costs $0.15 / $0.60 per million tokens."""
        usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
        assert cost_of("gpt-4o-mini", usage) == pytest.approx(0.75)

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            (
                {"input": -1.0, "output": 1.0, "context_window": 1},
                r"^ModelPrice\.input must be >= 0, got -1\.0$",
            ),
            (
                {"input": 1.0, "output": 1.0, "context_window": 0},
                r"^ModelPrice\.context_window must be >= 1, got 0$",
            ),
            (
                {"input": 1.0, "output": 1.0, "context_window": 1, "cached_input": -2.0},
                r"^ModelPrice\.cached_input must be >= 0, got -2\.0$",
            ),
        ],
    )
    def test_validation(self, kwargs: dict[str, float], message: str) -> None:
        """Negative prices and an empty window are rejected, naming the field."""
        with pytest.raises(ValueError, match=message):
            ModelPrice(**kwargs)  # type: ignore[arg-type]
