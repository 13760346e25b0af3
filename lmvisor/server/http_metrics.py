"""The daemon's HTTP metric families, registered in the runtime's own Prometheus registry.

- `lmvisor_http_requests_total` counter [method, route, status]
- `lmvisor_http_request_seconds` histogram [method, route]
- `lmvisor_http_in_flight` gauge: requests being served now (drain progress)

`route` is the matched route's template (`/v1/events`), never the raw path,
and methods outside the standard set count as `OTHER`, so no client can grow
the label sets without bound. Label children are bound once per combination.
"""

from __future__ import annotations

from typing import Final, final

from prometheus_client import Counter, Gauge, Histogram

from lmvisor.runtime.observe.metrics import Metrics

__all__ = ["HTTP_IN_FLIGHT", "HTTP_REQUESTS", "HTTP_REQUEST_SECONDS", "HttpMetrics"]

HTTP_REQUESTS: Final = "lmvisor_http_requests"
HTTP_REQUEST_SECONDS: Final = "lmvisor_http_request_seconds"
HTTP_IN_FLIGHT: Final = "lmvisor_http_in_flight"

_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UNMATCHED: Final = "<unmatched>"
_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@final
class HttpMetrics:
    """Counts and times the daemon's requests into `metrics.registry`."""

    __slots__ = ("_counts", "_durations", "in_flight", "requests", "seconds")

    def __init__(self, metrics: Metrics) -> None:
        self.requests = Counter(
            HTTP_REQUESTS,
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=metrics.registry,
        )
        self.seconds = Histogram(
            HTTP_REQUEST_SECONDS,
            "HTTP request time, by method and route template.",
            ["method", "route"],
            registry=metrics.registry,
            buckets=_BUCKETS,
        )
        self.in_flight = Gauge(
            HTTP_IN_FLIGHT, "HTTP requests being served now.", registry=metrics.registry
        )
        self._counts: dict[tuple[str, str, int], Counter] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """Count one answered request and record its duration."""
        method = method if method in _METHODS else "OTHER"
        route = route or _UNMATCHED
        count = self._counts.get((method, route, status))
        if count is None:
            count = self._counts[(method, route, status)] = self.requests.labels(
                method=method, route=route, status=str(status)
            )
        count.inc()
        duration = self._durations.get((method, route))
        if duration is None:
            duration = self._durations[(method, route)] = self.seconds.labels(
                method=method, route=route
            )
        duration.observe(seconds)
