"""Tests for lmvisor.runtime.deadline: one absolute deadline, nesting, bounds, task inheritance."""

from __future__ import annotations

import asyncio
import math

import pytest

from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.deadline import (
    bound_timeout,
    check_deadline,
    current_deadline,
    deadline,
    deadline_at,
    deadline_expired,
    time_left,
)
from lmvisor.runtime.errors import DeadlineExceeded, LmvisorError


class TestDeadline:
    def test_none_outside_any_deadline(self, mock_clock: MockClock) -> None:
        """With no deadline set nothing bounds a wait."""
        assert current_deadline() is None
        assert time_left(mock_clock) is None
        assert bound_timeout(7.0, mock_clock) == 7.0
        assert bound_timeout(None, mock_clock) is None
        assert not deadline_expired(mock_clock)

    def test_sets_absolute_time_on_the_clock(self, mock_clock: MockClock) -> None:
        """A deadline is `now + seconds` on the given clock, and time left shrinks with it."""
        mock_clock.advance(10.0)
        with deadline(2.0, mock_clock) as at:
            assert at == 12.0
            assert current_deadline() == 12.0
            mock_clock.advance(0.5)
            assert time_left(mock_clock) == pytest.approx(1.5)
            assert bound_timeout(60.0, mock_clock) == pytest.approx(1.5)
            assert bound_timeout(1.0, mock_clock) == 1.0
        assert current_deadline() is None

    def test_nesting_only_tightens(self, mock_clock: MockClock) -> None:
        """An inner, later deadline keeps the outer one; an inner, earlier one wins."""
        with deadline(1.0, mock_clock):
            with deadline(5.0, mock_clock) as inner:
                assert inner == 1.0
            with deadline(0.25, mock_clock) as inner:
                assert inner == 0.25
            with deadline(None, mock_clock) as inner:
                assert inner == 1.0
            with deadline(math.inf, mock_clock) as inner:
                assert inner == 1.0

    def test_expired_deadline_raises_typed_error(self, mock_clock: MockClock) -> None:
        """Past the deadline, check_deadline raises DeadlineExceeded (also a TimeoutError)."""
        with deadline(1.0, mock_clock):
            check_deadline("lookup", mock_clock)
            mock_clock.advance(1.0)
            assert deadline_expired(mock_clock)
            assert bound_timeout(5.0, mock_clock) == 0.0
            with pytest.raises(DeadlineExceeded, match=r"^deadline exceeded during lookup$") as err:
                check_deadline("lookup", mock_clock)
        assert isinstance(err.value, LmvisorError)
        assert isinstance(err.value, TimeoutError)
        assert err.value.code == "deadline_exceeded"

    @pytest.mark.parametrize("seconds", [math.nan, -1.0, -math.inf])
    def test_rejects_bad_budgets(self, seconds: float, mock_clock: MockClock) -> None:
        """NaN and negative budgets are a programmer error, refused before anything is set."""
        bad_budget = pytest.raises(ValueError, match=r"^deadline seconds must be >= 0 and not NaN")
        with bad_budget, deadline(seconds, mock_clock):
            pass
        bad_time = pytest.raises(ValueError, match=r"^deadline time must not be NaN$")
        with bad_time, deadline_at(math.nan):
            pass
        assert current_deadline() is None

    async def test_tasks_inherit_and_stay_isolated(self) -> None:
        """A task spawned inside a deadline inherits it; a sibling task outside sees none."""
        seen: dict[str, float | None] = {}

        async def probe(key: str) -> None:
            seen[key] = current_deadline()

        with deadline(30.0) as at:
            inside = asyncio.create_task(probe("inside"))
        outside = asyncio.create_task(probe("outside"))
        await asyncio.gather(inside, outside)
        assert seen == {"inside": at, "outside": None}
