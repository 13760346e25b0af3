"""Tests for lmvisor.runtime.protection.retry."""

from __future__ import annotations

import asyncio

import pytest

from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.errors import RetryExhausted
from lmvisor.runtime.protection.retry import Retry, is_retryable
from tests.runtime._protection_helpers import BadRequest, Flaky, Throttled, until


class _Script:
    """Raises the given errors in turn, then returns 'done'."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


async def _run_with_clock(clock: MockClock, retry: Retry, script: _Script) -> str:
    """Run `retry.call(script)`, advancing the clock past each backoff sleep."""
    task = asyncio.create_task(retry.call(script))
    while not task.done():
        await until(lambda: task.done() or clock.sleepers > 0)
        if clock.sleepers:
            clock.advance(100.0)
    return await task


class TestRetry:
    async def test_retries_until_success(self) -> None:
        """Retryable errors are retried until the call succeeds."""
        clock = MockClock()
        script = _Script(Flaky("1"), Flaky("2"))
        retry = Retry(max_attempts=3, clock=clock, random=lambda: 0.0)
        assert await _run_with_clock(clock, retry, script) == "done"
        assert script.calls == 3
        assert retry.statistics().retries == 2

    async def test_non_retryable_raises_at_once(self) -> None:
        """A non-retryable error propagates unchanged without another attempt."""
        script = _Script(BadRequest("nope"))
        with pytest.raises(BadRequest):
            await Retry(clock=MockClock()).call(script)
        assert script.calls == 1

    async def test_exhausted(self) -> None:
        """After max_attempts retryable failures, RetryExhausted chains the last error."""
        clock = MockClock()
        last = Flaky("3")
        retry = Retry(max_attempts=3, clock=clock, random=lambda: 0.0)
        with pytest.raises(RetryExhausted, match=r"^lm: gave up after 3 attempts: 3$") as info:
            task = asyncio.create_task(retry.call(_Script(Flaky("1"), Flaky("2"), last), key="lm"))
            while not task.done():
                await until(lambda: task.done() or clock.sleepers > 0)
                if clock.sleepers:
                    clock.advance(100.0)
            await task
        assert info.value.last_error is last
        assert info.value.__cause__ is last
        assert retry.statistics().exhausted == 1

    async def test_retry_after_too_long_gives_up(self) -> None:
        """A retry_after hint beyond max_delay ends retries without sleeping."""
        clock = MockClock()
        script = _Script(Throttled(60.0))
        with pytest.raises(RetryExhausted) as info:
            await Retry(max_delay=10.0, clock=clock).call(script)
        assert info.value.attempts == 1
        assert clock.sleepers == 0

    async def test_sleeps_through_the_clock(self) -> None:
        """The backoff sleep is on the injected clock and lasts the computed delay."""
        clock = MockClock()
        retry = Retry(base_delay=1.0, jitter=0.0, clock=clock)
        task = asyncio.create_task(retry.call(_Script(Flaky("1"))))
        await until(lambda: clock.sleepers == 1)
        clock.advance(0.999)
        await asyncio.sleep(0)
        assert not task.done()
        clock.advance(0.001)
        assert await task == "done"


class TestDelay:
    def test_exponential_and_capped(self) -> None:
        """Delays grow by the multiplier and stop at max_delay."""
        retry = Retry(base_delay=1.0, multiplier=2.0, max_delay=5.0, jitter=0.0)
        error = Flaky("x")
        assert [retry.delay(n, error) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]

    def test_a_thousand_attempts_in_stays_at_the_cap(self) -> None:
        """Past the attempt where the multiplier's power leaves the floats (OverflowError
        escaped a vendor call with max_retries in the thousands), the delay stays capped,
        and a zero base delay stays zero."""
        retry = Retry(max_attempts=10**9, base_delay=1.0, max_delay=5.0, jitter=0.0)
        assert [retry.delay(n, Flaky("x")) for n in (1100, 10**8)] == [5.0, 5.0]
        assert Retry(base_delay=0.0, max_delay=0.0, jitter=0.0).delay(5000, Flaky("x")) == 0.0

    def test_jitter_takes_a_fraction_off(self) -> None:
        """Jitter takes up to `jitter` of the backoff away."""
        retry = Retry(base_delay=4.0, jitter=0.5, random=lambda: 1.0)
        assert retry.delay(1, Flaky("x")) == 2.0

    def test_retry_after_is_a_floor(self) -> None:
        """A retry_after hint within max_delay is waited at least."""
        retry = Retry(base_delay=0.1, jitter=0.0, max_delay=10.0)
        assert retry.delay(1, Throttled(3.0)) == 3.0

    def test_default_predicate(self) -> None:
        """is_retryable reads the error's retryable flag, False when absent."""
        assert is_retryable(Flaky("x"))
        assert not is_retryable(BadRequest("x"))
        assert not is_retryable(ValueError("x"))

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"max_attempts": 0}, r"^max_attempts must be >= 1, got 0$"),
            ({"base_delay": -1.0}, r"^delays must be >= 0, got -1\.0 and 10\.0$"),
            ({"multiplier": 0.5}, r"^multiplier must be >= 1, got 0\.5$"),
            ({"jitter": 2.0}, r"^jitter must be between 0 and 1, got 2\.0$"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, float], message: str) -> None:
        """Bad policies are rejected at construction with the field named."""
        with pytest.raises(ValueError, match=message):
            Retry(**kwargs)  # type: ignore[arg-type]
