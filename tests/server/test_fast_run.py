"""Tests for lmvisor.server.fast_run: the hot route answers like the documented one."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.server.errors import ClientDisconnected
from lmvisor.server.fast_run import RunFastPath, parse_run_body
from lmvisor.server.http_protocol import CANCEL_ON_DISCONNECT, CLIENT_GONE
from lmvisor.services.app import App
from tests.server.conftest import (
    DaemonProcess,
    LMProcess,
    api_client,
    metric_value,
    start_lm_process,
)

QA = {"module": "Predict", "signature": "question -> answer"}
_JSON = {"content-type": "application/json"}


class TestParse:
    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            (b'{"inputs": {"q": 1}}', ({"q": 1}, None)),
            (b'{"inputs": {}, "timeout": 2}', ({}, 2.0)),
            (b'{"inputs": {}, "timeout": null}', ({}, None)),
            (b'{"inputs": {}, "timeout": 0}', None),
            (b'{"inputs": {}, "timeout": true}', None),
            (b'{"inputs": {}, "timeout": "5"}', None),
            (b'{"inputs": {}, "timeout": 1e400}', None),
            (b'{"inputs": {}, "extra": 1}', None),
            (b'{"inputs": [1]}', None),
            (b"[]", None),
            (b"{", None),
        ],
    )
    def test_only_well_formed_bodies_are_taken(
        self, body: bytes, expected: tuple[dict[str, Any], float | None] | None
    ) -> None:
        """A body the route would accept as is parses; anything else is left to the route."""
        assert parse_run_body(body) == expected


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class TestFastPath:
    async def test_answers_like_the_route(self, app: App) -> None:
        """A well-formed run answers the RunResult, counted under the route's template."""
        async with api_client(app) as (_, client):
            await client.post("/v1/programs", json={"id": "qa", "program": QA})
            answer = await client.post("/v1/programs/qa/run", json={"inputs": {"question": "q"}})
            metrics = (await client.get("/metrics")).text
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        assert set(answer.json()["outputs"]) == {"answer"}
        assert 'route="/v1/programs/{program_id}/run",status="200"' in metrics

    @pytest.mark.parametrize(
        ("content", "headers", "field"),
        [
            (b'{"inputs": {}, "extra": 1}', _JSON, "body.extra"),
            (b'{"inputs": {"question": "q"}}', {"content-type": "text/plain"}, "body"),
            (b'{"inputs": {}, "timeout": -1}', _JSON, "body.timeout"),
        ],
    )
    async def test_malformed_runs_get_the_routes_422(
        self, app: App, content: bytes, headers: dict[str, str], field: str
    ) -> None:
        """What the fast path does not take, the route answers, with its field paths."""
        async with api_client(app) as (_, client):
            await client.post("/v1/programs", json={"id": "qa", "program": QA})
            answer = await client.post("/v1/programs/qa/run", content=content, headers=headers)
        assert answer.status_code == 422
        assert answer.json()["error"]["field"] == field

    async def test_failures_are_typed(self, app: App) -> None:
        """An unknown id and a missing input are the same typed errors as on the route, and
        no typed error is logged as unhandled."""
        with capture_logs(app.runtime) as logs:
            async with api_client(app) as (_, client):
                await client.post("/v1/programs", json={"id": "qa", "program": QA})
                missing = await client.post("/v1/programs/nope/run", json={"inputs": {}})
                bad = await client.post("/v1/programs/qa/run", json={"inputs": {}})
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "unknown_module")
        assert (bad.status_code, bad.json()["error"]["field"]) == (422, "inputs.question")
        assert not [entry for entry in logs if entry["event"] == "http.unhandled_error"]

    async def test_a_streamed_body_over_the_limit_is_a_typed_413(self, app: App) -> None:
        """A body sent without a length that passes the limit is refused with a typed 413."""
        big = b'{"inputs": {"question": "' + b"x" * 5000 + b'"}}'
        async with api_client(app, max_body_bytes=1024) as (_, client):
            answer = await client.post(
                "/v1/programs/qa/run",
                content=_chunks(big, 512),
                headers={"content-type": "application/json"},
            )
        assert answer.status_code == 413
        assert (answer.json()["error"]["code"], answer.json()["error"]["field"]) == (
            "request_too_large",
            "body",
        )


class TestCancellation:
    @pytest.mark.parametrize("client_gone", [True, False])
    async def test_only_the_disconnect_cancellation_becomes_a_499(self, client_gone: bool) -> None:
        """A run cancelled because its client left (the protocol marks `CLIENT_GONE`) ends as
        `ClientDisconnected`; any other cancellation of it (a drain's, a deadline's) passes
        through as a cancellation, for its own handler to answer."""
        started = asyncio.Event()

        async def run(*args: Any) -> Any:
            started.set()
            await asyncio.Event().wait()

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b'{"inputs": {"question": "q"}}'}

        async def send(message: Any) -> None:
            raise AssertionError("nothing is sent for a cancelled run")

        context: Any = SimpleNamespace(server=SimpleNamespace(max_body_bytes=1024))
        fast = RunFastPath(send, context=context, route=None, run=run)
        scope: dict[str, Any] = {
            "type": "http",
            "method": "POST",
            "path": "/v1/programs/qa/run",
            "headers": [(b"content-type", b"application/json")],
        }
        task = asyncio.create_task(fast(scope, receive, send))
        await started.wait()
        if client_gone:
            scope[CLIENT_GONE] = True
        task.cancel()
        if client_gone:
            with pytest.raises(ClientDisconnected):
                await task
        else:
            with pytest.raises(asyncio.CancelledError):
                await task
        assert scope[CANCEL_ON_DISCONNECT] is None


def _until(check: Callable[[], bool], what: str, attempts: int = 300) -> None:
    """Poll `check` (every 50 ms) until it holds; fail naming `what` if it never does."""
    for _ in range(attempts):
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def _lm_stats(lm: LMProcess) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(lm.url + "/stats", timeout=10).json()
    return stats


def _access_line(daemon: DaemonProcess, path: str) -> dict[str, Any]:
    """The daemon's next access log line for `path` (lines for other paths are skipped)."""
    while True:
        line = daemon.next_log("http.request")
        if line["path"] == path:
            return line


_RUN = "/v1/programs/qa/run"


class TestClientDisconnect:
    def test_a_run_whose_client_leaves_is_cancelled(
        self, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """A client that sends a run and hangs up while the LM is still thinking cancels the
        run (fast path and route alike): the LM request is abandoned, not answered, the
        execution is recorded as `cancelled`, the access log and the metrics show a 499,
        and the daemon serves the next run."""
        lm = start_lm_process("--latency", "1.0")
        try:
            daemon = spawn_daemon(
                "--app", "tests.server._daemon_app:register_qa",
                LMVISOR_SERVER__ACCESS_LOG="true", **lm.env(),
            )  # fmt: skip
            host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
            # The fast path takes the first; the second content type goes to the route.
            for n, content_type in enumerate(
                ("application/json", "application/json;charset=UTF-8")
            ):
                body = json.dumps({"inputs": {"question": f"anyone there {n}?"}}).encode()
                head = (
                    f"POST {_RUN} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {content_type}\r\n"
                    f"content-length: {len(body)}\r\n\r\n"
                ).encode()
                with socket.create_connection((host, int(port))) as sock:
                    sock.sendall(head + body)
                    _until(lambda: _lm_stats(lm)["in_flight"] == 1, "the LM request arrived")
                line = _access_line(daemon, _RUN)
                assert (line["status"], line["route"]) == (499, "/v1/programs/{program_id}/run")
                _until(lambda: _lm_stats(lm)["in_flight"] == 0, "the LM request ended")
            stats = _lm_stats(lm)
            # Two LM requests, both dropped by the daemon before their answer (status 0).
            assert stats["by_path"]["/v1/chat/completions"] == 2
            assert stats["by_status"] == {"0": 2}
            cancelled = metric_value(daemon.url, "lmvisor_module_errors_total", error="cancelled")
            assert cancelled == 2
            assert metric_value(daemon.url, "lmvisor_http_requests_total", status="499") == 2
            events = httpx.get(
                daemon.url + "/v1/events", params={"type": "module_execution_complete"}
            ).json()["events"]
            assert [e["data"]["error"]["code"] for e in events] == ["cancelled", "cancelled"]
            lm.settings(latency=0.0)
            answer = httpx.post(daemon.url + _RUN, json={"inputs": {"question": "still up?"}})
            assert answer.status_code == 200, answer.text
            _access_line(daemon, _RUN)  # every line before this run's is in `daemon.log` now
        finally:
            lm.stop()
        # A typed outcome: neither the plumbing nor uvicorn logged the cancellation as an error.
        errors = [line for line in daemon.log if '"level":"error"' in line.replace(" ", "")]
        assert not errors, errors


class TestClientBuildError:
    def test_a_request_the_http_client_will_not_build_is_a_500_not_the_callers_fault(
        self, spawn_daemon: Callable[..., DaemonProcess], lm_process: LMProcess
    ) -> None:
        """An API key with a trailing newline (read from a file) makes the HTTP client
        refuse to build the vendor request with a ValueError: the run is answered a typed,
        non-retryable 500 `provider_request_build` naming the provider and model (it was a
        422 `invalid_input`, blaming the caller), without the key; the caller's own bad
        input is still a 422."""
        env = {**lm_process.env(), "LMVISOR_PROVIDERS__OPENAI__API_KEY": "sk-test-newline\n"}
        daemon = spawn_daemon("--app", "tests.server._daemon_app:register_qa", **env)
        with httpx.Client(base_url=daemon.url, timeout=10) as client:
            built = client.post(_RUN, json={"inputs": {"question": "q"}})
            missing = client.post(_RUN, json={"inputs": {}})
        assert built.status_code == 500
        error = built.json()["error"]
        assert error["code"] == "provider_request_build"
        assert error["message"].startswith(
            "openai: the HTTP client could not build the request for model 'gpt-4o-mini': "
        )
        assert "sk-test-newline" not in built.text
        assert (missing.status_code, missing.json()["error"]["code"]) == (422, "invalid_input")
