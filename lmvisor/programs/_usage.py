"""Summing LM usage per module call: each running module call holds an accumulator in a
ContextVar; every LM call adds its usage to all accumulators of the enclosing calls.

The enclosing calls' accumulators form a chain (`parent`), so opening one builds no tuple
and keeps no `Token` alive while the call waits on its LM: closing sets the parent back.

Most module calls make one LM call: the accumulator keeps that call's `Usage` as it is
and sums only from the second call on, so the common call builds no `Usage` at all.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Final, final

from lmvisor.programs.lm import Usage

__all__ = ["UsageAccumulator", "close_accumulator", "open_accumulator", "record_usage"]

_NO_USAGE: Final = Usage()  # frozen: one shared zero for every accumulator with no call


@final
class UsageAccumulator:
    """The usage and cost of the LM calls made during one module call."""

    __slots__ = ("cached_calls", "calls", "cost", "cost_known", "parent", "usage")

    def __init__(self, parent: UsageAccumulator | None = None) -> None:
        self.parent = parent  # the enclosing module call's, also told of every LM call
        self.usage = _NO_USAGE
        self.calls = 0
        self.cached_calls = 0
        self.cost = 0.0
        self.cost_known = True

    def add(self, usage: Usage, cost: float | None, cached: bool = False) -> None:
        """Add one LM call (`cached`: it was answered from a cache)."""
        self.usage = usage if not self.calls else self.usage + usage
        self.calls += 1
        self.cached_calls += cached
        if cost is None:
            self.cost_known = False
        else:
            self.cost += cost

    def total_cost(self) -> float | None:
        """The summed cost, or None if a call reported none (or there were no calls)."""
        return self.cost if self.cost_known and self.calls else None

    def all_cached(self) -> bool:
        """True when there were LM calls and a cache answered every one."""
        return self.calls > 0 and self.cached_calls == self.calls

    def __repr__(self) -> str:
        return f"UsageAccumulator(calls={self.calls}, cached={self.cached_calls}, {self.usage})"


_active: ContextVar[UsageAccumulator | None] = ContextVar("lmvisor_usage", default=None)


def open_accumulator() -> UsageAccumulator:
    """Start accumulating for a module call: the accumulator, which `close_accumulator` ends.

    Close it in the context it was opened in, after every call opened inside it closed.
    """
    acc = UsageAccumulator(_active.get())
    _active.set(acc)  # its Token is dropped: `close_accumulator` sets the parent back
    return acc


def close_accumulator(acc: UsageAccumulator) -> None:
    """End the module call's accumulation."""
    _active.set(acc.parent)


def record_usage(usage: Usage, cost: float | None, cached: bool = False) -> None:
    """Add one LM call's usage to every enclosing module call."""
    acc = _active.get()
    while acc is not None:
        acc.add(usage, cost, cached)
        acc = acc.parent
