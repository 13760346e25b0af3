"""The rate limiter: at most `limit` requests and `token_limit` tokens per `period`.

Each limit is an aiolimiter leaky bucket (a burst of up to the limit, then a
steady drain of `limit / period` per second: in any span of t seconds at most
`limit + limit * t / period` requests pass) that reads time from a `Clock`,
so tests drive it with `MockClock`. `acquire(tokens)` takes one request and
`tokens` tokens from both buckets at once, or neither: a call never holds
half its budget while it waits. Waiters are served first come, first served;
a newcomer never overtakes a waiter.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, final

from aiolimiter import AsyncLimiter

from lmvisor.runtime.clock import Clock, SystemClock
from lmvisor.runtime.errors import RateLimited
from lmvisor.runtime.observe.logs import get_logger

__all__ = ["LimiterStatistics", "RateLimiter", "RejectionListener"]

RejectionListener = Callable[["RateLimiter", float], None]
"""Called as `listener(limiter, retry_after)` each time a request is refused."""

_log: Final = get_logger("lmvisor.runtime.protection")

# Float drift after sleeping exactly the computed wait must not cause another sleep.
_SLACK = 1e-9
# The least reserve() reports when there is room but earlier waiters come first.
_QUEUED_WAIT = 1e-6


class _ClockedBucket(AsyncLimiter):
    """aiolimiter's leaky bucket with time read from a `Clock` instead of the loop."""

    __slots__ = ("_clock",)

    def __init__(self, max_rate: float, time_period: float, clock: Clock) -> None:
        super().__init__(max_rate, time_period)
        self._clock = clock

    def _leak(self) -> None:
        now = self._clock.monotonic()
        if self._level:
            elapsed = now - self._last_check
            self._level = max(self._level - elapsed * self._rate_per_sec, 0.0)
        self._last_check = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` fits (0.0 if it fits now); takes nothing."""
        self._leak()
        overflow = self._level + amount - self.max_rate
        return overflow / self._rate_per_sec if overflow > _SLACK else 0.0

    def take(self, amount: float) -> None:
        self._level += amount

    def resize(self, max_rate: float, time_period: float) -> None:
        """New bounds; the capacity in use stays in use (it drains at the new rate)."""
        self._leak()
        self.max_rate, self.time_period = max_rate, time_period
        self._rate_per_sec = max_rate / time_period

    @property
    def level(self) -> float:
        return self._level


def _check_bounds(limit: float, period: float, token_limit: float | None) -> None:
    for field, value in (("limit", limit), ("period", period), ("token_limit", token_limit)):
        if value is not None and not 0 < value < math.inf:
            raise ValueError(f"{field} must be > 0 and finite, got {value!r}")
    if limit < 1:
        # A bucket smaller than one request never admits one: acquire would wait forever.
        raise ValueError(f"limit must be >= 1 (one request), got {limit!r}")


@final
@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """A snapshot of one limiter; levels are the capacity in use now."""

    name: str
    limit: float
    period: float
    token_limit: float | None
    level: float
    token_level: float
    admitted: int
    rejected: int
    waiting: int


@final
class RateLimiter:
    """A request (and optionally token) rate limit for one callee.

    Args:
        name: shown in errors and statistics.
        limit: requests per `period`.
        period: seconds.
        token_limit: weighted tokens per `period`; None means tokens are not limited.
        max_wait: `acquire` raises `RateLimited` at once instead of waiting
            longer than this; None waits as long as it takes.
        clock: time source; the loop's clock by default.

    Raises:
        ValueError: if `limit`, `period` or `token_limit` is not positive and
            finite, `limit` is below 1, or `max_wait` is negative.
    """

    __slots__ = (
        "_admitted",
        "_clock",
        "_lifted",
        "_listeners",
        "_queue",
        "_queued_tokens",
        "_rejected",
        "_requests",
        "_tokens",
        "_waiting",
        "_wake",
        "max_wait",
        "name",
    )

    def __init__(
        self,
        name: str,
        *,
        limit: float,
        period: float = 1.0,
        token_limit: float | None = None,
        max_wait: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        _check_bounds(limit, period, token_limit)
        if max_wait is not None and max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait!r}")
        self.name = name
        self.max_wait = max_wait
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._requests = _ClockedBucket(limit, period, self._clock)
        self._tokens = (
            None if token_limit is None else _ClockedBucket(token_limit, period, self._clock)
        )
        self._queue = asyncio.Lock()
        # Set by `reconfigure` to wake the head waiter, whose sleep was sized by the old rate.
        self._wake: asyncio.Future[None] | None = None
        self._lifted = False
        self._waiting = 0
        self._queued_tokens = 0.0
        self._admitted = 0
        self._rejected = 0
        self._listeners: list[RejectionListener] = []

    def add_rejection_listener(self, listener: RejectionListener) -> Callable[[], None]:
        """Call `listener(limiter, retry_after)` on each refusal; returns a remover.

        A listener that raises is logged and otherwise ignored: the caller
        still gets its `RateLimited`.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def reserve(self, tokens: float = 1) -> float:
        """Take one request and `tokens` tokens if they fit now and nobody is waiting.

        Returns:
            0.0 when taken; otherwise the estimated seconds to wait (behind
            any queued waiters), and nothing is taken.

        Raises:
            ValueError: if `tokens` is negative or more than `token_limit`.
        """
        if self._lifted:
            self._admitted += 1
            return 0.0
        wait = self._wait_for(tokens)
        if self._waiting:
            # Waiters are served first, so this request fits only after theirs.
            return max(self._wait_behind_queue(tokens), _QUEUED_WAIT)
        if wait == 0.0:
            self._take(tokens)
            self._admitted += 1
        return wait

    def try_acquire(self, tokens: float = 1) -> None:
        """Take capacity now or fail without waiting.

        Raises:
            RateLimited: carrying `retry_after`, the seconds until it would fit.
            ValueError: if `tokens` is negative or more than `token_limit`.
        """
        wait = self.reserve(tokens)
        if wait > 0:
            raise self._reject(wait)

    async def acquire(self, tokens: float = 1) -> None:
        """Take capacity, waiting (in arrival order) until it fits.

        On cancellation nothing is taken and the queue moves on.

        Raises:
            RateLimited: if the wait would exceed `max_wait`.
            ValueError: if `tokens` is negative or more than `token_limit`.
        """
        wait = self.reserve(tokens)
        if wait == 0.0:
            return
        if self.max_wait is not None and wait > self.max_wait:
            raise self._reject(wait)
        self._waiting += 1
        self._queued_tokens += tokens
        try:
            async with self._queue:
                # Fitted on every pass: `reconfigure` may shrink the bucket below a request
                # queued before it, which then takes the whole new bucket.
                while not self._lifted and (wait := self._wait_for(self._fitted(tokens))) > 0:
                    await self._sleep(wait)
                if not self._lifted:
                    self._take(self._fitted(tokens))
        finally:
            self._waiting -= 1
            self._queued_tokens -= tokens
        self._admitted += 1

    def reconfigure(self, *, limit: float, period: float, token_limit: float | None) -> None:
        """Take new bounds now, keeping the capacity in use and every waiter in its place.

        Waiting callers are re-timed against the new bounds (a raised limit lets them
        through at once, where a replaced limiter kept them at the old rate). Tokens
        already taken from a token bucket that is dropped are forgotten. A lifted
        limiter (`lift`) limits again.

        Raises:
            ValueError: as the constructor does for these bounds (nothing changes).
        """
        _check_bounds(limit, period, token_limit)
        self._lifted = False
        self._requests.resize(limit, period)
        if token_limit is None:
            self._tokens = None
        elif self._tokens is None:
            self._tokens = _ClockedBucket(token_limit, period, self._clock)
        else:
            self._tokens.resize(token_limit, period)
        self._wake_waiter()

    def lift(self) -> None:
        """Stop limiting: every waiting caller passes now, and so does every later one,
        until `reconfigure` sets limits again (its entry was removed from the config,
        and the limiter is held by callers that cannot drop it)."""
        self._lifted = True
        self._wake_waiter()

    def _wake_waiter(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _sleep(self, seconds: float) -> None:
        """The clock's sleep, cut short by `reconfigure`."""
        clock = self._clock
        deadline = clock.monotonic() + seconds

        async def until_deadline() -> None:
            # Measured from now, not from when the task first runs: time may move between.
            await clock.sleep(deadline - clock.monotonic())

        wake = self._wake = asyncio.get_running_loop().create_future()
        sleep = asyncio.ensure_future(until_deadline())
        try:
            await asyncio.wait((sleep, wake), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            if self._wake is wake:
                self._wake = None

    def statistics(self) -> LimiterStatistics:
        """A snapshot of levels and counters."""
        requests, tokens = self._requests, self._tokens
        requests.wait_for(0)
        if tokens is not None:
            tokens.wait_for(0)
        return LimiterStatistics(
            name=self.name,
            limit=requests.max_rate,
            period=requests.time_period,
            token_limit=None if tokens is None else tokens.max_rate,
            level=requests.level,
            token_level=0.0 if tokens is None else tokens.level,
            admitted=self._admitted,
            rejected=self._rejected,
            waiting=self._waiting,
        )

    @property
    def token_limit(self) -> float | None:
        """Tokens per period now (None: tokens are not limited); `reconfigure` changes it."""
        tokens = self._tokens
        return None if tokens is None or self._lifted else tokens.max_rate

    def _fitted(self, tokens: float) -> float:
        bucket = self._tokens
        return tokens if bucket is None or tokens <= bucket.max_rate else bucket.max_rate

    def _wait_for(self, tokens: float) -> float:
        wait = self._requests.wait_for(1)
        bucket = self._tokens
        if bucket is not None:
            if not 0 <= tokens <= bucket.max_rate:
                limit = bucket.max_rate
                raise ValueError(f"tokens must be between 0 and {limit!r}, got {tokens!r}")
            wait = max(wait, bucket.wait_for(tokens))
        elif tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens!r}")
        return wait

    def _wait_behind_queue(self, tokens: float) -> float:
        wait = self._requests.wait_for(1 + self._waiting)
        if self._tokens is not None:
            wait = max(wait, self._tokens.wait_for(tokens + self._queued_tokens))
        return wait

    def _take(self, tokens: float) -> None:
        self._requests.take(1)
        if self._tokens is not None:
            self._tokens.take(tokens)

    def _reject(self, wait: float) -> RateLimited:
        self._rejected += 1
        for listener in tuple(self._listeners):
            try:
                listener(self, wait)
            except Exception as exc:
                _log.error("limiter listener failed", limiter=self.name, error=exc, exc_info=exc)
        return RateLimited(name=self.name, retry_after=wait)

    def __repr__(self) -> str:
        return (
            f"RateLimiter({self.name!r}, level={self._requests.level:.3g}/"
            f"{self._requests.max_rate:g} per {self._requests.time_period:g}s, "
            f"waiting={self._waiting})"
        )
