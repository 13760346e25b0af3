"""Cost caps per provider: refuse a request before sending once the period's budget is spent.

Fixed windows on the runtime's clock: the first window opens when the budget
is made; once `period` seconds have passed, the next use (check, charge or
statistics) opens a fresh one. Pure bookkeeping, no I/O, tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

from lmvisor.runtime.clock import Clock
from lmvisor.services.errors import BudgetExceeded

__all__ = ["Budget", "BudgetStatistics"]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetStatistics:
    """A snapshot of one budget: what was spent in the current window, of how much."""

    spent: float
    limit: float
    period: float
    refused: int


@final
class Budget:
    """A spending cap of `limit` US dollars per `period` seconds for one provider."""

    __slots__ = ("_clock", "_limit", "_period", "_provider", "_refused", "_spent", "_window")

    def __init__(self, *, provider: str, limit: float, period: float, clock: Clock) -> None:
        if limit < 0:
            raise ValueError(f"Budget: limit must be >= 0, got {limit!r}")
        if period <= 0:
            raise ValueError(f"Budget: period must be > 0, got {period!r}")
        self._provider = provider
        self._limit = limit
        self._period = period
        self._clock = clock
        self._spent = 0.0
        self._refused = 0
        self._window = clock.monotonic()

    def reconfigure(self, *, limit: float, period: float) -> None:
        """Take a new cap and period now, keeping what the current window spent.

        Raises:
            ValueError: as the constructor does for these values (nothing changes).
        """
        if limit < 0:
            raise ValueError(f"Budget: limit must be >= 0, got {limit!r}")
        if period <= 0:
            raise ValueError(f"Budget: period must be > 0, got {period!r}")
        self._limit = limit
        self._period = period

    def check(self, estimate: float = 0.0) -> None:
        """Admit a request expected to cost `estimate`, or refuse it.

        Raises:
            BudgetExceeded: the window's spend plus the estimate is over the limit.
        """
        self._roll()
        if self._spent + estimate > self._limit or (self._spent >= self._limit > 0):
            self._refused += 1
            raise BudgetExceeded(
                provider=self._provider,
                spent=self._spent,
                limit=self._limit,
                retry_after=max(0.0, self._window + self._period - self._clock.monotonic()),
            )

    def charge(self, cost: float) -> None:
        """Record what a finished request cost."""
        self._roll()
        self._spent += cost

    def statistics(self) -> BudgetStatistics:
        self._roll()
        return BudgetStatistics(
            spent=self._spent, limit=self._limit, period=self._period, refused=self._refused
        )

    def _roll(self) -> None:
        now = self._clock.monotonic()
        if now - self._window >= self._period:
            self._window = now
            self._spent = 0.0

    def __repr__(self) -> str:
        return f"Budget(provider={self._provider!r}, spent={self._spent:.4f}, limit={self._limit})"
