"""Tests for lmvisor.server.daemon: the daemon as a real process over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from lmvisor.config.schema import LmvisorConfig, ServerConfig
from lmvisor.server.cli import app
from lmvisor.server.daemon import daemon_config, loop_factory, tune_gc
from lmvisor.server.errors import EXIT_FAILURE, EXIT_OK, StartupError
from tests.server.conftest import APP_TREE, ROOT, DaemonProcess, daemon_env

_APP = ("--app", "tests.server._daemon_app:register")
_JSON = {"content-type": "application/json"}
_BAD_INPUT = [
    ("GET", "/v1/events", {"params": {"limit": "x"}}, 422, "validation_error", "query.limit"),
    ("GET", "/nowhere", {}, 404, "not_found", None),
    ("DELETE", "/v1/tree", {}, 405, "method_not_allowed", None),
    ("POST", "/test/echo", {"content": b"{", "headers": _JSON}, 400, "invalid_json", "body"),
    ("POST", "/test/echo", {"content": b"x" * (5 << 20)}, 413, "request_too_large", "body"),
    (
        "GET",
        "/healthz",
        {"headers": {"X-Request-Timeout": "-3"}},
        400,
        "invalid_header",
        "X-Request-Timeout",
    ),
]


class TestServedOverHttp:
    def test_health_tree_and_events(self, shared_daemon: DaemonProcess) -> None:
        """A running daemon answers health, readiness, its tree and its start-up event."""
        with httpx.Client(base_url=shared_daemon.url) as client:
            assert client.get("/healthz").json()["status"] == "ok"
            assert client.get("/readyz").json()["status"] == "ready"
            tree = client.get("/v1/tree").json()
            events = client.get("/v1/events", params={"type": "server.ready"}).json()
        assert [child["id"] for child in tree["children"]] == [*APP_TREE, "fragile"]
        assert events["events"][0]["data"]["url"] == shared_daemon.url

    def test_metrics_parse(self, shared_daemon: DaemonProcess) -> None:
        """/metrics parses with prometheus_client's text parser and has runtime families."""
        with httpx.Client(base_url=shared_daemon.url) as client:
            client.get("/v1/tree")
            text = client.get("/metrics").text
        names = {family.name for family in text_string_to_metric_families(text)}
        assert {"lmvisor_actors_alive", "lmvisor_http_requests", "lmvisor_mailbox_depth"} <= names

    def test_correlation_id_reaches_events(self, shared_daemon: DaemonProcess) -> None:
        """An event a request emits carries the request's correlation id."""
        with httpx.Client(base_url=shared_daemon.url) as client:
            client.post("/test/emit", headers={"X-Correlation-ID": "daemon-cid-1"})
            found = client.get("/v1/events", params={"correlation_id": "daemon-cid-1"}).json()
        assert [event["type"] for event in found["events"]] == ["test.emitted"]

    @pytest.mark.parametrize(("method", "path", "kwargs", "status", "code", "field"), _BAD_INPUT)
    def test_bad_input_gets_typed_4xx(
        self,
        shared_daemon: DaemonProcess,
        method: str,
        path: str,
        kwargs: dict[str, Any],
        status: int,
        code: str,
        field: str | None,
    ) -> None:
        """Bad input is a 4xx with {"error": {code, message, field}}, never a 500."""
        with httpx.Client(base_url=shared_daemon.url) as client:
            answer = client.request(method, path, **kwargs)
        assert answer.status_code == status
        error = answer.json()["error"]
        assert (error["code"], error["field"]) == (code, field)
        assert error["message"]
        assert error["correlation_id"] == answer.headers["x-correlation-id"]


class TestAuth:
    def test_token_required_and_open_paths(
        self, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """With a token: 401 without it, 200 with it, /healthz open, /metrics open by config."""
        daemon = spawn_daemon(
            LMVISOR_SERVER__TOKEN="proc-token-1",
            LMVISOR_SERVER__OPEN_PATHS='["/healthz", "/metrics"]',
        )
        with httpx.Client(base_url=daemon.url) as client:
            assert client.get("/v1/tree").status_code == 401
            authed = {"Authorization": "Bearer proc-token-1"}
            assert client.get("/v1/tree", headers=authed).status_code == 200
            assert client.get("/healthz").status_code == 200
            assert client.get("/metrics").status_code == 200
        assert not any("proc-token-1" in line for line in daemon.log)

    def test_refuses_public_bind_without_token(self) -> None:
        """`serve --host 0.0.0.0` without a token exits 2 with one readable line."""
        result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "0"], env={})
        assert result.exit_code == 2
        assert result.stderr.splitlines() == [
            "error: refusing to listen on '0.0.0.0' without authentication: it is not a loopback"
            " address; set server.token (or LMVISOR_SERVER__TOKEN) or bind 127.0.0.1"
        ]


class TestLogs:
    def test_json_logs_carry_the_correlation_id(
        self, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """The daemon logs JSON lines; a request's access line carries its correlation id."""
        daemon = spawn_daemon(LMVISOR_SERVER__ACCESS_LOG="true")
        with httpx.Client(base_url=daemon.url) as client:
            client.get("/v1/tree", headers={"X-Correlation-ID": "log-cid-7"})
        line = daemon.next_log("http.request")
        assert line["correlation_id"] == "log-cid-7"
        assert (line["path"], line["status"]) == ("/v1/tree", 200)


async def _get(client: httpx.AsyncClient, path: str) -> httpx.Response | BaseException:
    try:
        return await client.get(path)
    except httpx.HTTPError as exc:
        return exc


class TestShutdown:
    async def test_sigterm_drains_in_flight_requests(
        self, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """SIGTERM with 200 requests in flight: every one completes, then the daemon exits 0."""
        daemon = spawn_daemon(*_APP, LMVISOR_SERVER__DRAIN_TIMEOUT="20")
        limits = httpx.Limits(max_connections=250)
        async with httpx.AsyncClient(base_url=daemon.url, limits=limits, timeout=30) as client:
            calls = [
                asyncio.ensure_future(_get(client, "/test/slow?seconds=0.8")) for _ in range(200)
            ]
            await _until_in_flight(client, daemon, 200)
            daemon.signal(signal.SIGTERM)
            results = await asyncio.gather(*calls)
            late = await _get(client, "/healthz")
        assert [getattr(r, "status_code", r) for r in results] == [200] * 200
        assert isinstance(late, httpx.ConnectError)
        code = await asyncio.get_running_loop().run_in_executor(None, daemon.wait)
        assert code == EXIT_OK
        assert daemon.next_log("server.stopped")["exit_code"] == 0

    async def test_drain_timeout_cuts_off_with_typed_503(
        self, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """Requests still running when the drain timeout ends get a typed 503 `draining`."""
        daemon = spawn_daemon(*_APP, LMVISOR_SERVER__DRAIN_TIMEOUT="0.3")
        async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as client:
            calls = [asyncio.ensure_future(_get(client, "/test/slow?seconds=25")) for _ in range(5)]
            await _until_in_flight(client, daemon, 5)
            daemon.signal(signal.SIGTERM)
            results = await asyncio.gather(*calls)
        for result in results:
            assert isinstance(result, httpx.Response), result
            assert result.status_code == 503
            assert result.json()["error"]["code"] == "draining"
        assert await asyncio.get_running_loop().run_in_executor(None, daemon.wait) == EXIT_OK

    def test_root_giving_up_exits_non_zero(
        self, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """When the root supervisor exceeds its restart intensity, the daemon exits 1."""
        daemon = spawn_daemon(*_APP)
        with httpx.Client(base_url=daemon.url) as client:
            # The root allows 3 restarts in 5 s; a crash sent while the child is
            # restarting finds no one (a 503), so keep sending until the process ends.
            for _ in range(50):
                try:
                    client.post("/test/crash-child")
                except httpx.TransportError:
                    break
                if daemon.proc.poll() is not None:
                    break
                time.sleep(0.05)
        assert daemon.wait() == EXIT_FAILURE
        assert daemon.next_log("server.root_exited")["level"] == "critical"


async def _until_in_flight(client: httpx.AsyncClient, daemon: DaemonProcess, count: int) -> None:
    """Wait until the daemon has `count` slow requests running (read from its own metrics)."""
    for _ in range(600):
        answer = await client.get("/metrics")
        for family in text_string_to_metric_families(answer.text):
            running = sum(sample.value for sample in family.samples)
            # The /metrics request itself is in flight too.
            if family.name == "lmvisor_http_in_flight" and running >= count + 1:
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} requests in flight")


class TestStartFailures:
    def test_busy_port_exits_1(self) -> None:
        """A port already in use is a runtime failure: exit 1, one readable line."""
        with socket.create_server(("127.0.0.1", 0)) as taken:
            port = str(taken.getsockname()[1])
            done = subprocess.run(
                [sys.executable, "-m", "lmvisor.server", "serve", "--port", port],
                cwd=ROOT,
                env=daemon_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == [
            "error: Address already in use (while attempting to bind on address"
            f" ('127.0.0.1', {port}))"
        ]

    def test_bad_app_hook_exits_2(self) -> None:
        """An `--app` that cannot be imported is a usage error: exit 2."""
        result = CliRunner().invoke(app, ["serve", "--port", "0", "--app", "nope.mod:f"])
        assert result.exit_code == 2
        assert result.stderr.startswith("error: cannot load app hook 'nope.mod:f'")


class TestUnits:
    def test_auto_logging_becomes_json(self) -> None:
        """The daemon writes JSON lines unless console mode was asked for."""
        assert daemon_config(LmvisorConfig()).logging.mode == "json"
        console = LmvisorConfig.model_validate({"logging": {"mode": "console"}})
        assert daemon_config(console).logging.mode == "console"

    def test_loop_choice(self) -> None:
        """asyncio is the default loop when asked; auto and uvloop pick uvloop when installed."""
        assert loop_factory("asyncio") == (None, "asyncio")
        factory, name = loop_factory("auto")
        assert name == "uvloop" and factory is not None

    def test_uvloop_missing_is_a_startup_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Asking for uvloop without it installed is a StartupError naming the extra."""
        monkeypatch.setitem(sys.modules, "uvloop", None)
        with pytest.raises(StartupError, match=r"pip install 'lmvisor\[fast\]'"):
            loop_factory("uvloop")
        assert loop_factory("auto") == (None, "asyncio")

    def test_gc_tuning(self) -> None:
        """GC tuning freezes the start-up heap and raises gen-0; off leaves GC alone."""
        before = gc.get_threshold()
        try:
            assert not tune_gc(ServerConfig(gc_tuning=False))
            assert gc.get_threshold() == before
            assert tune_gc(ServerConfig(gc_gen0_threshold=12_345))
            assert gc.get_threshold()[0] == 12_345
            assert gc.get_freeze_count() > 0
        finally:
            gc.unfreeze()
            gc.set_threshold(*before)


def test_json_lines_only(shared_daemon: DaemonProcess) -> None:
    """Every stderr line the daemon wrote so far is a JSON object."""
    assert shared_daemon.log
    for line in shared_daemon.log:
        assert isinstance(json.loads(line), dict)
