"""Budget: a cost cap per period, refused before sending."""

from __future__ import annotations

import pytest

from lmvisor.runtime.clock import MockClock
from lmvisor.services.budget import Budget
from lmvisor.services.errors import BudgetExceeded


class TestBudget:
    def test_admits_until_spent(self) -> None:
        """Requests are admitted while the window's spend stays under the limit."""
        clock = MockClock()
        budget = Budget(provider="openai", limit=1.0, period=60.0, clock=clock)
        budget.check(0.4)
        budget.charge(0.4)
        budget.check(0.5)
        budget.charge(0.5)
        with pytest.raises(BudgetExceeded, match=r"^provider 'openai' budget exceeded") as info:
            budget.check(0.2)
        assert info.value.retry_after == pytest.approx(60.0)
        assert budget.statistics().refused == 1

    def test_window_resets_after_period(self) -> None:
        """The spend starts again from zero once the period has passed."""
        clock = MockClock()
        budget = Budget(provider="openai", limit=1.0, period=10.0, clock=clock)
        budget.charge(1.0)
        with pytest.raises(BudgetExceeded):
            budget.check()
        clock.advance(10.0)
        budget.check(0.9)
        assert budget.statistics().spent == 0.0

    def test_rejects_bad_arguments(self) -> None:
        """A negative limit or a non-positive period is a programming error."""
        with pytest.raises(ValueError, match=r"^Budget: limit must be >= 0, got -1$"):
            Budget(provider="p", limit=-1, period=1, clock=MockClock())
        with pytest.raises(ValueError, match=r"^Budget: period must be > 0, got 0$"):
            Budget(provider="p", limit=1, period=0, clock=MockClock())

    def test_error_is_serialisable(self) -> None:
        """BudgetExceeded carries its figures in a JSON-ready dict."""
        clock = MockClock()
        budget = Budget(provider="anthropic", limit=0.0, period=5.0, clock=clock)
        with pytest.raises(BudgetExceeded) as info:
            budget.check(0.01)
        data = info.value.to_dict()
        assert data["code"] == "budget_exceeded"
        assert data["context"]["provider"] == "anthropic"
        assert data["retryable"] is False
