"""Tests for lmvisor.runtime.protection.pipeline.execute_protected and named Protections."""

from __future__ import annotations

import asyncio

import pytest

from lmvisor.config.schema import (
    CircuitBreakerConfig,
    InfrastructureConfig,
    RateLimiterConfig,
)
from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.errors import BulkheadFull, CircuitOpen, RateLimited, RetryExhausted
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.observe.metrics import Metrics
from lmvisor.runtime.observe.names import BREAKER_STATE_CHANGED, LIMITER_REJECTED
from lmvisor.runtime.protection.breaker import BreakerState, CircuitBreaker
from lmvisor.runtime.protection.bulkhead import Bulkhead
from lmvisor.runtime.protection.limiter import RateLimiter
from lmvisor.runtime.protection.named import Protections
from lmvisor.runtime.protection.pipeline import execute_protected
from lmvisor.runtime.protection.retry import Retry
from tests.runtime._protection_helpers import Flaky, until


async def _ok() -> str:
    return "ok"


async def _flaky() -> str:
    raise Flaky("boom")


class TestExecuteProtected:
    async def test_no_protection_is_a_plain_await(self) -> None:
        """With no stage given, the result comes straight back."""
        assert await execute_protected("k", _ok) == "ok"

    async def test_breaker_records_outcomes(self) -> None:
        """Failures through the pipeline open the breaker, which then refuses calls."""
        breaker = CircuitBreaker("k", failure_threshold=2, clock=MockClock())
        for _ in range(2):
            with pytest.raises(Flaky):
                await execute_protected("k", _flaky, breaker=breaker)
        assert breaker.state is BreakerState.OPEN
        calls = 0

        async def counted() -> str:
            nonlocal calls
            calls += 1
            return "ok"

        with pytest.raises(CircuitOpen):
            await execute_protected("k", counted, breaker=breaker)
        assert calls == 0

    async def test_open_breaker_spends_no_rate_budget(self) -> None:
        """A call refused by the breaker takes nothing from the limiter."""
        clock = MockClock()
        breaker = CircuitBreaker("k", failure_threshold=1, clock=clock)
        limiter = RateLimiter("k", limit=10, clock=clock)
        with pytest.raises(Flaky):
            await execute_protected("k", _flaky, breaker=breaker, limiter=limiter)
        with pytest.raises(CircuitOpen):
            await execute_protected("k", _ok, breaker=breaker, limiter=limiter)
        assert limiter.statistics().admitted == 1

    async def test_limiter_refusal_does_not_count_against_breaker(self) -> None:
        """RateLimited from the limiter is not the callee's failure."""
        clock = MockClock()
        breaker = CircuitBreaker("k", failure_threshold=1, clock=clock)
        limiter = RateLimiter("k", limit=1, period=10.0, max_wait=0.0, clock=clock)
        await execute_protected("k", _ok, breaker=breaker, limiter=limiter)
        with pytest.raises(RateLimited):
            await execute_protected("k", _ok, breaker=breaker, limiter=limiter)
        assert breaker.state is BreakerState.CLOSED

    async def test_limiter_waits_when_allowed(self) -> None:
        """Without max_wait, the call waits on the clock for rate budget."""
        clock = MockClock()
        limiter = RateLimiter("k", limit=1, period=1.0, clock=clock)
        await execute_protected("k", _ok, limiter=limiter)
        task = asyncio.create_task(execute_protected("k", _ok, limiter=limiter))
        await until(lambda: clock.sleepers == 1)
        clock.advance(1.0)
        assert await task == "ok"

    async def test_retry_wraps_breaker(self) -> None:
        """Retry re-asks the breaker each attempt and gives up on a long open circuit."""
        clock = MockClock()
        breaker = CircuitBreaker("k", failure_threshold=2, recovery_time=30.0, clock=clock)
        retry = Retry(max_attempts=5, max_delay=1.0, jitter=0.0, base_delay=0.0, clock=clock)
        with pytest.raises(RetryExhausted, match=r"^k: gave up after 3 attempts") as info:
            await execute_protected("k", _flaky, breaker=breaker, retry=retry)
        assert isinstance(info.value.last_error, CircuitOpen)
        assert breaker.statistics().calls == 2

    async def test_retry_recovers(self) -> None:
        """A transient failure is retried through the pipeline and succeeds."""
        clock = MockClock()
        outcomes = [Flaky("once")]

        async def once() -> str:
            if outcomes:
                raise outcomes.pop()
            return "ok"

        retry = Retry(base_delay=0.0, jitter=0.0, clock=clock)
        assert await execute_protected("k", once, retry=retry) == "ok"

    async def test_bulkhead_is_outermost(self) -> None:
        """The bulkhead refuses before any other stage runs and frees its slot after."""
        bulkhead = Bulkhead("k", max_concurrent=1)
        gate = asyncio.Event()

        async def slow() -> str:
            await gate.wait()
            return "slow"

        task = asyncio.create_task(execute_protected("k", slow, bulkhead=bulkhead))
        await until(lambda: bulkhead.statistics().running == 1)
        breaker = CircuitBreaker("k", clock=MockClock())
        with pytest.raises(BulkheadFull):
            await execute_protected("k", _ok, bulkhead=bulkhead, breaker=breaker)
        assert breaker.statistics().calls == 0
        gate.set()
        assert await task == "slow"
        retry = Retry(clock=MockClock())
        assert await execute_protected("k", _ok, bulkhead=bulkhead, retry=retry) == "ok"
        assert bulkhead.statistics().running == 0

    async def test_tokens_weight_the_limiter(self) -> None:
        """The tokens argument is taken from the limiter's token budget."""
        limiter = RateLimiter("k", limit=10, token_limit=100, clock=MockClock())
        await execute_protected("k", _ok, limiter=limiter, tokens=70)
        assert limiter.statistics().token_level == 70


class TestProtections:
    def _config(self) -> InfrastructureConfig:
        return InfrastructureConfig(
            circuit_breakers={
                "default": CircuitBreakerConfig(failure_threshold=7),
                "openai": CircuitBreakerConfig(failure_threshold=2, recovery_time=5.0),
            },
            rate_limiters={"openai": RateLimiterConfig(limit=3, scale=1.0, tokens=50)},
        )

    def test_named_breakers_from_config(self) -> None:
        """A named entry configures its breaker; other names use the default entry."""
        protections = Protections(self._config(), clock=MockClock())
        openai = protections.breaker("openai")
        assert (openai.failure_threshold, openai.recovery_time) == (2, 5.0)
        assert protections.breaker("other").failure_threshold == 7
        assert protections.breaker("openai") is openai
        assert set(protections.breakers) == {"openai", "other"}

    def test_breaker_without_default_entry(self) -> None:
        """With no default entry, unconfigured names get the schema's defaults."""
        protections = Protections(InfrastructureConfig(circuit_breakers={}), clock=MockClock())
        assert protections.breaker("x").failure_threshold == 5

    def test_named_limiters_from_config(self) -> None:
        """A limiter exists only for configured names, with the configured budget."""
        protections = Protections(self._config(), clock=MockClock())
        limiter = protections.limiter("openai")
        assert limiter is not None
        stats = limiter.statistics()
        assert (stats.limit, stats.period, stats.token_limit) == (3, 1.0, 50)
        assert protections.limiter("anthropic") is None
        assert protections.limiter("openai") is limiter
        assert set(protections.limiters) == {"openai"}

    async def test_listeners_reach_present_and_future(self) -> None:
        """Listeners attach to protections built before and after they are added."""
        clock = MockClock()
        protections = Protections(self._config(), clock=clock)
        early = protections.breaker("openai")
        changes: list[str] = []
        rejections: list[str] = []
        protections.add_breaker_listener(lambda b, old, new: changes.append(b.name))
        protections.add_rejection_listener(lambda lim, wait: rejections.append(lim.name))
        late = protections.breaker("late")
        for breaker in (early, late):
            for _ in range(breaker.failure_threshold):
                with pytest.raises(Flaky):
                    await breaker.call(_flaky)
        assert changes == ["openai", "late"]
        limiter = protections.limiter("openai")
        assert limiter is not None
        for _ in range(3):
            limiter.try_acquire()
        with pytest.raises(RateLimited):
            limiter.try_acquire()
        assert rejections == ["openai"]
        assert "openai" in repr(protections)

    async def test_observe_feeds_metrics_and_events(self) -> None:
        """observe() sets the breaker gauge, counts rejections and emits events for both."""
        protections = Protections(self._config(), clock=MockClock())
        metrics = Metrics()
        ring = EventRing(100, namespace="ns")
        protections.observe(metrics=metrics, events=ring)
        breaker = protections.breaker("openai")
        with capture_logs() as logs:
            for _ in range(2):
                with pytest.raises(Flaky):
                    await breaker.call(_flaky)
            limiter = protections.limiter("openai")
            assert limiter is not None
            for _ in range(3):
                limiter.try_acquire()
            with pytest.raises(RateLimited):
                limiter.try_acquire()
        # the breaker opening is also a warning line; refusals are counted, not logged
        assert [(e["event"], e["log_level"], e["new"]) for e in logs] == [
            (BREAKER_STATE_CHANGED, "warning", "open")
        ]
        assert metrics.value("lmvisor_circuit_breaker_state", breaker="openai") == 2
        assert metrics.value("lmvisor_rate_limiter_rejections_total", limiter="openai") == 1
        changed = ring.query(type=BREAKER_STATE_CHANGED)
        assert [dict(e.data) for e in changed] == [
            {"breaker": "openai", "old": "closed", "new": "open"}
        ]
        [rejected] = ring.query(type=LIMITER_REJECTED)
        assert rejected.data["limiter"] == "openai"
