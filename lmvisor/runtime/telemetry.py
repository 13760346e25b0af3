"""Metrics: one Prometheus registry per runtime holding lmvisor's metric families.

Every family is named under `lmvisor_` and lives in the `Metrics` instance's
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
            "lmvisor_actors_alive", "Actors currently running.", value=figures.actors_alive
        )
        restarts = CounterMetricFamily(
            "lmvisor_supervisor_restarts", "Child restarts by supervisor.", labels=["supervisor"]
        )
        for supervisor, count in sorted(figures.restarts.items()):
            restarts.add_metric([supervisor], count)
        yield restarts
        depth = GaugeMetricFamily(
            "lmvisor_mailbox_depth", "Messages waiting in each mailbox.", labels=["actor"]
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

    Families (label names in brackets):

    - `module_duration` histogram `lmvisor_module_execution_seconds` [module]
    - `module_success` / `module_errors` counters
      `lmvisor_module_success_total` [module], `lmvisor_module_errors_total` [module, error]
    - `lm_request_duration` histogram `lmvisor_lm_request_seconds` [provider, model]
    - `lm_tokens` counter `lmvisor_lm_tokens_total` [provider, model, kind]
      (kind is `prompt` or `completion`)
    - `lm_cost` counter `lmvisor_lm_cost_usd_total` [provider, model]
    - `optimization_iterations` counter `lmvisor_optimization_iterations_total` [optimizer]
    - `optimization_score` gauge `lmvisor_optimization_score` [optimizer]
    - `optimization_duration` histogram `lmvisor_optimization_seconds` [optimizer]
    - `breaker_state` gauge `lmvisor_circuit_breaker_state` [breaker]
      (0 closed, 1 half-open, 2 open)
    - `rate_limiter_rejections` counter `lmvisor_rate_limiter_rejections_total` [limiter]
    - `cache_hits` / `cache_misses` counters `lmvisor_cache_hits_total`,
      `lmvisor_cache_misses_total` [layer] (`l1`, `l2`, `l3`)
    - `cache_evictions` counter `lmvisor_cache_evictions_total` [layer]
    - `cache_errors` counter `lmvisor_cache_errors_total` [layer] (L2/L3 failures)
    - `cache_dropped` counter `lmvisor_cache_dropped_total` [layer, reason]
      (corrupt entries, skipped writes)
    - `cache_hit_rate` gauge `lmvisor_cache_hit_rate`: hits over lookups since start,
      read at scrape time from `set_cache_source`
    - hook `breaker_changed` / `limiter_rejected` to `Protections` listeners
      to keep the breaker gauge and rejection counter current
    - runtime figures from `set_runtime_source`: `lmvisor_actors_alive`,
      `lmvisor_supervisor_restarts_total` [supervisor], `lmvisor_mailbox_depth` [actor]

    Args:
        timer: seconds on a monotonic clock for `measure` (tests pass a fake).
    """

    def __init__(self, *, timer: Callable[[], float] = time.perf_counter) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._timer = timer
        reg = self.registry
        self.module_duration = Histogram(
            "lmvisor_module_execution_seconds",
            "Module execution time.",
            ["module"],
            registry=reg,
            buckets=_FAST,
        )
        self.module_success = Counter(
            "lmvisor_module_success", "Module executions that succeeded.", ["module"], registry=reg
        )
        self.module_errors = Counter(
            "lmvisor_module_errors",
            "Module executions that failed, by error code.",
            ["module", "error"],
            registry=reg,
        )
        self.lm_request_duration = Histogram(
            "lmvisor_lm_request_seconds",
            "LM request time.",
            ["provider", "model"],
            registry=reg,
            buckets=_FAST,
        )
        self.lm_tokens = Counter(
            "lmvisor_lm_tokens", "LM tokens used.", ["provider", "model", "kind"], registry=reg
        )
        self.lm_cost = Counter(
            "lmvisor_lm_cost_usd", "LM spend in US dollars.", ["provider", "model"], registry=reg
        )
        self._optimization_families(reg)
        self.breaker_state = Gauge(
            "lmvisor_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["breaker"],
            registry=reg,
        )
        self.rate_limiter_rejections = Counter(
            "lmvisor_rate_limiter_rejections",
            "Requests refused by a rate limiter.",
            ["limiter"],
            registry=reg,
        )
        self.cache_hits = Counter("lmvisor_cache_hits", "Cache hits.", ["layer"], registry=reg)
        self.cache_misses = Counter(
            "lmvisor_cache_misses", "Cache misses.", ["layer"], registry=reg
        )
        self._cache_families(reg)
        self._runtime = _RuntimeCollector()
        reg.register(self._runtime)

    def _cache_families(self, reg: CollectorRegistry) -> None:
        self.cache_evictions = Counter(
            "lmvisor_cache_evictions", "Cache entries evicted.", ["layer"], registry=reg
        )
        self.cache_errors = Counter(
            "lmvisor_cache_errors", "Cache tier failures.", ["layer"], registry=reg
        )
        self.cache_dropped = Counter(
            "lmvisor_cache_dropped",
            "Cache entries or writes dropped, by reason.",
            ["layer", "reason"],
            registry=reg,
        )
        self.cache_hit_rate = Gauge(
            "lmvisor_cache_hit_rate", "Cache hits over lookups since start.", registry=reg
        )
        self.cache_hit_rate.set_function(lambda: 0.0)

    def set_cache_source(self, source: Callable[[], float] | None) -> None:
        """Read `lmvisor_cache_hit_rate` from `source()` at each scrape (None reports 0)."""
        self.cache_hit_rate.set_function(source if source is not None else (lambda: 0.0))

    def _optimization_families(self, reg: CollectorRegistry) -> None:
        self.optimization_iterations = Counter(
            "lmvisor_optimization_iterations",
            "Optimizer iterations run.",
            ["optimizer"],
            registry=reg,
        )
        self.optimization_score = Gauge(
            "lmvisor_optimization_score", "Latest optimizer score.", ["optimizer"], registry=reg
        )
        self.optimization_duration = Histogram(
            "lmvisor_optimization_seconds",
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
