"""Metrics: one Prometheus registry per runtime holding lmvisor's metric families.

Every family is named in `observe.names` (under `lmvisor_`) and lives in the `Metrics` instance's
own `CollectorRegistry`, so two runtimes in one process never clash and never
see each other's figures. Runtime figures (actors alive, restarts, mailbox
depths) are read at scrape time from a callable the runtime supplies, never
from private attributes. Bind label children once on hot paths
(`metrics.breaker_state.labels(...)`) rather than per call.

LM request and module execution figures come at request rate, so they skip
the client library's per-call locks and label lookups: a provider binds an
`LMFigures` once per model (`metrics.lm(provider, model)`), the module manager
a `ModuleFigures` once per program (`metrics.module(module_id)`); each call is
recorded with a few additions, and the `METRIC_LM_*` and `METRIC_MODULE_*`
families are built from those sums at each scrape.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final, final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
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

__all__ = [
    "CONTENT_TYPE",
    "MAX_LM_SERIES",
    "OTHER_MODEL",
    "CacheFigures",
    "LMFigures",
    "Metrics",
    "ModuleFigures",
    "RuntimeFigures",
    "cumulative_buckets",
    "le_labels",
]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of `Metrics.render()`'s output."""

MAX_LM_SERIES: Final = 256
"""Models of one provider with LM series of their own; later ones are counted under
model `OTHER_MODEL`. Models come from LM answers (the name a vendor reports), so a gateway
that reports a new name per call must not grow `/metrics` without end."""
OTHER_MODEL: Final = "other"
"""The model label of the pairs past `MAX_LM_SERIES` (and of names over 256 characters)."""
_MAX_LABEL: Final = 256  # `lmvisor.programs.lm.MAX_MODEL_NAME` (runtime sits below programs)

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


@final
class LMFigures:
    """The LM request figures of one (provider, model), summed where they happen.

    `record()` is the whole per-call cost: a bucket search and a few additions,
    no lock and no label lookup. `Metrics` builds the `METRIC_LM_*` families
    from these sums at each scrape. Record from the runtime's event loop.
    """

    __slots__ = (
        "buckets",
        "completion_tokens",
        "cost",
        "count",
        "created",
        "priced",
        "prompt_tokens",
        "seconds",
    )

    def __init__(self) -> None:
        self.created = time.time()
        self.buckets = [0] * (len(_FAST) + 1)  # per bucket, not cumulative; the last is +Inf
        self.count = 0
        self.seconds = 0.0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0
        self.priced = False  # no cost series until a call was priced, as a counter child

    def record(
        self, seconds: float, prompt_tokens: int, completion_tokens: int, cost: float | None
    ) -> None:
        """Add one answered request: its duration, its tokens and its cost (None: unknown)."""
        self.buckets[bisect_left(_FAST, seconds)] += 1
        self.count += 1
        self.seconds += seconds
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if cost:
            self.cost += cost
            self.priced = True

    def add_usage(self, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        """Add tokens and cost without a request duration (`Metrics.record_lm_usage`)."""
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if cost:
            self.cost += cost
            self.priced = True


@final
class ModuleFigures:
    """The execution figures of one module (program id), summed where they happen.

    `record()` is the whole per-execution cost: a bucket search and a few additions,
    no lock and no label lookup. `Metrics` builds the `METRIC_MODULE_*` families
    from these sums at each scrape. Record from the runtime's event loop.
    """

    __slots__ = ("buckets", "created", "errors", "seconds", "successes")

    def __init__(self) -> None:
        self.created = time.time()
        self.buckets = [0] * (len(_FAST) + 1)  # per bucket, not cumulative; the last is +Inf
        self.seconds = 0.0
        self.successes = 0
        self.errors: dict[str, int] = {}  # failed executions by error code

    def record(self, seconds: float, error: str | None = None) -> None:
        """Add one execution: its duration, and its error code when it failed."""
        self.buckets[bisect_left(_FAST, seconds)] += 1
        self.seconds += seconds
        if error is None:
            self.successes += 1
        else:
            self.errors[error] = self.errors.get(error, 0) + 1


@final
class CacheFigures:
    """The counts of one cache tier (or of the write queue), summed where they happen.

    Each is a plain attribute the cache adds to: no lock and no label lookup. `Metrics`
    builds the `METRIC_CACHE_*` families from them at each scrape (a tier's series exist,
    at 0, from when its figures are made). Add from the runtime's event loop.

    Attributes:
        hits, misses: lookups the tier answered or missed.
        errors: the tier's failures (L2/L3).
        evictions: entries the tier evicted.
        dropped: entries dropped as corrupt (a tier), or writes refused (the queue).
    """

    __slots__ = ("created", "dropped", "errors", "evictions", "hits", "misses", "reason", "tier")

    def __init__(self, *, reason: str = "corrupt", tier: bool = True) -> None:
        self.created = time.time()
        self.hits = self.misses = self.errors = self.evictions = self.dropped = 0
        self.reason = reason  # the `reason` label of `dropped`
        self.tier = tier  # False: only `dropped` is a series (the write queue)

    def error(self) -> None:
        """Count one failure of the tier."""
        self.errors += 1

    def evicted(self, count: int) -> None:
        """Count `count` entries evicted."""
        self.evictions += count


class _CacheCollector(Collector):
    """Builds the cache families from every `CacheFigures` at each scrape."""

    def __init__(self) -> None:
        self.figures: dict[str, CacheFigures] = {}

    def collect(self) -> Iterable[Metric]:
        hits = CounterMetricFamily(METRIC_CACHE_HITS, "Cache hits.", labels=["layer"])
        misses = CounterMetricFamily(METRIC_CACHE_MISSES, "Cache misses.", labels=["layer"])
        evictions = CounterMetricFamily(
            METRIC_CACHE_EVICTIONS, "Cache entries evicted.", labels=["layer"]
        )
        errors = CounterMetricFamily(METRIC_CACHE_ERRORS, "Cache tier failures.", labels=["layer"])
        dropped = CounterMetricFamily(
            METRIC_CACHE_DROPPED,
            "Cache entries or writes dropped, by reason.",
            labels=["layer", "reason"],
        )
        for layer, figures in sorted(self.figures.items()):
            created = figures.created
            if figures.tier:
                hits.add_metric([layer], figures.hits, created=created)
                misses.add_metric([layer], figures.misses, created=created)
                evictions.add_metric([layer], figures.evictions, created=created)
                errors.add_metric([layer], figures.errors, created=created)
            dropped.add_metric([layer, figures.reason], figures.dropped, created=created)
        yield from (hits, misses, evictions, errors, dropped)

    def describe(self) -> Iterable[Metric]:
        # Describing lets the registry reject a clashing name at registration.
        return self.collect()


def le_labels(bounds: Iterable[float]) -> tuple[str, ...]:
    """The `le` labels of a histogram with these upper bounds, as prometheus_client writes
    them ("0.005", "1.0"), then "+Inf"."""
    return (*(repr(float(bound)) for bound in bounds), "+Inf")


def cumulative_buckets(
    labels: Sequence[str], per_bucket: Iterable[float]
) -> list[tuple[str, float]]:
    """Counts kept per bucket (the last is +Inf) as an exposed histogram's cumulative
    (le, count) pairs, for the `le` labels of `le_labels`."""
    counts = itertools.accumulate(per_bucket)
    return [(le, float(n)) for le, n in zip(labels, counts, strict=True)]


_LM_BUCKETS: Final = le_labels(_FAST)


def _histogram(buckets: list[int]) -> list[tuple[str, float]]:
    return cumulative_buckets(_LM_BUCKETS, buckets)


class _LMCollector(Collector):
    """Builds the LM families from every `LMFigures` at each scrape."""

    def __init__(self) -> None:
        self.figures: dict[tuple[str, str], LMFigures] = {}
        self.models: dict[str, int] = {}  # series made per provider (see `Metrics.lm`)

    def collect(self) -> Iterable[Metric]:
        duration = HistogramMetricFamily(
            METRIC_LM_REQUEST_SECONDS, "LM request time.", labels=["provider", "model"]
        )
        tokens = CounterMetricFamily(
            METRIC_LM_TOKENS, "LM tokens used.", labels=["provider", "model", "kind"]
        )
        cost = CounterMetricFamily(
            METRIC_LM_COST, "LM spend in US dollars.", labels=["provider", "model"]
        )
        for (provider, model), figures in sorted(self.figures.items()):
            if figures.count:
                buckets = _histogram(figures.buckets)
                duration.add_metric([provider, model], buckets, figures.seconds)
            created = figures.created
            tokens.add_metric([provider, model, "prompt"], figures.prompt_tokens, created=created)
            tokens.add_metric(
                [provider, model, "completion"], figures.completion_tokens, created=created
            )
            if figures.priced:
                cost.add_metric([provider, model], figures.cost, created=created)
        yield from (duration, tokens, cost)

    def describe(self) -> Iterable[Metric]:
        # Describing lets the registry reject a clashing name at registration.
        return self.collect()


class _ModuleCollector(Collector):
    """Builds the module families from every `ModuleFigures` at each scrape."""

    def __init__(self) -> None:
        self.figures: dict[str, ModuleFigures] = {}

    def collect(self) -> Iterable[Metric]:
        duration = HistogramMetricFamily(
            METRIC_MODULE_SECONDS, "Module execution time.", labels=["module"]
        )
        success = CounterMetricFamily(
            METRIC_MODULE_SUCCESS, "Module executions that succeeded.", labels=["module"]
        )
        errors = CounterMetricFamily(
            METRIC_MODULE_ERRORS,
            "Module executions that failed, by error code.",
            labels=["module", "error"],
        )
        # A module's series exist from when its figures are bound (its registration), at 0.
        for module, figures in sorted(self.figures.items()):
            duration.add_metric([module], _histogram(figures.buckets), figures.seconds)
            created = figures.created
            success.add_metric([module], figures.successes, created=created)
            for code, count in sorted(figures.errors.items()):
                errors.add_metric([module, code], count, created=created)
        yield from (duration, success, errors)

    def describe(self) -> Iterable[Metric]:
        # Describing lets the registry reject a clashing name at registration.
        return self.collect()


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

    - `METRIC_MODULE_*` (execution seconds, successes, errors by code, by module),
      recorded through `module(module_id)` or `record_module`
    - `METRIC_LM_*` (request seconds, tokens, cost by provider and model), recorded
      through `lm(provider, model)` or `record_lm_usage`
    - `optimization_iterations`, `optimization_score`, `optimization_duration`:
      `METRIC_OPTIMIZATION_*`
    - `breaker_state` (0 closed, 1 half-open, 2 open) and
      `rate_limiter_rejections`, kept current by `breaker_changed` /
      `limiter_rejected` hooked to `Protections` listeners
    - `METRIC_CACHE_*`: hits, misses, evictions, errors (L2/L3 failures) [layer: `l1`,
      `l2`, `l3`] and dropped [layer, reason], recorded through `cache(layer)` and
      `cache_queue()`; `cache_hit_rate` (read at scrape time from `set_cache_source`)
    - runtime figures from `set_runtime_source`: `METRIC_ACTORS_ALIVE`,
      `METRIC_SUPERVISOR_RESTARTS`, `METRIC_MAILBOX_DEPTH`

    Args:
        timer: seconds on a monotonic clock for `measure` (tests pass a fake).
    """

    def __init__(self, *, timer: Callable[[], float] = time.perf_counter) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._timer = timer
        reg = self.registry
        self._modules = _ModuleCollector()
        reg.register(self._modules)
        self._lm = _LMCollector()
        reg.register(self._lm)
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
        self._cache = _CacheCollector()
        reg.register(self._cache)
        self.cache_hit_rate = Gauge(
            METRIC_CACHE_HIT_RATE, "Cache hits over lookups since start.", registry=reg
        )
        self.cache_hit_rate.set_function(lambda: 0.0)
        self._runtime = _RuntimeCollector()
        reg.register(self._runtime)

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
        self.module(module).record(seconds, error)

    def module(self, module: str) -> ModuleFigures:
        """The module's execution figures, made on first use; bind it once, record per call."""
        figures = self._modules.figures.get(module)
        if figures is None:
            figures = self._modules.figures[module] = ModuleFigures()
        return figures

    def forget_module(self, module: str) -> None:
        """Drop the module's series (an unregistered program's labels would stay forever)."""
        self._modules.figures.pop(module, None)

    def forget_protection(self, name: str) -> None:
        """Drop the series of the breaker and the limiter named `name` (no longer in use)."""
        # older prometheus-client releases raise KeyError for a series never made
        with contextlib.suppress(KeyError):
            self.breaker_state.remove(name)
        with contextlib.suppress(KeyError):
            self.rate_limiter_rejections.remove(name)

    def cache(self, layer: str) -> CacheFigures:
        """The cache tier's counts (`l1`, `l2`, `l3`), made on first use; bind it once."""
        figures = self._cache.figures.get(layer)
        if figures is None:
            figures = self._cache.figures[layer] = CacheFigures()
        return figures

    def cache_queue(self) -> CacheFigures:
        """The write queue's figures: `dropped` counts writes it refused (`queue_full`)."""
        figures = self._cache.figures.get("queue")
        if figures is None:
            figures = CacheFigures(reason="queue_full", tier=False)
            self._cache.figures["queue"] = figures
        return figures

    def lm(self, provider: str, model: str) -> LMFigures:
        """The (provider, model)'s LM figures, made on first use; bind it once, record per call.

        Past `MAX_LM_SERIES` models of one provider, or for a model name over 256
        characters, the figures of (provider, `OTHER_MODEL`): the series a scrape returns
        stay bounded, and one provider's names never crowd out another's.
        """
        known = self._lm.figures
        key = (provider, model)
        figures = known.get(key)
        if figures is None:
            made = self._lm.models.get(provider, 0)
            if made >= MAX_LM_SERIES or len(model) > _MAX_LABEL:
                key = (provider, OTHER_MODEL)
                figures = known.get(key)
            if figures is None:
                figures = known[key] = LMFigures()
                self._lm.models[provider] = made + 1
        return figures

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
        self.lm(provider, model).add_usage(prompt_tokens, completion_tokens, cost)

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
