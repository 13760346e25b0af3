"""Tests for lmvisor.server.http_protocol's send deadline and for the refusals it answers
itself: each is counted in `lmvisor_http_refused_total` and logged once."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.runtime import Runtime
from lmvisor.server.context import ServerContext
from lmvisor.server.daemon import Daemon
from lmvisor.server.http_metrics import REFUSAL_REASONS, HttpMetrics
from lmvisor.server.http_protocol import MAX_HEAD_BYTES
from lmvisor.server.middleware import refusal_recorder
from tests.server._daemon_app import build_router
from tests.server.conftest import (
    READY_WAIT,
    DaemonProcess,
    live_daemon,
    metric_value,
    server_config,
)
from tests.server.test_http_protocol import _connected, _ok, _Transport

# Answers a client that stops reading leaves stuck: an endless stream (its request task
# waits to write) and one large body (written whole; the request is over, the bytes not).
_STUCK = ["/test/flood", "/test/big?mib=32"]


def _non_reader(host: str, port: int, path: str) -> socket.socket:
    """A connection with a small receive window that asked for `path` and reads nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.connect((host, port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode())
    return sock


def _drain_to_end(sock: socket.socket, most: int) -> tuple[int, bool]:
    """Read until the server ends the connection (EOF or reset) or `most` bytes came:
    the bytes read, and whether it ended."""
    sock.settimeout(READY_WAIT)
    got = 0
    try:
        while got < most:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return got, True
            got += len(chunk)
    except ConnectionResetError:
        return got, True
    return got, False


class TestSendDeadline:
    @pytest.mark.parametrize("path", _STUCK)
    def test_a_client_that_never_reads_is_cut_off(
        self, spawn_daemon: Callable[..., DaemonProcess], path: str
    ) -> None:
        """A client that asks for a large answer and reads none of it has its connection
        reset once the answer has been stuck for `server.send_timeout`: the refusal is
        counted, no request is left in flight, and the socket sees the end of it."""
        daemon = spawn_daemon(
            "--app", "tests.server._daemon_app:register", LMVISOR_SERVER__SEND_TIMEOUT="0.3"
        )
        host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
        sock = _non_reader(host, int(port), path)
        try:
            refused = 0.0
            for _ in range(300):
                refused = metric_value(
                    daemon.url, "lmvisor_http_refused_total", reason="send_timeout"
                )
                if refused:
                    break
                time.sleep(0.05)
            in_flight = metric_value(daemon.url, "lmvisor_http_in_flight")
            got, ended = _drain_to_end(sock, 64 << 20)
        finally:
            sock.close()
        assert (refused, in_flight) == (1.0, 1.0)  # the scrape is the one in flight
        assert ended and got < 32 << 20

    async def test_the_stuck_request_task_ends(self, runtime: Runtime) -> None:
        """The task of a stream whose client reads nothing ends at the send deadline and the
        connection is gone: the daemon's tasks and connections are back to their baseline."""
        context = ServerContext(runtime, config=server_config(send_timeout=0.2))
        context.add_router(build_router(context))
        async with live_daemon(context) as daemon:
            host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
            loop = asyncio.get_running_loop()
            await asyncio.sleep(0)
            baseline = len(asyncio.all_tasks())
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, (host, int(port)))
            await loop.sock_sendall(sock, b"GET /test/flood HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            connections = daemon._server.server_state.connections
            await _until(lambda: any(c.flow.write_paused for c in connections))
            assert len(asyncio.all_tasks()) > baseline  # the stream's task waits to write
            await _until(lambda: len(asyncio.all_tasks()) == baseline and not connections)
            tasks, open_connections = len(asyncio.all_tasks()), len(connections)
            sock.close()
        assert (tasks, open_connections) == (baseline, 0)
        assert context.http_metrics.refused_count("send_timeout") == 1

    async def test_only_a_full_buffer_is_timed(self) -> None:
        """The deadline is armed when the transport pauses writing and cancelled when it
        resumes (an answer that drains, however slowly, is never cut); a connection that
        never fills its buffer arms nothing."""
        transport, protocol = _connected(_ok, send_timeout=10.0)
        protocol.data_received(b"GET /x HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        await asyncio.sleep(0)
        assert protocol._send_timer is None
        protocol.pause_writing()
        timer = protocol._send_timer
        assert timer is not None and protocol.flow.write_paused
        protocol.resume_writing()
        assert timer.cancelled() and protocol._send_timer is None
        assert not transport.closed

    async def test_a_buffer_still_full_at_the_deadline_resets_the_connection(self) -> None:
        """Past `send_timeout` with writing still paused, the connection is aborted (not
        closed: a close would wait for the buffer to drain) and the refusal told once."""
        told: list[tuple[str, int | None]] = []
        transport, protocol = _connected(
            _ok, send_timeout=0.05, refused=lambda reason, status, _: told.append((reason, status))
        )
        aborted = _aborted(transport)
        protocol.pause_writing()
        await _until(lambda: aborted)
        assert aborted == [True] and told == [("send_timeout", None)]

    async def test_a_client_that_reads_is_timed_from_its_progress(self) -> None:
        """A buffer that shrank since the deadline was armed (the client reads, slower than
        the answer is long) gets the deadline again from there; only one that did not
        shrink for a whole deadline is reset."""
        told: list[tuple[str, int | None]] = []
        transport, protocol = _connected(
            _ok, send_timeout=0.05, refused=lambda reason, status, _: told.append((reason, status))
        )
        aborted = _aborted(transport)
        transport.buffered = 4_000_000
        protocol.pause_writing()
        first = protocol._send_timer
        transport.buffered = 3_000_000  # read meanwhile
        await _until(lambda: protocol._send_timer is not first)
        assert protocol._send_timer is not None and not aborted and not told
        await _until(lambda: aborted)  # no more progress: reset
        assert aborted == [True] and told == [("send_timeout", None)]

    async def test_a_refused_pipelined_head_is_refused_once(self) -> None:
        """A malformed head pipelined behind a request still being answered is refused
        once: its head deadline, armed while it arrived, is dropped with it."""
        told: list[tuple[str, int | None]] = []
        release = asyncio.Event()

        async def slow(scope: Any, receive: Any, send: Any) -> None:
            await release.wait()
            await _ok(scope, receive, send)

        transport, protocol = _connected(
            slow,
            header_timeout=0.05,
            refused=lambda reason, status, _: told.append((reason, status)),
        )
        protocol.data_received(b"GET /x HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\nGET /y HT")
        protocol.data_received(b"TP/9.9 \x00\r\n")
        await asyncio.sleep(0.15)  # past the head deadline
        release.set()
        await _until(lambda: transport.closed)
        assert told == [("malformed", None)]


def _aborted(transport: _Transport) -> list[bool]:
    """Make `transport.abort()` record itself (and close it); the list of calls."""
    calls: list[bool] = []

    def abort() -> None:
        calls.append(True)
        transport.closed = True

    transport.abort = abort  # type: ignore[method-assign]
    return calls


async def _until(check: Callable[[], object]) -> None:
    """Wait (up to READY_WAIT) until `check()` holds; the caller asserts what it needs."""
    end = time.monotonic() + READY_WAIT
    for _ in range(int(READY_WAIT * 100)):
        if check() or time.monotonic() > end:
            return
        await asyncio.sleep(0.01)


async def _exchange(
    daemon: Daemon, send: Callable[[asyncio.StreamWriter], Awaitable[None]]
) -> bytes:
    """Open a connection, let `send` write on it, and read what comes back until it closes."""
    host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    await send(writer)
    raw = await reader.read()
    writer.close()
    return raw


def _writes(*parts: bytes) -> Callable[[asyncio.StreamWriter], Awaitable[None]]:
    """Write `parts`, each in 4 KiB pieces with a loop step between (all of it is read
    before an answer, so closing after it does not reset the connection under it)."""

    async def send(writer: asyncio.StreamWriter) -> None:
        for part in parts:
            for at in range(0, len(part), 4096):
                writer.write(part[at : at + 4096])
                await writer.drain()
                await asyncio.sleep(0)
            await asyncio.sleep(0.05)  # the daemon (this loop) reads it

    return send


_POST = b"POST /test/echo HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
# reason -> what the client sends, and the status the daemon answers.
_REFUSALS: dict[str, tuple[Callable[[asyncio.StreamWriter], Awaitable[None]], int]] = {
    "header_timeout": (_writes(b"GET /healthz HTTP/1.1\r\nhost: 127"), 408),
    "head_too_large": (_writes(b"GET /healthz?q=" + b"a" * (MAX_HEAD_BYTES + 1 - 15)), 431),
    "malformed": (_writes(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"), 400),
    "body_timeout": (_writes(_POST + b"content-length: 50\r\n\r\n{"), 408),
    "body_too_large": (
        _writes(
            _POST + b'transfer-encoding: chunked\r\n\r\n5\r\n{"a":\r\n',
            b"0\r\nx-t: " + b"a" * (MAX_HEAD_BYTES + 8 * 5 + 5 + 1 - 8),
        ),
        413,
    ),
}


class TestRefusalsCounted:
    @pytest.mark.parametrize("reason", list(_REFUSALS))
    async def test_each_refusal_is_counted_once_and_logged_once(
        self, runtime: Runtime, reason: str
    ) -> None:
        """A request the protocol refuses increments `lmvisor_http_refused_total` for its
        reason, once, shown on `/metrics`, and has one access log line with its status:
        written by the protocol (no method or path for a head never parsed), or by the app
        that answered a refused body."""
        send, status = _REFUSALS[reason]
        config = server_config(header_timeout=0.2, body_timeout=0.2, access_log=True)
        context = ServerContext(runtime, config=config)
        context.add_router(build_router(context))
        with capture_logs(runtime) as logs:
            async with live_daemon(context) as daemon:
                raw = await _exchange(daemon, send)
                async with httpx.AsyncClient() as client:
                    text = (await client.get(daemon.url + "/metrics")).text
        assert raw.startswith(b"HTTP/1.1 %d " % status)
        counts = {
            sample.labels["reason"]: sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "lmvisor_http_refused"
            for sample in family.samples
            if sample.name == "lmvisor_http_refused_total"
        }
        assert counts == {other: float(other == reason) for other in REFUSAL_REASONS}
        lines = [
            entry
            for entry in logs
            if entry["event"] == "http.request" and entry.get("path") != "/metrics"
        ]
        assert [line["status"] for line in lines] == [status]
        if reason.startswith("body"):
            assert lines[0]["path"] == "/test/echo" and "refused" not in lines[0]
        else:
            assert (lines[0]["method"], lines[0]["path"], lines[0]["refused"]) == (
                None,
                None,
                reason,
            )


class TestRefusalRecorder:
    def test_a_line_per_refusal_unless_the_app_answered_it(self, runtime: Runtime) -> None:
        """Every refusal is counted; a refused head gets its `http.request` line, a request
        the app saw an `http.refused` line beside the app's own (a reset after its answer
        too), a refused body none (its app writes that one), nothing with the log off."""
        metrics = HttpMetrics(runtime.metrics)
        record = refusal_recorder(metrics, access_log=True)
        quiet = refusal_recorder(metrics, access_log=False)
        scope: dict[str, Any] = {"method": "GET", "path": "/v1/events"}
        with capture_logs(runtime) as logs:
            record("send_timeout", None, scope)
            record("send_timeout", None, None)
            record("malformed", 400, None)
            record("body_timeout", None, scope)
            quiet("malformed", 400, None)
        assert [(e["event"], e["method"], e["path"], e["status"], e["refused"]) for e in logs] == [
            ("http.refused", "GET", "/v1/events", None, "send_timeout"),
            ("http.refused", None, None, None, "send_timeout"),
            ("http.request", None, None, 400, "malformed"),
        ]
        counts = [metrics.refused_count(reason) for reason in REFUSAL_REASONS]
        assert counts == [0, 0, 2, 1, 0, 2]

    def test_an_unknown_reason_is_refused(self, runtime: Runtime) -> None:
        """A reason outside the fixed set raises rather than growing the label set."""
        metrics = HttpMetrics(runtime.metrics)
        with pytest.raises(ValueError, match=r"^unknown refusal reason 'oops'$"):
            metrics.refused("oops")
