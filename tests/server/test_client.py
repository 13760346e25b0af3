"""Tests for lmvisor.server.client: what a daemon, or something else at its URL, answers."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from lmvisor.server.cli_support import exit_code_for
from lmvisor.server.client import DaemonClient, _silence_bound
from lmvisor.server.errors import DaemonRefused, NotADaemon

URL = "http://me:hunter2@127.0.0.1:8750"
DAEMON = {"x-correlation-id": "c-1"}
Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler) -> DaemonClient:
    return DaemonClient(URL, token="tok-hunter3", transport=httpx.MockTransport(handler))


class TestPaths:
    @pytest.mark.parametrize(
        ("program_id", "path"),
        [
            ("..", "/v1/programs/%2E%2E/run"),
            (".", "/v1/programs/%2E/run"),
            ("../healthz", "/v1/programs/..%2Fhealthz/run"),
            ("a/b", "/v1/programs/a%2Fb/run"),
            ("a?x=1#f", "/v1/programs/a%3Fx%3D1%23f/run"),
            ("a b", "/v1/programs/a%20b/run"),
        ],
    )
    def test_an_id_is_one_path_segment(self, program_id: str, path: str) -> None:
        """An id holding `/`, `?`, `#`, a space or only dots reaches `/run` as one segment."""
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.url.raw_path.decode())
            return httpx.Response(200, json={"outputs": {}}, headers=DAEMON)

        with _client(handler) as daemon:
            daemon.run(program_id, {})
        assert seen == [path]

    def test_job_ids_are_escaped_too(self) -> None:
        """A job id is escaped the same way in every job call."""
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.url.raw_path.decode())
            return httpx.Response(200, json={"id": "x"}, headers=DAEMON)

        with _client(handler) as daemon:
            daemon.optimization("../x")
            daemon.optimization_result("a/b")
            daemon.cancel_optimization("..")
        assert seen == [
            "/v1/optimizations/..%2Fx",
            "/v1/optimizations/a%2Fb/result",
            "/v1/optimizations/%2E%2E/cancel",
        ]


class TestTimeouts:
    def test_a_run_waits_its_timeout_and_a_grace_then_gives_up(self) -> None:
        """A run with a timeout reads for that long plus 30 s; without one, without a bound."""
        reads: list[object] = []

        def handler(request: httpx.Request) -> httpx.Response:
            reads.append(request.extensions["timeout"]["read"])
            return httpx.Response(200, json={}, headers=DAEMON)

        with _client(handler) as daemon:
            daemon.run("qa", {}, timeout=2.5)
            daemon.run("qa", {})
            daemon.tree()
        assert reads == [32.5, None, 30.0]


class TestNotADaemon:
    @pytest.mark.parametrize(
        ("answer", "problem"),
        [
            (
                httpx.Response(200, text="hello", headers={**DAEMON, "content-type": "text/plain"}),
                "200 OK with a body that is not a JSON object (text/plain)",
            ),
            (
                httpx.Response(200, json=[1, 2], headers=DAEMON),
                "200 OK with a body that is not a JSON object (application/json)",
            ),
            (
                httpx.Response(200, json={"status": "running"}),
                "200 without the X-Correlation-ID header every answer has",
            ),
            (
                httpx.Response(404, html="<h1>nope</h1>"),
                "404 Not Found with no lmvisor error body (text/html)",
            ),
            (
                httpx.Response(502, content=b""),
                "502 Bad Gateway with no lmvisor error body (no content type)",
            ),
        ],
    )
    def test_another_server_is_named_with_what_it_answered(
        self, answer: httpx.Response, problem: str
    ) -> None:
        """An HTML page, a non-object 200, a 200 without the daemon's correlation header or a
        bare error status is `NotADaemon`, naming the
        URL (password hidden), the request and the answer; the CLI exits 1 for it."""
        with (
            _client(lambda request: answer) as daemon,
            pytest.raises(NotADaemon) as caught,
        ):
            daemon.tree()
        assert str(caught.value) == (
            f"http://me:[REDACTED]@127.0.0.1:8750 is not an lmvisor daemon: GET /v1/tree"
            f" answered {problem}"
        )
        assert exit_code_for(caught.value) == 1

    def test_events_without_their_list(self) -> None:
        """A JSON object without `events` from `/v1/events` is not a daemon's answer."""
        with (
            _client(lambda request: httpx.Response(200, json={"x": 1}, headers=DAEMON)) as daemon,
            pytest.raises(NotADaemon, match=r": GET /v1/events answered without `events`$"),
        ):
            daemon.events(limit=1)

    def test_an_event_that_is_not_json(self) -> None:
        """A followed stream whose event data is not JSON is `NotADaemon`, not a JSON error."""
        body = b"event: event\ndata: {oops\n\n"
        kind = {**DAEMON, "content-type": "text/event-stream"}
        stream = httpx.Response(200, content=body, headers=kind)
        with (
            _client(lambda request: stream) as daemon,
            pytest.raises(
                NotADaemon, match=r": GET /v1/events answered an event that is not JSON$"
            ),
        ):
            list(daemon.follow_events())

    def test_a_daemons_error_body_is_refused_not_foreign(self) -> None:
        """A 4xx with lmvisor's error body stays `DaemonRefused`, its code and field kept."""
        error = {"error": {"code": "unknown_module", "message": "no qa", "field": None}}
        with (
            _client(lambda request: httpx.Response(404, json=error)) as daemon,
            pytest.raises(DaemonRefused, match=r"^daemon answered 404 unknown_module: no qa$"),
        ):
            daemon.run("qa", {})

    def test_the_token_is_never_in_a_message(self) -> None:
        """The bearer token is sent, and no error message quotes it."""
        sent: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            sent.append(request.headers["authorization"])
            return httpx.Response(401, text=json.dumps({"detail": "no"}))

        client = DaemonClient(
            "http://127.0.0.1:8750", token="tok-hunter3", transport=httpx.MockTransport(handler)
        )
        with client as daemon, pytest.raises(NotADaemon) as caught:
            daemon.config()
        assert sent == ["Bearer tok-hunter3"]
        assert "hunter3" not in str(caught.value)


class TestHeartbeatBound:
    @pytest.mark.parametrize(
        ("stated", "bound"),
        [("2", 6.0), ("86400", 259_200.0), ("4e9", None), ("0", None), ("nan", None), ("x", None)],
    )
    def test_the_stated_interval_bounds_each_read(self, stated: str, bound: float | None) -> None:
        """Three stated intervals bound each wait for bytes; a value no socket timeout takes
        (4e9 s raised OverflowError out of the read), zero, NaN or text set no bound."""
        request = httpx.Request("GET", "http://127.0.0.1:1/v1/events")
        answer = httpx.Response(200, headers={"X-SSE-Heartbeat": stated}, request=request)
        assert _silence_bound(answer) == bound
        assert request.extensions.get("timeout", {}).get("read") == bound
