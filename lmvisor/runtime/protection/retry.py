"""Retry: run a call again after retryable failures, backing off exponentially with jitter.

The delay before attempt n+1 is `min(max_delay, base_delay * multiplier**(n-1))`
with a random fraction (`jitter`) taken off, and never less than a
`retry_after` hint the error carries (a 429's Retry-After, an open breaker's
remaining time). A hint longer than `max_delay` ends the retries at once:
waiting less would only fail again. Sleeps go through a `Clock`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar, final

from lmvisor.runtime.clock import Clock, SystemClock
from lmvisor.runtime.errors import RetryExhausted

__all__ = ["Retry", "RetryStatistics", "is_retryable"]

T = TypeVar("T")


def is_retryable(exc: BaseException) -> bool:
    """The default predicate: the error's own `retryable` flag (False when absent)."""
    return bool(getattr(exc, "retryable", False))


@final
@dataclass(frozen=True, slots=True)
class RetryStatistics:
    """Counters of one retry policy."""

    name: str
    calls: int
    retries: int
    exhausted: int


@final
class Retry:
    """A retry policy; one instance may serve many concurrent calls.

    Args:
        name: used in `RetryExhausted` when the caller gives no key.
        max_attempts: total attempts, the first included.
        base_delay: backoff before the second attempt, before jitter.
        multiplier: backoff growth per attempt.
        max_delay: cap on any delay; a longer `retry_after` hint gives up.
        jitter: fraction of the backoff randomly taken off (1.0 is "full jitter").
        retryable: which exceptions are worth another attempt.
        clock: sleeps go through it.
        random: a source of floats in [0, 1), for reproducible jitter in tests.

    Raises:
        ValueError: if `max_attempts` < 1, a delay is negative, `multiplier` < 1
            or `jitter` is outside [0, 1].
    """

    __slots__ = (
        "_calls",
        "_clock",
        "_exhausted",
        "_random",
        "_retries",
        "_retryable",
        "base_delay",
        "jitter",
        "max_attempts",
        "max_delay",
        "multiplier",
        "name",
    )

    def __init__(
        self,
        name: str = "retry",
        *,
        max_attempts: int = 3,
        base_delay: float = 0.1,
        multiplier: float = 2.0,
        max_delay: float = 10.0,
        jitter: float = 1.0,
        retryable: Callable[[BaseException], bool] = is_retryable,
        clock: Clock | None = None,
        random: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
        if base_delay < 0 or max_delay < 0:
            raise ValueError(f"delays must be >= 0, got {base_delay!r} and {max_delay!r}")
        if multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {multiplier!r}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {jitter!r}")
        self.name = name
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.multiplier = multiplier
        self.max_delay = max_delay
        self.jitter = jitter
        self._retryable = retryable
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._random = random
        self._calls = self._retries = self._exhausted = 0

    def delay(self, attempt: int, exc: BaseException) -> float | None:
        """Seconds to wait after failed attempt number `attempt` (1-based), or None to give up.

        Pure apart from the jitter draw.
        """
        try:
            growth = self.multiplier ** (attempt - 1)
        except OverflowError:  # a thousand attempts or so in: the cap holds long before
            growth = math.inf
        backoff = min(self.max_delay, self.base_delay * growth) if self.base_delay else 0.0
        delay = backoff * (1.0 - self.jitter * self._random())
        hint = getattr(exc, "retry_after", None)
        if isinstance(hint, int | float) and not isinstance(hint, bool):
            if hint > self.max_delay:
                return None
            delay = max(delay, float(hint))
        return delay

    async def call(self, fn: Callable[[], Awaitable[T]], *, key: str | None = None) -> T:
        """Await `fn()` until it succeeds, fails for good, or attempts run out.

        Cancellation during an attempt or a backoff sleep propagates at once.

        Raises:
            RetryExhausted: after the last attempt failed retryably, or when a
                `retry_after` hint exceeds `max_delay`; the last error is chained
                and in `last_error`.
            Exception: a non-retryable error from `fn`, unchanged and at once.
        """
        self._calls += 1
        attempt = 1
        while True:
            try:
                return await fn()
            except Exception as exc:
                if not self._retryable(exc):
                    raise
                delay = self.delay(attempt, exc) if attempt < self.max_attempts else None
                if delay is None:
                    self._exhausted += 1
                    name = key if key is not None else self.name
                    raise RetryExhausted(name=name, attempts=attempt, last_error=exc) from exc
            self._retries += 1
            await self._clock.sleep(delay)
            attempt += 1

    def statistics(self) -> RetryStatistics:
        """Counters: calls started, retries made, calls that gave up."""
        return RetryStatistics(
            name=self.name, calls=self._calls, retries=self._retries, exhausted=self._exhausted
        )

    def __repr__(self) -> str:
        return (
            f"Retry({self.name!r}, max_attempts={self.max_attempts}, "
            f"base_delay={self.base_delay:g}, max_delay={self.max_delay:g})"
        )
