"""Fixtures for the server tests: the app in-process, a live server, daemon and LM processes.

Daemon processes get their own data directory each, and talk to a loopback LM
server running in its own process (`lm_process`, one per session), as a daemon
talks to a vendor: through `providers.openai`.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lmvisor.config.schema import LmvisorConfig
from lmvisor.providers.sse import SSEDecoder
from lmvisor.runtime.runtime import Runtime
from lmvisor.server.app import create_app
from lmvisor.server.client import DaemonClient
from lmvisor.server.context import ServerContext
from lmvisor.server.daemon import Daemon, bind_socket
from lmvisor.server.readiness import providers_ready
from lmvisor.server.sse import SSE_MEDIA_TYPE
from lmvisor.services.app import App
from tests.server._daemon_app import build_router

ROOT = Path(__file__).resolve().parents[2]
READY_WAIT = 30.0
APP_TREE = ["system", "cache", "lm", "modules", "optimization"]
"""The root's children in a daemon: the application tree, in start order."""


def metric_value(url: str, name: str, **labels: str) -> float:
    """The value of one sample on the daemon's `/metrics` (0 when absent)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def server_config(**server: Any) -> LmvisorConfig:
    """A config with these `server` settings (access log off, to keep test output short)."""
    return LmvisorConfig.model_validate(
        {"server": {"access_log": False, **server}, "logging": {"level": "warning"}}
    )


@asynccontextmanager
async def app_client(
    runtime: Runtime, *, with_test_routes: bool = True, **server: Any
) -> AsyncIterator[tuple[ServerContext, httpx.AsyncClient]]:
    """The app over `runtime` (with these server settings), and an in-process client for it."""
    context = ServerContext(runtime, config=server_config(**server))
    if with_test_routes:
        context.add_router(build_router(context))
    app = create_app(context)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://daemon.test") as client:
        yield context, client


@asynccontextmanager
async def api_client(
    app: App, **server: Any
) -> AsyncIterator[tuple[ServerContext, httpx.AsyncClient]]:
    """The HTTP API over the application tree `app` (these server settings), in-process."""
    context = ServerContext(app.runtime, config=server_config(**server), app=app)
    context.add_readiness_check("providers", providers_ready(app))
    transport = httpx.ASGITransport(app=create_app(context))
    async with httpx.AsyncClient(transport=transport, base_url="http://daemon.test") as client:
        yield context, client


def sse_items(answer: httpx.Response) -> list[tuple[str, Any]]:
    """Every event of a whole SSE answer as (event name, parsed data)."""
    assert answer.headers["content-type"].startswith(SSE_MEDIA_TYPE)
    events = SSEDecoder().feed(answer.content)
    return [(event.event, json.loads(event.data) if event.data else None) for event in events]


@asynccontextmanager
async def live_daemon(context: ServerContext) -> AsyncIterator[Daemon]:
    """`context` served over real HTTP on a free loopback port (no signal handlers)."""
    daemon = Daemon(context, create_app(context), bind_socket("127.0.0.1", 0))
    task = asyncio.ensure_future(daemon.run(signals=False))
    await asyncio.wait_for(daemon.ready.wait(), READY_WAIT)
    try:
        yield daemon
    finally:
        daemon.drain("test over")
        await asyncio.wait_for(task, READY_WAIT)


class LMProcess:
    """A loopback LM server (`python -m lmvisor.testing.lm_server`) in its own process."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    def env(self) -> dict[str, str]:
        """Daemon settings that make `openai/...` models answer from this server."""
        return {
            "LMVISOR_PROVIDERS__OPENAI__BASE_URL": self.url + "/v1",
            "LMVISOR_PROVIDERS__OPENAI__API_KEY": "sk-test-loopback",
        }

    def settings(self, **values: float) -> None:
        """Change `latency` / `jitter` (seconds) for every later request."""
        httpx.post(self.url + "/_control/settings", json=values, timeout=10).raise_for_status()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_lm_process(*args: str) -> LMProcess:
    """Start a loopback LM server process and wait for the URL it prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmvisor.testing.lm_server", "--port", "0", *args],
        cwd=ROOT,
        env=daemon_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise AssertionError(f"the LM server printed {url!r}")
    return LMProcess(proc, url)


@pytest.fixture(scope="session")
def lm_process() -> Iterator[LMProcess]:
    """One loopback LM server process for the session (tests that change it reset it)."""
    server = start_lm_process()
    try:
        yield server
    finally:
        server.stop()


class DaemonProcess:
    """A `lmvisor serve` subprocess on a free loopback port; its stderr lines are collected."""

    def __init__(self, proc: subprocess.Popen[str], data_dir: str | None = None) -> None:
        self.proc = proc
        self.data_dir = data_dir
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self.url = ""
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def next_log(self, event: str, timeout: float = READY_WAIT) -> dict[str, Any]:
        """The next JSON log line whose `event` is `event` (earlier lines are kept in `log`)."""
        end = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(end - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no {event!r} log line; got: {self.log[-20:]}") from None
            self.log.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event:
                result: dict[str, Any] = record
                return result

    def wait_ready(self) -> None:
        self.url = str(self.next_log("server.ready")["url"])

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = READY_WAIT) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Kill the process if it still runs, then release its pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._pump_thread.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def daemon_env(**extra: str) -> dict[str, str]:
    """The test process's environment without LMVISOR_ settings or vendor keys, plus `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("LMVISOR_") and not key.endswith("_API_KEY")
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def start_daemon(*args: str, cwd: Path = ROOT, **env: str) -> DaemonProcess:
    """Start `python -m lmvisor.server serve --port 0 ARGS` (not yet waited for).

    It gets a fresh data directory (removed by `stop`) unless LMVISOR_DATA_DIR is given.
    """
    data_dir = None
    if "LMVISOR_DATA_DIR" not in env:
        data_dir = tempfile.mkdtemp(prefix="lmvisor-daemon-")
        env["LMVISOR_DATA_DIR"] = data_dir
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmvisor.server", "serve", "--port", "0", *args],
        cwd=cwd,
        env=daemon_env(**{"LMVISOR_SERVER__ACCESS_LOG": "false", **env}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return DaemonProcess(proc, data_dir)


@pytest.fixture
def spawn_daemon() -> Iterator[Callable[..., DaemonProcess]]:
    """Start daemon processes (ready) for one test; each is killed if still running after it."""
    started: list[DaemonProcess] = []

    def spawn(*args: str, **env: str) -> DaemonProcess:
        daemon = start_daemon(*args, **env)
        started.append(daemon)
        daemon.wait_ready()
        return daemon

    yield spawn
    for daemon in started:
        daemon.stop()


@pytest.fixture(scope="session")
def shared_daemon(lm_process: LMProcess) -> Iterator[DaemonProcess]:
    """One daemon (test routes, the `lm_process` LM) shared by the session's read-only tests."""
    daemon = start_daemon("--app", "tests.server._daemon_app:register", **lm_process.env())
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.signal(signal.SIGTERM)
        try:
            daemon.wait(READY_WAIT)
        finally:
            daemon.stop()


@pytest.fixture
def silent_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """A loopback port that accepts connections and never answers: `silent_host(module)`
    returns its URL and makes `module`'s `client(url, token)` a `DaemonClient` that waits
    0.2 s, so a CLI command pointed at it gives up at once."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()

    def point(module: str) -> str:
        def quick(url: str, token: str | None) -> DaemonClient:
            return DaemonClient(url, token=token, timeout=0.2)

        monkeypatch.setattr(f"{module}.client", quick)
        return f"http://127.0.0.1:{silent.getsockname()[1]}"

    with silent:
        yield point
