"""Tests for lmvisor.runtime.protection.breaker."""

from __future__ import annotations

import asyncio
import math

import annotated_types
import pytest

import lmvisor.runtime.protection.breaker as breaker_module
from lmvisor.config.schema import CircuitBreakerConfig
from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.errors import CircuitOpen, RateLimited
from lmvisor.runtime.protection.breaker import BreakerState, CircuitBreaker, counts_as_failure
from tests.runtime._protection_helpers import BadRequest, Flaky, until


async def _ok() -> str:
    return "ok"


async def _flaky() -> str:
    raise Flaky("boom")


async def _bad() -> str:
    raise BadRequest("your fault")


def _breaker(clock: MockClock, **kwargs: int | float) -> CircuitBreaker:
    options: dict[str, int | float] = {"failure_threshold": 2, "recovery_time": 10.0}
    options.update(kwargs)
    return CircuitBreaker("svc", clock=clock, **options)  # type: ignore[arg-type]


async def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Flaky):
            await breaker.call(_flaky)


class TestTransitions:
    async def test_opens_after_consecutive_failures(self) -> None:
        """failure_threshold consecutive failures open the circuit; then calls fail fast."""
        clock = MockClock()
        breaker = _breaker(clock)
        await _fail(breaker, 1)
        assert breaker.state is BreakerState.CLOSED
        await _fail(breaker, 1)
        assert breaker.state is BreakerState.OPEN
        clock.advance(4.0)
        with pytest.raises(CircuitOpen, match=r"^circuit 'svc' is open; retry in 6\.000s$") as info:
            await breaker.call(_ok)
        assert info.value.retry_after == pytest.approx(6.0)

    async def test_success_resets_the_failure_count(self) -> None:
        """Failures must be consecutive: a success in between resets the count."""
        breaker = _breaker(MockClock())
        await _fail(breaker, 1)
        assert await breaker.call(_ok) == "ok"
        await _fail(breaker, 1)
        assert breaker.state is BreakerState.CLOSED

    async def test_half_open_after_recovery_then_closes(self) -> None:
        """After recovery_time a trial call is let through; success_threshold successes close."""
        clock = MockClock()
        breaker = _breaker(clock, success_threshold=2)
        await _fail(breaker, 2)
        clock.advance(10.0)
        assert await breaker.call(_ok) == "ok"
        assert breaker.state is BreakerState.HALF_OPEN
        assert await breaker.call(_ok) == "ok"
        assert breaker.state is BreakerState.CLOSED

    async def test_failed_trial_reopens(self) -> None:
        """A failing trial opens the circuit again for a full recovery_time."""
        clock = MockClock()
        breaker = _breaker(clock)
        await _fail(breaker, 2)
        clock.advance(10.0)
        await _fail(breaker, 1)
        assert breaker.state is BreakerState.OPEN
        clock.advance(9.0)
        with pytest.raises(CircuitOpen):
            await breaker.call(_ok)

    async def test_one_trial_at_a_time(self) -> None:
        """While a half-open trial runs, other calls are refused with retry_after 0."""
        clock = MockClock()
        breaker = _breaker(clock)
        await _fail(breaker, 2)
        clock.advance(10.0)
        gate = asyncio.Event()

        async def slow() -> str:
            await gate.wait()
            return "slow"

        trial = asyncio.create_task(breaker.call(slow))
        await until(lambda: breaker.statistics().trial_in_flight)
        with pytest.raises(CircuitOpen) as info:
            await breaker.call(_ok)
        assert info.value.retry_after == 0.0
        gate.set()
        assert await trial == "slow"
        assert breaker.state is BreakerState.CLOSED

    async def test_cancelled_trial_frees_the_slot(self) -> None:
        """A cancelled trial neither counts nor blocks the next trial."""
        clock = MockClock()
        breaker = _breaker(clock)
        await _fail(breaker, 2)
        clock.advance(10.0)
        trial = asyncio.create_task(breaker.call(asyncio.Event().wait))
        await until(lambda: breaker.statistics().trial_in_flight)
        trial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trial
        assert breaker.state is BreakerState.HALF_OPEN
        assert await breaker.call(_ok) == "ok"
        assert breaker.state is BreakerState.CLOSED

    async def test_late_result_of_closed_call_is_not_a_trial(self) -> None:
        """A call admitted while closed and finishing during half-open does not close it."""
        clock = MockClock()
        breaker = _breaker(clock)
        straggler = breaker.before_call()
        await _fail(breaker, 2)
        clock.advance(10.0)
        trial = breaker.before_call()
        assert (straggler, trial) == (False, True)
        breaker.on_success(straggler)
        assert breaker.state is BreakerState.HALF_OPEN
        assert breaker.statistics().trial_in_flight

    async def test_reset_closes(self) -> None:
        """reset() forces the circuit closed."""
        breaker = _breaker(MockClock())
        await _fail(breaker, 2)
        breaker.reset()
        assert breaker.state is BreakerState.CLOSED
        assert await breaker.call(_ok) == "ok"


class TestPredicate:
    async def test_caller_faults_do_not_count(self) -> None:
        """Non-retryable errors (a 4xx) and protection refusals never open the circuit."""
        breaker = _breaker(MockClock())
        for _ in range(5):
            with pytest.raises(BadRequest):
                await breaker.call(_bad)
        assert breaker.state is BreakerState.CLOSED
        assert breaker.statistics().failures == 0

    def test_default_predicate(self) -> None:
        """counts_as_failure: plain and retryable errors count; the rest do not."""
        assert counts_as_failure(RuntimeError("x"))
        assert counts_as_failure(Flaky("x"))
        assert not counts_as_failure(BadRequest("x"))
        assert not counts_as_failure(RateLimited(name="n", retry_after=1.0))
        assert not counts_as_failure(asyncio.CancelledError())

    async def test_custom_predicate(self) -> None:
        """A custom predicate decides what counts."""
        breaker = CircuitBreaker(
            "svc", failure_threshold=1, clock=MockClock(), is_failure=lambda e: True
        )
        with pytest.raises(BadRequest):
            await breaker.call(_bad)
        assert breaker.state is BreakerState.OPEN


class TestObservation:
    async def test_listeners_see_every_change(self) -> None:
        """Listeners are called with (breaker, old, new) on each state change."""
        clock = MockClock()
        breaker = _breaker(clock)
        seen: list[tuple[str, BreakerState, BreakerState]] = []
        remove = breaker.add_listener(lambda b, old, new: seen.append((b.name, old, new)))
        await _fail(breaker, 2)
        clock.advance(10.0)
        await breaker.call(_ok)
        assert seen == [
            ("svc", BreakerState.CLOSED, BreakerState.OPEN),
            ("svc", BreakerState.OPEN, BreakerState.HALF_OPEN),
            ("svc", BreakerState.HALF_OPEN, BreakerState.CLOSED),
        ]
        remove()
        await _fail(breaker, 2)
        assert len(seen) == 3

    async def test_failing_listener_does_not_break_calls(self) -> None:
        """A listener that raises is logged; the state still changes."""

        def broken(*_: object) -> None:
            raise RuntimeError("listener bug")

        breaker = _breaker(MockClock())
        breaker.add_listener(broken)
        await _fail(breaker, 2)
        assert breaker.state is BreakerState.OPEN

    async def test_statistics(self) -> None:
        """statistics() counts calls, failures, rejections and openings."""
        breaker = _breaker(MockClock())
        await breaker.call(_ok)
        await _fail(breaker, 2)
        with pytest.raises(CircuitOpen):
            await breaker.call(_ok)
        stats = breaker.statistics()
        assert (stats.calls, stats.failures, stats.rejections, stats.times_opened) == (3, 2, 1, 1)
        assert stats.state is BreakerState.OPEN
        assert "state=open" in repr(breaker)


class TestValidation:
    def test_bounds_match_the_config(self) -> None:
        """The constructor's upper bounds are the config's (`CircuitBreakerConfig`), so a
        breaker built either way accepts the same settings."""
        fields = CircuitBreakerConfig.model_fields
        upper = {
            name: next(m.le for m in fields[name].metadata if isinstance(m, annotated_types.Le))
            for name in ("failure_threshold", "success_threshold", "recovery_time")
        }
        assert upper == {
            "failure_threshold": breaker_module._MOST_FAILURES,
            "success_threshold": breaker_module._MOST_SUCCESSES,
            "recovery_time": breaker_module._LONGEST_RECOVERY,
        }

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"failure_threshold": 0}, r"^failure_threshold must be >= 1, got 0$"),
            ({"success_threshold": 0}, r"^success_threshold must be >= 1, got 0$"),
            ({"failure_threshold": 1001}, r"^failure_threshold must be <= 1000, got 1001$"),
            ({"success_threshold": 10**9}, r"^success_threshold must be <= 100, got 1000000000$"),
            ({"recovery_time": 0.0}, r"^recovery_time must be > 0, got 0\.0$"),
            ({"recovery_time": math.inf}, r"^recovery_time must be <= 86400 \(a day\), got inf$"),
            ({"recovery_time": math.nan}, r"^recovery_time must be > 0, got nan$"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, float], message: str) -> None:
        """Bad thresholds are rejected at construction with the field named."""
        with pytest.raises(ValueError, match=message):
            CircuitBreaker("svc", **kwargs)  # type: ignore[arg-type]


class TestReconfigure:
    def test_a_lowered_threshold_opens_at_the_next_failure(self) -> None:
        """Thresholds change in place; the consecutive failures counted so far still count."""
        breaker = CircuitBreaker("api", failure_threshold=5, clock=MockClock())
        for _ in range(2):
            breaker.on_failure(TimeoutError())
        breaker.reconfigure(failure_threshold=1, recovery_time=30.0, success_threshold=1)
        assert breaker.state is BreakerState.CLOSED
        breaker.on_failure(TimeoutError())
        assert breaker.state is BreakerState.OPEN

    def test_an_open_breaker_stays_open_for_the_new_recovery_time(self) -> None:
        """An open breaker keeps its state; the new recovery_time counts from its opening."""
        clock = MockClock()
        breaker = CircuitBreaker("api", failure_threshold=1, recovery_time=600.0, clock=clock)
        breaker.on_failure(TimeoutError())
        breaker.reconfigure(failure_threshold=1, recovery_time=5.0, success_threshold=1)
        clock.advance(5.0)
        assert breaker.before_call() is True
        assert breaker.state is BreakerState.HALF_OPEN

    def test_bad_values_are_refused_and_change_nothing(self) -> None:
        """A threshold of 0 is a ValueError; the old thresholds stay."""
        breaker = CircuitBreaker("api", failure_threshold=5, clock=MockClock())
        with pytest.raises(ValueError, match=r"^failure_threshold must be >= 1, got 0$"):
            breaker.reconfigure(failure_threshold=0, recovery_time=30.0, success_threshold=1)
        assert breaker.failure_threshold == 5
