"""The daemon's HTTP metric families, exposed from the runtime's own Prometheus registry.

- `lmvisor_http_requests_total` counter [method, route, status]
- `lmvisor_http_request_seconds` histogram [method, route]
- `lmvisor_http_in_flight` gauge: requests being served now (drain progress)
- `lmvisor_http_refused_total` counter [reason]: requests and connections the HTTP
  protocol refused or ended itself (`http_protocol`), by one of `REFUSAL_REASONS`

The names are `lmvisor.runtime.observe.names`' `METRIC_HTTP_*`.

`route` is the matched route's template (`/v1/events`), never the raw path,
and methods outside the standard set count as `OTHER`, so no client can grow
the label sets without bound; a refusal's `reason` is one of a fixed few.

`HttpMetrics` is a collector: a request costs a few integer additions on the
event loop (no lock, no label lookup), and the registry reads the figures
when it is scraped. Requests are recorded on the event loop's thread only.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Final, final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from lmvisor.runtime.observe.metrics import Metrics, cumulative_buckets, le_labels
from lmvisor.runtime.observe.names import (
    METRIC_HTTP_IN_FLIGHT,
    METRIC_HTTP_REFUSED,
    METRIC_HTTP_REQUEST_SECONDS,
    METRIC_HTTP_REQUESTS,
)

__all__ = ["REFUSAL_REASONS", "HttpMetrics"]

REFUSAL_REASONS: Final = (
    "header_timeout",
    "head_too_large",
    "malformed",
    "body_timeout",
    "body_too_large",
    "send_timeout",
)
"""Why the HTTP protocol refused a request or ended a connection (the `reason` label)."""

_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UNMATCHED: Final = "<unmatched>"
_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BOUNDS: Final = le_labels(_BUCKETS)


@final
class HttpMetrics(Collector):
    """Counts and times the daemon's requests; registers itself in `metrics.registry`.

    Raises:
        ValueError: the registry already has these families (one per context).
    """

    __slots__ = ("_counts", "_in_flight", "_refused", "_timings")

    def __init__(self, metrics: Metrics) -> None:
        self._counts: dict[tuple[str, str, int], int] = {}
        # Per (method, route): a count per bucket (the last is +Inf), then the sum.
        self._timings: dict[tuple[str, str], list[float]] = {}
        self._in_flight = 0
        self._refused = dict.fromkeys(REFUSAL_REASONS, 0)
        metrics.registry.register(self)

    @property
    def in_flight(self) -> int:
        """Requests started and not yet answered."""
        return self._in_flight

    def started(self) -> None:
        """A request came in."""
        self._in_flight += 1

    def finished(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """A request `started` earlier was answered: count it and record its duration."""
        self._in_flight -= 1
        method = method if method in _METHODS else "OTHER"
        route = route or _UNMATCHED
        key = (method, route, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        timing = self._timings.get((method, route))
        if timing is None:
            timing = self._timings[(method, route)] = [0.0] * (len(_BOUNDS) + 1)
        timing[bisect_left(_BUCKETS, seconds)] += 1
        timing[-1] += seconds

    def refused(self, reason: str) -> None:
        """The HTTP protocol refused a request or ended a connection for `reason`.

        Raises:
            ValueError: `reason` is not one of `REFUSAL_REASONS`.
        """
        if reason not in self._refused:
            raise ValueError(f"unknown refusal reason {reason!r}")
        self._refused[reason] += 1

    def refused_count(self, reason: str) -> int:
        """How many refusals for `reason` were counted (0 for a reason never seen)."""
        return self._refused.get(reason, 0)

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily | GaugeMetricFamily]:
        """The four families as they stand now (the registry calls this on a scrape)."""
        counts = CounterMetricFamily(
            METRIC_HTTP_REQUESTS,
            "HTTP requests answered, by method, route template and status.",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in list(self._counts.items()):
            counts.add_metric([method, route, str(status)], count)
        yield counts
        seconds = HistogramMetricFamily(
            METRIC_HTTP_REQUEST_SECONDS,
            "HTTP request time, by method and route template.",
            labels=["method", "route"],
        )
        for (method, route), timing in list(self._timings.items()):
            seconds.add_metric(
                [method, route], cumulative_buckets(_BOUNDS, timing[:-1]), sum_value=timing[-1]
            )
        yield seconds
        yield GaugeMetricFamily(
            METRIC_HTTP_IN_FLIGHT, "HTTP requests being served now.", value=self._in_flight
        )
        refused = CounterMetricFamily(
            METRIC_HTTP_REFUSED,
            "Requests and connections the HTTP protocol refused or ended itself, by reason.",
            labels=["reason"],
        )
        for reason, count in self._refused.items():
            refused.add_metric([reason], count)
        yield refused

    def describe(self) -> Iterable[CounterMetricFamily | HistogramMetricFamily | GaugeMetricFamily]:
        # Describing lets the registry reject a clashing name at registration.
        return self.collect()

    def __repr__(self) -> str:
        return f"HttpMetrics(in_flight={self._in_flight}, series={len(self._counts)})"
