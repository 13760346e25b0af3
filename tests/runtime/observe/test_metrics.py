"""Tests for lmvisor.runtime.observe.metrics.Metrics."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from prometheus_client import Counter

from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.errors import RateLimited
from lmvisor.runtime.observe.metrics import MAX_LM_SERIES, OTHER_MODEL, Metrics, RuntimeFigures
from lmvisor.runtime.protection.breaker import CircuitBreaker
from lmvisor.runtime.protection.limiter import RateLimiter


class TestIsolation:
    def test_two_instances_never_clash(self) -> None:
        """Two Metrics build the same families and keep their figures apart."""
        first, second = Metrics(), Metrics()
        first.cache("l1").hits += 3
        second.cache("l1").hits += 1
        assert first.value("lmvisor_cache_hits_total", layer="l1") == 3
        assert second.value("lmvisor_cache_hits_total", layer="l1") == 1
        assert 'lmvisor_cache_hits_total{layer="l1"} 3.0' in first.render()
        assert 'lmvisor_cache_hits_total{layer="l1"} 1.0' in second.render()

    def test_name_clash_within_one_registry_is_refused(self) -> None:
        """Registering a family twice in the same registry fails loudly."""
        metrics = Metrics()
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            Counter("lmvisor_cache_hits", "again", ["layer"], registry=metrics.registry)


class TestFamilies:
    def test_every_family_is_exposed_under_the_prefix(self) -> None:
        """render() exposes each documented family under lmvisor_."""
        text = Metrics().render()
        for name in (
            "lmvisor_module_execution_seconds",
            "lmvisor_module_success_total",
            "lmvisor_module_errors_total",
            "lmvisor_lm_request_seconds",
            "lmvisor_lm_tokens_total",
            "lmvisor_lm_cost_usd_total",
            "lmvisor_optimization_iterations_total",
            "lmvisor_optimization_score",
            "lmvisor_optimization_seconds",
            "lmvisor_circuit_breaker_state",
            "lmvisor_rate_limiter_rejections_total",
            "lmvisor_cache_hits_total",
            "lmvisor_cache_misses_total",
            "lmvisor_actors_alive",
            "lmvisor_supervisor_restarts_total",
            "lmvisor_mailbox_depth",
        ):
            assert f"# TYPE {name.removesuffix('_total')}" in text, name

    def test_record_module(self) -> None:
        """record_module observes the duration and counts success or error by code."""
        metrics = Metrics()
        metrics.record_module("qa", 0.5)
        metrics.record_module("qa", 1.5, error="lm_timeout")
        assert metrics.value("lmvisor_module_execution_seconds_count", module="qa") == 2
        assert metrics.value("lmvisor_module_execution_seconds_sum", module="qa") == 2.0
        assert metrics.value("lmvisor_module_success_total", module="qa") == 1
        assert metrics.value("lmvisor_module_errors_total", module="qa", error="lm_timeout") == 1

    def test_record_lm_usage(self) -> None:
        """record_lm_usage adds prompt and completion tokens and cost."""
        metrics = Metrics()
        metrics.record_lm_usage("openai", "m", prompt_tokens=10, completion_tokens=5, cost=0.25)
        labels = {"provider": "openai", "model": "m"}
        assert metrics.value("lmvisor_lm_tokens_total", kind="prompt", **labels) == 10
        assert metrics.value("lmvisor_lm_tokens_total", kind="completion", **labels) == 5
        assert metrics.value("lmvisor_lm_cost_usd_total", **labels) == 0.25


class TestLMFigures:
    def test_recorded_calls_are_exposed_as_the_lm_families(self) -> None:
        """lm(...).record fills the request histogram, the token and the cost counters."""
        metrics = Metrics()
        figures = metrics.lm("openai", "m")
        assert metrics.lm("openai", "m") is figures
        figures.record(0.004, 10, 5, None)
        figures.record(0.1, 1, 2, 0.5)
        figures.record(100.0, 0, 0, 0.0)
        labels = {"provider": "openai", "model": "m"}
        seconds = "lmvisor_lm_request_seconds"
        assert metrics.value(f"{seconds}_count", **labels) == 3
        assert metrics.value(f"{seconds}_sum", **labels) == 100.104
        assert metrics.value(f"{seconds}_bucket", le="0.005", **labels) == 1
        assert metrics.value(f"{seconds}_bucket", le="0.05", **labels) == 1
        assert metrics.value(f"{seconds}_bucket", le="0.1", **labels) == 2
        assert metrics.value(f"{seconds}_bucket", le="60.0", **labels) == 2
        assert metrics.value(f"{seconds}_bucket", le="+Inf", **labels) == 3
        assert metrics.value("lmvisor_lm_tokens_total", kind="prompt", **labels) == 11
        assert metrics.value("lmvisor_lm_tokens_total", kind="completion", **labels) == 7
        assert metrics.value("lmvisor_lm_cost_usd_total", **labels) == 0.5

    def test_unpriced_model_has_no_cost_series(self) -> None:
        """A model whose calls were never priced shows tokens, and no cost series."""
        metrics = Metrics()
        metrics.lm("local", "llama3").record(0.2, 3, 4, None)
        labels = {"provider": "local", "model": "llama3"}
        assert metrics.value("lmvisor_lm_tokens_total", kind="prompt", **labels) == 3
        assert metrics.value("lmvisor_lm_cost_usd_total", **labels) is None
        text = metrics.render()
        assert (
            'lmvisor_lm_request_seconds_bucket{le="0.25",model="llama3",provider="local"} 1.0'
            in text
        )

    def test_models_past_the_bound_are_counted_as_other(self) -> None:
        """Past MAX_LM_SERIES (provider, model) pairs, new models share one "other" series."""
        metrics = Metrics()
        for i in range(MAX_LM_SERIES + 500):
            metrics.lm("openai", f"m{i}").record(0.1, 1, 1, None)
        assert metrics.lm("openai", "m0") is not metrics.lm("openai", OTHER_MODEL)
        labels = {"provider": "openai", "model": OTHER_MODEL}
        assert metrics.value("lmvisor_lm_request_seconds_count", **labels) == 500
        assert metrics.render().count("lmvisor_lm_request_seconds_count{") == MAX_LM_SERIES + 1

    def test_the_bound_is_per_provider(self) -> None:
        """One provider past its bound (a gateway naming a new model per answer) leaves
        another provider's new models their own series."""
        metrics = Metrics()
        for i in range(MAX_LM_SERIES + 10):
            metrics.lm("gateway", f"m{i}")
        assert metrics.lm("openai", "gpt-4o-mini") is not metrics.lm("openai", OTHER_MODEL)
        assert metrics.lm("gateway", "new") is metrics.lm("gateway", OTHER_MODEL)

    def test_an_overlong_model_name_is_counted_as_other(self) -> None:
        """A model name over 256 characters (a vendor's report) is no label of its own."""
        metrics = Metrics()
        assert metrics.lm("openai", "m" * 257) is metrics.lm("openai", OTHER_MODEL)
        assert metrics.lm("openai", "m" * 256) is not metrics.lm("openai", OTHER_MODEL)

    def test_lm_family_names_cannot_be_registered_twice(self) -> None:
        """The LM families are registered: another family of the same name is refused."""
        metrics = Metrics()
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            Counter("lmvisor_lm_tokens", "again", ["provider"], registry=metrics.registry)


class TestModuleFigures:
    def test_recorded_executions_are_exposed_as_the_module_families(self) -> None:
        """module(...).record fills the duration histogram and counts successes and errors."""
        metrics = Metrics()
        figures = metrics.module("qa")
        assert metrics.module("qa") is figures
        figures.record(0.004)
        figures.record(0.2, "lm_timeout")
        figures.record(100.0, "lm_timeout")
        seconds = "lmvisor_module_execution_seconds"
        assert metrics.value(f"{seconds}_count", module="qa") == 3
        assert metrics.value(f"{seconds}_sum", module="qa") == 100.204
        assert metrics.value(f"{seconds}_bucket", le="0.005", module="qa") == 1
        assert metrics.value(f"{seconds}_bucket", le="0.25", module="qa") == 2
        assert metrics.value(f"{seconds}_bucket", le="+Inf", module="qa") == 3
        assert metrics.value("lmvisor_module_success_total", module="qa") == 1
        errors = "lmvisor_module_errors_total"
        assert metrics.value(errors, module="qa", error="lm_timeout") == 2

    def test_a_bound_module_shows_zeros_before_its_first_execution(self) -> None:
        """Binding a module's figures (at registration) exposes its series at 0, no errors."""
        metrics = Metrics()
        metrics.module("idle")
        text = metrics.render()
        assert 'lmvisor_module_success_total{module="idle"} 0.0' in text
        assert 'lmvisor_module_execution_seconds_count{module="idle"} 0.0' in text
        assert "lmvisor_module_errors_total{" not in text

    def test_a_forgotten_module_has_no_series(self) -> None:
        """forget_module drops the module's series; forgetting an unknown one is a no-op."""
        metrics = Metrics()
        metrics.module("gone").record(0.1, "lm_timeout")
        metrics.module("kept")
        metrics.forget_module("gone")
        metrics.forget_module("never")
        text = metrics.render()
        assert 'module="gone"' not in text
        assert 'lmvisor_module_success_total{module="kept"} 0.0' in text

    def test_module_family_names_cannot_be_registered_twice(self) -> None:
        """The module families are registered: another family of the same name is refused."""
        metrics = Metrics()
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            Counter("lmvisor_module_success", "again", ["module"], registry=metrics.registry)


class TestCacheFigures:
    def test_tier_counts_are_exposed_as_the_cache_families(self) -> None:
        """cache(layer)'s counts show as the hits, misses, evictions, errors and dropped series."""
        metrics = Metrics()
        figures = metrics.cache("l2")
        assert metrics.cache("l2") is figures
        figures.hits += 2
        figures.misses += 1
        figures.evicted(3)
        figures.error()
        figures.dropped += 1
        assert metrics.value("lmvisor_cache_hits_total", layer="l2") == 2
        assert metrics.value("lmvisor_cache_misses_total", layer="l2") == 1
        assert metrics.value("lmvisor_cache_evictions_total", layer="l2") == 3
        assert metrics.value("lmvisor_cache_errors_total", layer="l2") == 1
        assert metrics.value("lmvisor_cache_dropped_total", layer="l2", reason="corrupt") == 1

    def test_the_write_queue_shows_only_its_refused_writes(self) -> None:
        """cache_queue() is a `queue_full` dropped series at 0, and no hits or misses series."""
        metrics = Metrics()
        metrics.cache_queue().dropped += 4
        text = metrics.render()
        assert 'lmvisor_cache_dropped_total{layer="queue",reason="queue_full"} 4.0' in text
        assert 'layer="queue"}' not in text

    def test_cache_family_names_cannot_be_registered_twice(self) -> None:
        """The cache families are registered: another family of the same name is refused."""
        metrics = Metrics()
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            Counter("lmvisor_cache_misses", "again", ["layer"], registry=metrics.registry)


class TestMeasure:
    async def test_measure_observes_elapsed_time(self) -> None:
        """measure() observes the block's duration into a histogram with the labels."""
        ticks = itertools.count(0.0, 2.0)
        metrics = Metrics(timer=lambda: next(ticks))
        async with metrics.measure(metrics.optimization_duration, optimizer="copro"):
            pass
        assert metrics.value("lmvisor_optimization_seconds_count", optimizer="copro") == 1
        assert metrics.value("lmvisor_optimization_seconds_sum", optimizer="copro") == 2.0

    async def test_measure_records_on_error_and_sets_gauges(self) -> None:
        """A failing block is still timed; a gauge is set to the duration."""
        ticks = itertools.count(0.0, 3.0)
        metrics = Metrics(timer=lambda: next(ticks))
        with pytest.raises(RuntimeError):
            async with metrics.measure(metrics.optimization_score, optimizer="copro"):
                raise RuntimeError("boom")
        assert metrics.value("lmvisor_optimization_score", optimizer="copro") == 3.0

    async def test_measure_records_on_cancellation(self) -> None:
        """A cancelled block is still timed."""
        metrics = Metrics()
        started = asyncio.Event()

        async def body() -> None:
            async with metrics.measure(metrics.optimization_duration, optimizer="m"):
                started.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(body())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert metrics.value("lmvisor_optimization_seconds_count", optimizer="m") == 1


class TestRuntimeFigures:
    def test_runtime_source_is_read_at_scrape(self) -> None:
        """Runtime figures come from the source callable each time the registry is read."""
        metrics = Metrics()
        assert metrics.value("lmvisor_actors_alive") == 0
        figures = RuntimeFigures(actors_alive=4, restarts={"root": 2}, mailbox_depth={"cache": 7})
        metrics.set_runtime_source(lambda: figures)
        assert metrics.value("lmvisor_actors_alive") == 4
        assert metrics.value("lmvisor_supervisor_restarts_total", supervisor="root") == 2
        assert metrics.value("lmvisor_mailbox_depth", actor="cache") == 7


class TestProtectionHooks:
    async def test_breaker_and_limiter_listeners(self) -> None:
        """breaker_changed sets the state gauge and limiter_rejected counts refusals."""
        metrics = Metrics()
        breaker = CircuitBreaker("openai", failure_threshold=1, clock=MockClock())
        breaker.add_listener(metrics.breaker_changed)

        async def fail() -> None:
            raise RuntimeError("down")

        with pytest.raises(RuntimeError):
            await breaker.call(fail)
        assert metrics.value("lmvisor_circuit_breaker_state", breaker="openai") == 2
        limiter = RateLimiter("openai", limit=1, clock=MockClock())
        limiter.add_rejection_listener(metrics.limiter_rejected)
        limiter.try_acquire()
        with pytest.raises(RateLimited):
            limiter.try_acquire()
        assert metrics.value("lmvisor_rate_limiter_rejections_total", limiter="openai") == 1

    async def test_a_forgotten_protection_has_no_series(self) -> None:
        """forget_protection drops the breaker's state and the limiter's refusals by name."""
        metrics = Metrics()
        breaker = CircuitBreaker("module:gone", failure_threshold=1, clock=MockClock())
        breaker.add_listener(metrics.breaker_changed)

        async def fail() -> None:
            raise RuntimeError("down")

        with pytest.raises(RuntimeError):
            await breaker.call(fail)
        metrics.limiter_rejected(RateLimiter("module:gone", limit=1, clock=MockClock()), 1.0)
        metrics.forget_protection("module:gone")
        metrics.forget_protection("module:never")
        assert "module:gone" not in metrics.render()
