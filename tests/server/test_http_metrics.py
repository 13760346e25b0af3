"""Tests for lmvisor.server.http_metrics: the HTTP families as a scrape reads them."""

from __future__ import annotations

import pytest
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families

from lmvisor.runtime.observe.metrics import Metrics
from lmvisor.server.http_metrics import HttpMetrics

RUN = "/v1/programs/{program_id}/run"


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.value(name, **labels)


class TestHttpMetrics:
    def test_requests_are_counted_by_method_route_and_status(self) -> None:
        """Each answered request adds one to its (method, route, status) series."""
        metrics = Metrics()
        http = HttpMetrics(metrics)
        for status in (200, 200, 404):
            http.started()
            http.finished("POST", RUN, status, 0.1)
        assert _value(metrics, "lmvisor_http_requests_total", method="POST", route=RUN,
                      status="200") == 2  # fmt: skip
        assert _value(metrics, "lmvisor_http_requests_total", method="POST", route=RUN,
                      status="404") == 1  # fmt: skip

    def test_durations_fill_the_same_buckets_as_a_prometheus_histogram(self) -> None:
        """Buckets, count and sum match prometheus_client's own Histogram for the same values."""
        metrics = Metrics()
        http = HttpMetrics(metrics)
        reference = Metrics()
        bounds = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
        histogram = Histogram("ref", "", ["method", "route"], registry=reference.registry,
                              buckets=bounds)  # fmt: skip
        values = (0.0, 0.0005, 0.001, 0.1, 0.1000001, 0.7, 30.0, 31.0, 1e9)
        for seconds in values:
            http.started()
            http.finished("GET", "/v1/tree", 200, seconds)
            histogram.labels(method="GET", route="/v1/tree").observe(seconds)
        for le in (*(repr(b) for b in bounds), "+Inf"):
            ours = _value(metrics, "lmvisor_http_request_seconds_bucket", method="GET",
                          route="/v1/tree", le=le)  # fmt: skip
            theirs = _value(reference, "ref_bucket", method="GET", route="/v1/tree", le=le)
            assert ours == theirs, le
        labels = {"method": "GET", "route": "/v1/tree"}
        assert _value(metrics, "lmvisor_http_request_seconds_count", **labels) == len(values)
        assert _value(metrics, "lmvisor_http_request_seconds_sum", **labels) == pytest.approx(
            sum(values)
        )

    def test_in_flight_follows_started_and_finished(self) -> None:
        """The gauge counts requests started and not yet answered."""
        metrics = Metrics()
        http = HttpMetrics(metrics)
        http.started()
        http.started()
        http.finished("GET", None, 200, 0.01)
        assert (http.in_flight, _value(metrics, "lmvisor_http_in_flight")) == (1, 1)

    def test_unknown_methods_and_unmatched_routes_are_folded(self) -> None:
        """An odd method counts as OTHER and a request no route matched as <unmatched>."""
        metrics = Metrics()
        http = HttpMetrics(metrics)
        http.started()
        http.finished("BREW", None, 404, 0.01)
        assert _value(metrics, "lmvisor_http_requests_total", method="OTHER",
                      route="<unmatched>", status="404") == 1  # fmt: skip

    def test_exposition_parses(self) -> None:
        """The families render in the text format and parse back with their types."""
        metrics = Metrics()
        http = HttpMetrics(metrics)
        http.started()
        http.finished("POST", RUN, 200, 0.2)
        families = {f.name: f for f in text_string_to_metric_families(metrics.render())}
        assert families["lmvisor_http_requests"].type == "counter"
        assert families["lmvisor_http_request_seconds"].type == "histogram"
        assert families["lmvisor_http_in_flight"].type == "gauge"

    def test_one_per_registry(self) -> None:
        """A second set of HTTP families in the same registry is refused."""
        metrics = Metrics()
        HttpMetrics(metrics)
        with pytest.raises(ValueError, match=r"^Duplicated timeseries in CollectorRegistry"):
            HttpMetrics(metrics)
