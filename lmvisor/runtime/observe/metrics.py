"""Metrics: one Prometheus registry per runtime holding lmvisor's metric families.

Every family is named in `observe.names` (under `lmvisor_`) and lives in the `Metrics` instance's
own `CollectorRegistry`, so two runtimes in one process never clash and never
see each other's figures. Runtime figures (actors alive, restarts, mailbox
depths) are read at scrape time from a callable the runtime supplies, never
from private attributes. Bind label children once on hot paths
(`metrics.lm_tokens.labels(...)`) rather than per call.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final, final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lmvisor.runtime.observe.names import (
    METRIC_ACTORS_ALIVE,
    METRIC_BREAKER_STATE,
    METRIC_CACHE_DROPPED,
    METRIC_CACHE_ERRORS,
    METRIC_CACHE_EVICTIONS,
    METRIC_CACHE_HIT_RATE,
    METRIC_CACHE_HITS,
    METRIC_CACHE_MISSES,
    METRIC_LM_COST,
    METRIC_LM_REQUEST_SECONDS,
    METRIC_LM_TOKENS,
    METRIC_MAILBOX_DEPTH,
    METRIC_MODULE_ERRORS,
    METRIC_MODULE_SECONDS,
    METRIC_MODULE_SUCCESS,
    METRIC_OPTIMIZATION_ITERATIONS,
    METRIC_OPTIMIZATION_SCORE,
    METRIC_OPTIMIZATION_SECONDS,
    METRIC_RATE_LIMITER_REJECTIONS,
    METRIC_SUPERVISOR_RESTARTS,
)
from lmvisor.runtime.protection.breaker import BreakerState, CircuitBreaker
from lmvisor.runtime.protection.limiter import RateLimiter

__all__ = ["CONTENT_TYPE", "Metrics", "RuntimeFigures"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of `Metrics.render()`'s output."""

_FAST: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_SLOW: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@final
@dataclass(frozen=True, slots=True)
class RuntimeFigures:
    """What the runtime reports at scrape time (from its `tree()` / statistics)."""

    actors_alive: int = 0
    restarts: Mapping[str, int] = field(default_factory=dict)
    """Restarts so far, by supervisor id."""
    mailbox_depth: Mapping[str, int] = field(default_factory=dict)
    """Messages waiting, by actor id."""


class _RuntimeCollector(Collector):
    """Turns the runtime's figures into metric families at each scrape."""

    def __init__(self) -> None:
        self.source: Callable[[], RuntimeFigures] | None = None

    def collect(self) -> Iterable[Metric]:
        figures = RuntimeFigures() if self.source is None else self.source()
        yield GaugeMetricFamily(
            METRIC_ACTORS_ALIVE, "Actors currently running.", value=figures.actors_alive
        )
        restarts = CounterMetricFamily(
            METRIC_SUPERVISOR_RESTARTS, "Child restarts by supervisor.", labels=["supervisor"]
        )
        for supervisor, count in sorted(figures.restarts.items()):
            restarts.add_metric([supervisor], count)
        yield restarts
        depth = GaugeMetricFamily(
            METRIC_MAILBOX_DEPTH, "Messages waiting in each mailbox.", labels=["actor"]
        )
        for actor, count in sorted(figures.mailbox_depth.items()):
            depth.add_metric([actor], count)
        yield depth

    def describe(self) -> Iterable[Metric]:
        # Describing lets the registry reject a clashing name at registration.
        return self.collect()


@final
class Metrics:
    """lmvisor's metric families in a registry of their own.

    Families, by attribute (their names and labels are in `observe.names`):

    - `module_duration`, `module_success`, `module_errors`: `METRIC_MODULE_*`
    - `lm_request_duration`, `lm_tokens`, `lm_cost`: `METRIC_LM_*`
    - `optimization_iterations`, `optimization_score`, `optimization_duration`:
      `METRIC_OPTIMIZATION_*`
    - `breaker_state` (0 closed, 1 half-open, 2 open) and
      `rate_limiter_rejections`, kept current by `breaker_changed` /
      `limiter_rejected` hooked to `Protections` listeners
    - `cache_hits`, `cache_misses` [layer: `l1`, `l2`, `l3`], `cache_evictions`,
      `cache_errors` (L2/L3 failures), `cache_dropped` [layer, reason] and
      `cache_hit_rate` (read at scrape time from `set_cache_source`): `METRIC_CACHE_*`
    - runtime figures from `set_runtime_source`: `METRIC_ACTORS_ALIVE`,
      `METRIC_SUPERVISOR_RESTARTS`, `METRIC_MAILBOX_DEPTH`

    Args:
        timer: seconds on a monotonic clock for `measure` (tests pass a fake).
    """

    def __init__(self, *, timer: Callable[[], float] = time.perf_counter) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._timer = timer
        reg = self.registry
        self.module_duration = Histogram(
            METRIC_MODULE_SECONDS,
            "Module execution time.",
            ["module"],
            registry=reg,
            buckets=_FAST,
        )
        self.module_success = Counter(
            METRIC_MODULE_SUCCESS, "Module executions that succeeded.", ["module"], registry=reg
        )
        self.module_errors = Counter(
            METRIC_MODULE_ERRORS,
            "Module executions that failed, by error code.",
            ["module", "error"],
            registry=reg,
        )
        self.lm_request_duration = Histogram(
            METRIC_LM_REQUEST_SECONDS,
            "LM request time.",
            ["provider", "model"],
            registry=reg,
            buckets=_FAST,
        )
        self.lm_tokens = Counter(
            METRIC_LM_TOKENS, "LM tokens used.", ["provider", "model", "kind"], registry=reg
        )
        self.lm_cost = Counter(
            METRIC_LM_COST, "LM spend in US dollars.", ["provider", "model"], registry=reg
        )
        self._optimization_families(reg)
        self.breaker_state = Gauge(
            METRIC_BREAKER_STATE,
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["breaker"],
            registry=reg,
        )
        self.rate_limiter_rejections = Counter(
            METRIC_RATE_LIMITER_REJECTIONS,
            "Requests refused by a rate limiter.",
            ["limiter"],
            registry=reg,
        )
        self.cache_hits = Counter(METRIC_CACHE_HITS, "Cache hits.", ["layer"], registry=reg)
        self.cache_misses = Counter(METRIC_CACHE_MISSES, "Cache misses.", ["layer"], registry=reg)
        self._cache_families(reg)
        self._runtime = _RuntimeCollector()
        reg.register(self._runtime)

    def _cache_families(self, reg: CollectorRegistry) -> None:
        self.cache_evictions = Counter(
            METRIC_CACHE_EVICTIONS, "Cache entries evicted.", ["layer"], registry=reg
        )
        self.cache_errors = Counter(
            METRIC_CACHE_ERRORS, "Cache tier failures.", ["layer"], registry=reg
        )
        self.cache_dropped = Counter(
            METRIC_CACHE_DROPPED,
            "Cache entries or writes dropped, by reason.",
            ["layer", "reason"],
            registry=reg,
        )
        self.cache_hit_rate = Gauge(
            METRIC_CACHE_HIT_RATE, "Cache hits over lookups since start.", registry=reg
        )
        self.cache_hit_rate.set_function(lambda: 0.0)

    def set_cache_source(self, source: Callable[[], float] | None) -> None:
        """Read `lmvisor_cache_hit_rate` from `source()` at each scrape (None reports 0)."""
        self.cache_hit_rate.set_function(source if source is not None else (lambda: 0.0))

    def _optimization_families(self, reg: CollectorRegistry) -> None:
        self.optimization_iterations = Counter(
            METRIC_OPTIMIZATION_ITERATIONS,
            "Optimizer iterations run.",
            ["optimizer"],
            registry=reg,
        )
        self.optimization_score = Gauge(
            METRIC_OPTIMIZATION_SCORE, "Latest optimizer score.", ["optimizer"], registry=reg
        )
        self.optimization_duration = Histogram(
            METRIC_OPTIMIZATION_SECONDS,
            "Optimization run time.",
            ["optimizer"],
            registry=reg,
            buckets=_SLOW,
        )

    def set_runtime_source(self, source: Callable[[], RuntimeFigures] | None) -> None:
        """Read runtime figures from `source()` at each scrape (None reports zeros)."""
        self._runtime.source = source

    @asynccontextmanager
    async def measure(self, metric: Histogram | Gauge, **labels: str) -> AsyncIterator[None]:
        """Time the block into `metric` (observed for a histogram, set for a gauge).

        The time is recorded whether the block succeeds, raises or is cancelled.

        Raises:
            ValueError: if `labels` do not match the metric's label names.
        """
        child = metric.labels(**labels) if labels else metric
        start = self._timer()
        try:
            yield
        finally:
            elapsed = self._timer() - start
            if isinstance(child, Histogram):
                child.observe(elapsed)
            else:
                child.set(elapsed)

    def record_module(self, module: str, seconds: float, error: str | None = None) -> None:
        """Record one module execution: its duration and its outcome (error code or success)."""
        self.module_duration.labels(module=module).observe(seconds)
        if error is None:
            self.module_success.labels(module=module).inc()
        else:
            self.module_errors.labels(module=module, error=error).inc()

    def record_lm_usage(
        self,
        provider: str,
        model: str,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost: float = 0.0,
    ) -> None:
        """Add one response's token counts and cost."""
        self.lm_tokens.labels(provider=provider, model=model, kind="prompt").inc(prompt_tokens)
        self.lm_tokens.labels(provider=provider, model=model, kind="completion").inc(
            completion_tokens
        )
        if cost:
            self.lm_cost.labels(provider=provider, model=model).inc(cost)

    def value(self, name: str, **labels: str) -> float | None:
        """One sample's current value (`name` as exposed, e.g. `lmvisor_cache_hits_total`)."""
        return self.registry.get_sample_value(name, labels)

    def breaker_changed(
        self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState
    ) -> None:
        """A `BreakerListener`: set the breaker's state gauge."""
        self.breaker_state.labels(breaker=breaker.name).set(new.value)

    def limiter_rejected(self, limiter: RateLimiter, retry_after: float) -> None:
        """A `RejectionListener`: count the refusal."""
        self.rate_limiter_rejections.labels(limiter=limiter.name).inc()

    def render(self) -> str:
        """The registry in the Prometheus text exposition format (see `CONTENT_TYPE`)."""
        return generate_latest(self.registry).decode("utf-8")

    def __repr__(self) -> str:
        return f"Metrics(registry at {id(self.registry):#x})"
