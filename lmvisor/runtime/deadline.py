"""The call's deadline: one absolute time set where a call enters, read by every wait below it.

A call gets its deadline once (the HTTP request, the CLI, an `Evaluate`
example, the embedding caller's `timeout=`) and carries it down as a
contextvar, so tasks spawned for the call inherit it. Every wait below
(mailbox, cache, router, each retry and its backoff, the vendor request)
asks `time_left()` or `bound_timeout(timeout)` and waits no longer; work that cannot
finish in time is not started (`deadline_expired()` / `check_deadline(operation)`).

Deadlines are absolute times on a `Clock`'s line (the event loop's monotonic
clock by default, `MockClock` in tests). Nesting only tightens: an inner
`deadline(5)` inside an outer `deadline(1)` keeps the outer, earlier time.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from lmvisor.runtime.clock import Clock
from lmvisor.runtime.errors import DeadlineExceeded

__all__ = [
    "bound_timeout",
    "check_deadline",
    "current_deadline",
    "deadline",
    "deadline_at",
    "deadline_expired",
    "time_left",
]

_deadline: ContextVar[float | None] = ContextVar("lmvisor_deadline", default=None)


def _now(clock: Clock | None) -> float:
    return asyncio.get_running_loop().time() if clock is None else clock.monotonic()


def current_deadline() -> float | None:
    """The absolute deadline of this task's call, or None when it has none."""
    return _deadline.get()


def time_left(clock: Clock | None = None) -> float | None:
    """Seconds left before the deadline (<= 0 once passed), or None when there is none."""
    at = _deadline.get()
    return None if at is None else at - _now(clock)


def deadline_expired(clock: Clock | None = None) -> bool:
    """True when the call has a deadline and it has passed."""
    at = _deadline.get()
    return at is not None and _now(clock) >= at


def check_deadline(operation: str, clock: Clock | None = None) -> None:
    """Raise `DeadlineExceeded` naming `operation` when the deadline has passed."""
    if deadline_expired(clock):
        raise DeadlineExceeded(operation=operation)


def bound_timeout(timeout: float | None, clock: Clock | None = None) -> float | None:
    """The smaller of `timeout` and what is left of the deadline (None: neither bounds).

    The result may be <= 0 when the deadline has passed; callers treat that as
    "no time left" rather than "wait forever".
    """
    left = time_left(clock)
    if left is None:
        return timeout
    return left if timeout is None else min(timeout, left)


@contextmanager
def deadline(seconds: float | None, clock: Clock | None = None) -> Iterator[float | None]:
    """Bound the `with` block's call to `seconds` from now (never later than an outer deadline).

    Args:
        seconds: the budget; None or +inf adds no bound (an outer one still holds).
        clock: the time line; the running loop's clock when omitted.

    Yields:
        The absolute deadline in force inside the block, or None.

    Raises:
        ValueError: if `seconds` is NaN, negative or -inf.
    """
    if seconds is None or seconds == math.inf:
        with deadline_at(None) as at:
            yield at
        return
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"deadline seconds must be >= 0 and not NaN, got {seconds!r}")
    with deadline_at(_now(clock) + seconds) as at:
        yield at


@contextmanager
def deadline_at(when: float | None) -> Iterator[float | None]:
    """Bound the `with` block by the absolute time `when` (None: keep the outer deadline).

    Raises:
        ValueError: if `when` is NaN.
    """
    if when is not None and math.isnan(when):
        raise ValueError("deadline time must not be NaN")
    outer = _deadline.get()
    at = when if outer is None else outer if when is None else min(outer, when)
    token = _deadline.set(at)
    try:
        yield at
    finally:
        _deadline.reset(token)
