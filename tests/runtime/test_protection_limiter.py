"""Tests for lmvisor.runtime.protection.limiter."""

from __future__ import annotations

import asyncio
import math

import pytest

from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.errors import RateLimited
from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.protection.limiter import RateLimiter
from tests.runtime._protection_helpers import until


class TestAdmission:
    def test_admits_limit_per_period_and_no_more(self) -> None:
        """A burst of `limit` passes, the next is refused with its wait, then one per drain step."""
        clock = MockClock()
        limiter = RateLimiter("api", limit=5, period=1.0, clock=clock)
        for _ in range(5):
            limiter.try_acquire()
        with pytest.raises(RateLimited, match=r"^rate limit 'api' reached; retry in 0\.200s$") as e:
            limiter.try_acquire()
        assert e.value.retry_after == pytest.approx(0.2)
        clock.advance(0.2)
        limiter.try_acquire()
        with pytest.raises(RateLimited):
            limiter.try_acquire()

    def test_full_period_refills(self) -> None:
        """After a whole period the full burst is available again."""
        clock = MockClock()
        limiter = RateLimiter("api", limit=3, period=2.0, clock=clock)
        for _ in range(3):
            limiter.try_acquire()
        clock.advance(2.0)
        for _ in range(3):
            limiter.try_acquire()
        with pytest.raises(RateLimited):
            limiter.try_acquire()

    def test_long_run_rate_is_the_limit(self) -> None:
        """Under constant demand, t seconds admit at most limit + limit * t / period requests."""
        clock = MockClock()
        limiter = RateLimiter("api", limit=10, period=1.0, clock=clock)
        admitted = 0
        for _ in range(1000):
            while limiter.reserve() == 0.0:
                admitted += 1
            clock.advance(0.01)
        assert 10 + 10 * 9.99 - 1 <= admitted <= 10 + 10 * 10.0

    def test_token_budget(self) -> None:
        """Weighted tokens are limited per period alongside requests."""
        clock = MockClock()
        limiter = RateLimiter("api", limit=100, period=1.0, token_limit=1000, clock=clock)
        limiter.try_acquire(tokens=600)
        with pytest.raises(RateLimited) as info:
            limiter.try_acquire(tokens=600)
        assert info.value.retry_after == pytest.approx(0.2)
        limiter.try_acquire(tokens=400)

    def test_all_or_nothing(self) -> None:
        """A refused request takes neither a request nor tokens."""
        clock = MockClock()
        limiter = RateLimiter("api", limit=2, period=1.0, token_limit=10, clock=clock)
        limiter.try_acquire(tokens=10)
        with pytest.raises(RateLimited):
            limiter.try_acquire(tokens=1)
        stats = limiter.statistics()
        assert (stats.level, stats.token_level, stats.admitted, stats.rejected) == (1, 10, 1, 1)

    def test_reserve_reports_wait_without_taking(self) -> None:
        """reserve() returns 0.0 when it takes, else the wait, taking nothing."""
        clock = MockClock()
        limiter = RateLimiter("api", limit=1, period=1.0, clock=clock)
        assert limiter.reserve() == 0.0
        assert limiter.reserve() == pytest.approx(1.0)
        assert limiter.statistics().level == 1


class TestWaiting:
    async def test_acquire_waits_for_room(self) -> None:
        """acquire() sleeps on the clock until the request fits."""
        clock = MockClock()
        limiter = RateLimiter("api", limit=1, period=1.0, clock=clock)
        await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await until(lambda: clock.sleepers == 1)
        assert not waiter.done()
        clock.advance(1.0)
        await waiter
        assert limiter.statistics().admitted == 2

    async def test_waiters_keep_arrival_order(self) -> None:
        """Waiters are served first come, first served, and newcomers queue behind them."""
        clock = MockClock()
        limiter = RateLimiter("api", limit=1, period=1.0, clock=clock)
        limiter.try_acquire()
        order: list[int] = []

        async def take(n: int) -> None:
            await limiter.acquire()
            order.append(n)

        tasks = [asyncio.create_task(take(n)) for n in range(3)]
        await until(lambda: limiter.statistics().waiting == 3)
        with pytest.raises(RateLimited):
            limiter.try_acquire()
        for expected in range(1, 4):
            clock.advance(1.0)
            await until(lambda n=expected: len(order) == n)  # type: ignore[misc]
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2]

    async def test_max_wait_fails_fast(self) -> None:
        """With max_wait, a wait longer than allowed raises RateLimited at once."""
        clock = MockClock()
        limiter = RateLimiter("api", limit=1, period=10.0, max_wait=1.0, clock=clock)
        await limiter.acquire()
        with pytest.raises(RateLimited) as info:
            await limiter.acquire()
        assert info.value.retry_after == pytest.approx(10.0)

    async def test_max_wait_counts_the_queue_ahead(self) -> None:
        """A newcomer's wait includes the waiters ahead of it, so max_wait is never overrun."""
        clock = MockClock()
        limiter = RateLimiter("api", limit=1, period=1.0, max_wait=1.0, clock=clock)
        await limiter.acquire()
        queued = asyncio.create_task(limiter.acquire())
        await until(lambda: clock.sleepers == 1)
        newcomer = asyncio.create_task(limiter.acquire())
        await until(newcomer.done)
        with pytest.raises(RateLimited) as info:
            await newcomer
        assert info.value.retry_after == pytest.approx(2.0)
        with pytest.raises(RateLimited) as refused:
            limiter.try_acquire()
        assert refused.value.retry_after == pytest.approx(2.0)
        clock.advance(1.0)
        await queued
        assert limiter.statistics().waiting == 0

    async def test_cancelled_waiter_takes_nothing(self) -> None:
        """A cancelled acquire leaves the queue and takes no capacity."""
        clock = MockClock()
        limiter = RateLimiter("api", limit=1, period=1.0, clock=clock)
        limiter.try_acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await until(lambda: clock.sleepers == 1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        clock.advance(1.0)
        limiter.try_acquire()
        assert limiter.statistics().waiting == 0


class TestObservation:
    def test_rejection_listener(self) -> None:
        """Rejection listeners get the limiter and the wait."""
        limiter = RateLimiter("api", limit=1, period=1.0, clock=MockClock())
        seen: list[tuple[str, float]] = []
        limiter.add_rejection_listener(lambda lim, wait: seen.append((lim.name, wait)))
        limiter.try_acquire()
        with pytest.raises(RateLimited):
            limiter.try_acquire()
        assert seen == [("api", pytest.approx(1.0))]
        assert "RateLimiter('api'" in repr(limiter)

    def test_failing_listener_still_refuses_with_rate_limited(self) -> None:
        """A rejection listener that raises is logged; the caller still gets RateLimited."""
        limiter = RateLimiter("api", limit=1, period=1.0, clock=MockClock())

        def broken(lim: RateLimiter, wait: float) -> None:
            raise RuntimeError("listener bug")

        limiter.add_rejection_listener(broken)
        limiter.try_acquire()
        with capture_logs() as logs, pytest.raises(RateLimited):
            limiter.try_acquire()
        assert [(e["event"], e["limiter"]) for e in logs] == [("limiter listener failed", "api")]
        assert limiter.statistics().rejected == 1


class TestValidation:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"limit": 0}, r"^limit must be > 0 and finite, got 0$"),
            ({"limit": 1, "period": -1.0}, r"^period must be > 0 and finite, got -1\.0$"),
            ({"limit": 1, "token_limit": 0}, r"^token_limit must be > 0 and finite, got 0$"),
            ({"limit": math.inf}, r"^limit must be > 0 and finite, got inf$"),
            ({"limit": 1, "period": math.nan}, r"^period must be > 0 and finite, got nan$"),
            ({"limit": 0.5}, r"^limit must be >= 1 \(one request\), got 0\.5$"),
            ({"limit": 1, "max_wait": -1.0}, r"^max_wait must be >= 0, got -1\.0$"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, float], message: str) -> None:
        """Bad limits are rejected at construction with the field named."""
        with pytest.raises(ValueError, match=message):
            RateLimiter("api", **kwargs)  # type: ignore[arg-type]

    def test_tokens_beyond_budget(self) -> None:
        """Asking for more tokens than a whole period allows can never succeed."""
        limiter = RateLimiter("api", limit=1, token_limit=10, clock=MockClock())
        with pytest.raises(ValueError, match=r"^tokens must be between 0 and 10, got 11$"):
            limiter.try_acquire(tokens=11)

    def test_negative_tokens(self) -> None:
        """Negative token counts are refused."""
        limiter = RateLimiter("api", limit=1, clock=MockClock())
        with pytest.raises(ValueError, match=r"^tokens must be >= 0, got -1$"):
            limiter.try_acquire(tokens=-1)


class TestReconfigure:
    async def test_a_raised_limit_lets_waiters_through_at_once(self) -> None:
        """Waiters sleeping out the old rate (1 per 60 s) are re-timed by a raised limit and
        all pass without time moving, in arrival order."""
        clock = MockClock()
        limiter = RateLimiter("api", limit=1, period=60.0, clock=clock)
        limiter.try_acquire()
        order: list[int] = []

        async def take(n: int) -> None:
            await limiter.acquire()
            order.append(n)

        tasks = [asyncio.create_task(take(n)) for n in range(100)]
        await until(lambda: limiter.statistics().waiting == 100 and clock.sleepers == 1)
        limiter.reconfigure(limit=1000, period=60.0, token_limit=None)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
        assert order == list(range(100))
        stats = limiter.statistics()
        assert (stats.limit, stats.admitted, stats.waiting) == (1000, 101, 0)

    async def test_a_waiter_queued_above_a_shrunk_bucket_takes_the_whole_bucket(self) -> None:
        """A request queued for 500 tokens when the bucket shrinks to 100 waits for the whole
        new bucket and passes (it raised ValueError out of `acquire`); `token_limit` reads
        the current bound (None once lifted)."""
        clock = MockClock()
        limiter = RateLimiter("api", limit=1, period=60.0, token_limit=1000, clock=clock)
        limiter.try_acquire(1)
        waiter = asyncio.create_task(limiter.acquire(500))
        await until(lambda: limiter.statistics().waiting == 1 and clock.sleepers == 1)
        limiter.reconfigure(limit=1, period=60.0, token_limit=100)
        assert limiter.token_limit == 100
        clock.advance(60.0)
        await asyncio.wait_for(waiter, timeout=5)
        stats = limiter.statistics()
        assert (stats.admitted, stats.token_level) == (2, 100.0)
        limiter.lift()
        assert limiter.token_limit is None

    async def test_a_lowered_limit_keeps_the_capacity_in_use(self) -> None:
        """Capacity taken under the old limit stays taken: a lower limit refuses at once."""
        limiter = RateLimiter("api", limit=10, period=1.0, clock=MockClock())
        for _ in range(3):
            limiter.try_acquire()
        limiter.reconfigure(limit=2, period=1.0, token_limit=None)
        with pytest.raises(RateLimited, match=r"^rate limit 'api' reached; retry in 1\.000s$"):
            limiter.try_acquire()

    async def test_a_token_bucket_is_added_and_dropped(self) -> None:
        """token_limit set later bounds tokens from then on; None stops counting them."""
        limiter = RateLimiter("api", limit=100, period=1.0, clock=MockClock())
        limiter.reconfigure(limit=100, period=1.0, token_limit=10)
        limiter.try_acquire(tokens=10)
        with pytest.raises(RateLimited):
            limiter.try_acquire(tokens=1)
        limiter.reconfigure(limit=100, period=1.0, token_limit=None)
        limiter.try_acquire(tokens=1_000)
        assert limiter.statistics().token_limit is None

    @pytest.mark.parametrize(
        ("limit", "period", "message"),
        [
            (0, 1.0, r"^limit must be > 0 and finite, got 0$"),
            (math.nan, 1.0, r"^limit must be > 0 and finite, got nan$"),
            (0.5, 1.0, r"^limit must be >= 1 \(one request\), got 0\.5$"),
            (1, math.inf, r"^period must be > 0 and finite, got inf$"),
        ],
    )
    async def test_bad_bounds_are_refused_and_change_nothing(
        self, limit: float, period: float, message: str
    ) -> None:
        """Bounds the constructor refuses are a ValueError; the old bounds stay."""
        limiter = RateLimiter("api", limit=5, period=2.0, clock=MockClock())
        with pytest.raises(ValueError, match=message):
            limiter.reconfigure(limit=limit, period=period, token_limit=None)
        stats = limiter.statistics()
        assert (stats.limit, stats.period) == (5, 2.0)

    async def test_lift_lets_every_waiter_and_later_caller_through(self) -> None:
        """A lifted limiter admits its waiters at once and every later call; reconfigure
        limits again."""
        clock = MockClock()
        limiter = RateLimiter("api", limit=1, period=60.0, clock=clock)
        limiter.try_acquire()
        tasks = [asyncio.create_task(limiter.acquire()) for _ in range(10)]
        await until(lambda: limiter.statistics().waiting == 10 and clock.sleepers == 1)
        limiter.lift()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
        for _ in range(5):
            limiter.try_acquire()
        limiter.reconfigure(limit=1, period=60.0, token_limit=None)
        with pytest.raises(RateLimited):
            limiter.try_acquire()
