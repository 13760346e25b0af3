"""Tests for lmvisor.server.http_protocol: a response's head goes out with its body; a head
or a body that does not arrive in time gets a typed 408."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from lmvisor.runtime.runtime import Runtime
from lmvisor.server.context import ServerContext
from lmvisor.server.http_protocol import (
    BODY_LATE,
    CANCEL_ON_DISCONNECT,
    CLIENT_GONE,
    MAX_HEAD_BYTES,
    _HeadWithBody,
    http_protocol,
)
from tests.server._daemon_app import build_router
from tests.server.conftest import READY_WAIT, DaemonProcess, live_daemon, server_config

_REQUEST = b"GET /x HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"


class _Transport(asyncio.Transport):
    """Records each write call: one entry per `write`, one joined entry per `writelines`."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bytes] = []
        self.closed = False
        self.buffered = 0  # what `get_write_buffer_size` reports (a test sets it)

    def write(self, data: Any) -> None:
        self.calls.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append(b"".join(list_of_data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5000)}.get(name, default)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _connected(app: Any, **timeouts: float) -> tuple[_Transport, Any]:
    """The daemon's protocol (with `timeouts`) serving `app` on a fresh recording transport."""
    protocol_class = http_protocol(**timeouts)
    assert not isinstance(protocol_class, str)
    config = uvicorn.Config(app, http=protocol_class, lifespan="off", log_config=None)
    config.load()
    protocol: Any = protocol_class(config, ServerState(), {}, asyncio.get_running_loop())  # type: ignore[call-arg]
    transport = _Transport()
    protocol.connection_made(transport)
    return transport, protocol


async def _serve_one(app: Any) -> tuple[_Transport, Any]:
    transport, protocol = _connected(app)
    protocol.data_received(_REQUEST)
    return transport, protocol


async def _eventually(check: Callable[[], object]) -> None:
    """Wait (up to half a second) until `check()` holds; the caller asserts what it needs."""
    for _ in range(50):
        if check():
            return
        await asyncio.sleep(0.01)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class TestProtocol:
    async def test_a_json_answer_is_one_write(self) -> None:
        """Head and body sent in one step leave in a single write, head first."""

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"{}"})

        transport, _ = await _serve_one(app)
        await _settle()
        assert len(transport.calls) == 1
        assert transport.calls[0].startswith(b"HTTP/1.1 200 OK\r\n")
        assert transport.calls[0].endswith(b"\r\n\r\n{}")

    async def test_a_head_waits_for_no_later_step(self) -> None:
        """A head whose body is not ready goes out alone at the end of its step."""
        release = asyncio.Event()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            headers = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await release.wait()
            await send({"type": "http.response.body", "body": b"data: 1\n\n"})

        transport, _ = await _serve_one(app)
        await _settle()
        assert len(transport.calls) == 1
        assert transport.calls[0].startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"transfer-encoding: chunked" in transport.calls[0]
        release.set()
        await _settle()
        assert transport.calls[1:] == [b"9\r\ndata: 1\n\n\r\n0\r\n\r\n"]


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


class TestKeepAlive:
    async def test_one_timer_serves_many_requests(self) -> None:
        """Requests on one connection reuse the timer armed after the first response."""
        transport, protocol = await _serve_one(_ok)
        await _settle()
        timer = protocol.timeout_keep_alive_task
        assert timer is not None
        for _ in range(3):
            protocol.data_received(_REQUEST)
            assert protocol._idle_since is None
            await _settle()
            assert protocol.timeout_keep_alive_task is timer
        assert len(transport.calls) == 4
        assert not transport.closed

    async def test_an_idle_connection_closes_when_the_timer_fires(self) -> None:
        """Idle for the whole timeout: the timer closes the connection."""
        transport, protocol = await _serve_one(_ok)
        await _settle()
        protocol._idle_since -= protocol.timeout_keep_alive
        protocol.timeout_keep_alive_task.cancel()
        protocol.timeout_keep_alive_handler()
        assert transport.closed

    async def test_a_recently_idle_connection_is_given_the_rest(self) -> None:
        """Idle for less than the timeout: the timer re-arms, the connection stays open."""
        transport, protocol = await _serve_one(_ok)
        await _settle()
        first = protocol.timeout_keep_alive_task
        first.cancel()
        protocol.timeout_keep_alive_handler()
        assert not transport.closed
        assert protocol.timeout_keep_alive_task not in (None, first)

    async def test_a_busy_connection_is_rearmed_by_its_response(self) -> None:
        """The timer firing mid-request leaves the connection; the response's end re-arms it."""
        release = asyncio.Event()

        async def slow(scope: Scope, receive: Receive, send: Send) -> None:
            await release.wait()
            await _ok(scope, receive, send)

        transport, protocol = await _serve_one(_ok)
        await _settle()
        protocol.app = slow
        protocol.data_received(_REQUEST)
        protocol.timeout_keep_alive_task.cancel()
        protocol.timeout_keep_alive_handler()
        assert protocol.timeout_keep_alive_task is None
        assert not transport.closed
        release.set()
        await _settle()
        assert protocol.timeout_keep_alive_task is not None
        assert not transport.closed

    async def test_a_lost_connection_cancels_its_timer(self) -> None:
        """Losing the connection cancels the armed timer."""
        _, protocol = await _serve_one(_ok)
        await _settle()
        timer = protocol.timeout_keep_alive_task
        protocol.connection_lost(None)
        assert protocol.timeout_keep_alive_task is None
        assert timer.cancelled()


class TestDisconnect:
    @pytest.mark.parametrize(("opted_in", "started"), [(True, False), (False, False), (True, True)])
    async def test_only_an_unanswered_request_that_asked_is_cancelled(
        self, opted_in: bool, started: bool
    ) -> None:
        """Losing the connection cancels the request's task only when it put itself in its
        scope and its answer has not started; `CLIENT_GONE` marks that cancellation."""
        seen: dict[str, Any] = {}
        release = asyncio.Event()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            seen["scope"] = scope
            if opted_in:
                scope[CANCEL_ON_DISCONNECT] = asyncio.current_task()
            if started:
                await send({"type": "http.response.start", "status": 200, "headers": []})
            try:
                await release.wait()
            except asyncio.CancelledError:
                seen["cancelled"] = True
                raise

        _, protocol = await _serve_one(app)
        await _settle()
        protocol.connection_lost(None)
        await _settle()
        cancelled = opted_in and not started
        assert seen.get("cancelled", False) is cancelled
        assert seen["scope"].get(CLIENT_GONE, False) is cancelled
        release.set()
        await _settle()

    @pytest.mark.parametrize("opted_in", [True, False])
    async def test_a_pipelined_request_does_not_hide_the_one_being_answered(
        self, opted_in: bool
    ) -> None:
        """Losing a connection with a request queued behind the one being answered cancels
        the answered one's task when it asked, and else its `receive` learns of it: uvicorn
        told only the queued one, and the run went on to write to a closed connection."""
        seen: dict[str, Any] = {}

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["path"] != "/x":
                await _ok(scope, receive, send)
                return
            seen["scope"] = scope
            if opted_in:
                scope[CANCEL_ON_DISCONNECT] = asyncio.current_task()
            try:
                await receive()  # the (empty) body
                seen["next"] = (await receive())["type"]
            except asyncio.CancelledError:
                seen["cancelled"] = True
                raise

        _, protocol = await _serve_one(app)
        protocol.data_received(b"GET /y HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        await _settle()
        assert len(protocol.pipeline) == 1
        protocol.connection_lost(None)
        await _settle()
        if opted_in:
            assert seen.get("cancelled") and seen["scope"][CLIENT_GONE]
        else:
            assert seen["next"] == "http.disconnect"
            assert CLIENT_GONE not in seen["scope"]


class TestMalformed:
    async def test_an_unparsable_head_gets_a_typed_400(self) -> None:
        """A head httptools cannot parse is answered with the daemon's typed error body
        (uvicorn's was plain text), and the connection closed."""
        transport, protocol = _connected(_ok)
        protocol.data_received(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
        status, headers, body = _answer(transport.calls[0])
        assert (status, headers["connection"]) == (400, "close")
        assert body["error"]["code"] == "bad_request"
        assert body["error"]["message"].startswith("malformed HTTP request: ")
        assert transport.closed

    async def test_an_unparsable_pipelined_head_waits_for_the_answer_before_it(self) -> None:
        """Garbage behind a request still being answered gets no 400 ahead of that answer
        (uvicorn's went out first, read as the answer to the earlier request): the answer
        goes out whole, then the connection closes."""
        release = asyncio.Event()

        async def slow(scope: Scope, receive: Receive, send: Send) -> None:
            await release.wait()
            await _ok(scope, receive, send)

        transport, protocol = await _serve_one(slow)
        protocol.data_received(b"\x00garbage\r\n\r\n")
        await _settle()
        assert transport.calls == [] and not transport.closed
        release.set()
        await _settle()
        assert len(transport.calls) == 1 and transport.calls[0].startswith(b"HTTP/1.1 204 ")
        assert b"connection: close" in transport.calls[0]
        assert transport.closed


class TestHeadWithBody:
    async def test_close_sends_what_is_held(self) -> None:
        """Closing first writes the held head, then closes the transport."""
        transport = _Transport()
        held = _HeadWithBody(transport, asyncio.get_running_loop())
        held.write(b"head")
        assert transport.calls == []
        held.close()
        assert transport.calls == [b"head"]
        assert transport.closed

    async def test_a_closed_transport_gets_nothing(self) -> None:
        """A head still held when the connection closed is dropped at the end of the step."""
        transport = _Transport()
        held = _HeadWithBody(transport, asyncio.get_running_loop())
        held.write(b"head")
        transport.close()
        await _settle()
        assert transport.calls == []

    @pytest.mark.parametrize("later", [[b"body"], [b"body", b"more"]])
    async def test_only_the_first_write_is_held(self, later: list[bytes]) -> None:
        """The first write joins the second; later writes go straight through."""
        transport = _Transport()
        held = _HeadWithBody(transport, asyncio.get_running_loop())
        held.write(b"head")
        for chunk in later:
            held.write(chunk)
        assert transport.calls == [b"head" + later[0], *later[1:]]
        await _settle()
        assert transport.calls == [b"head" + later[0], *later[1:]]


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(READY_WAIT)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, json.loads(body)


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    ).encode()


class TestBodyDeadline:
    @pytest.mark.parametrize("path", ["/v1/programs/qa/run", "/test/echo"])
    def test_a_stalled_body_gets_a_typed_408_and_a_closed_connection(
        self, spawn_daemon: Callable[..., DaemonProcess], path: str
    ) -> None:
        """Headers, part of the body, then silence: past `server.body_timeout` the daemon
        answers a typed 408 (on the hot route and on a FastAPI route), closes the
        connection, and no request is left in flight."""
        daemon = spawn_daemon(
            "--app", "tests.server._daemon_app:register", LMVISOR_SERVER__BODY_TIMEOUT="0.3"
        )
        host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(_head(path, 100) + b'{"inputs": ')
            status, headers, body = _answer(_read_until_closed(sock))
        assert (status, headers["connection"]) == (408, "close")
        assert body["error"]["code"] == "body_timeout" and body["error"]["field"] == "body"
        assert body["error"]["message"] == "request body not received within 0.3 seconds"
        metrics = httpx.get(daemon.url + "/metrics", timeout=10).text
        assert "lmvisor_http_in_flight 1.0" in metrics  # this scrape only
        assert 'status="408"' in metrics

    def test_a_trickled_body_gets_no_more_time(
        self, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """A body sent a byte at a time, each well inside the deadline, still has to arrive
        whole within it: the daemon answers 408 long before the last byte."""
        daemon = spawn_daemon(LMVISOR_SERVER__BODY_TIMEOUT="0.3")
        host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
        body = json.dumps({"inputs": {"question": "x" * 200}}).encode()
        sent = 0
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(_head("/v1/programs/qa/run", len(body)))
            sock.settimeout(0.05)
            answer = b""
            while sent < len(body) and not answer:
                sock.sendall(body[sent : sent + 1])
                sent += 1
                try:
                    answer = sock.recv(65536)
                except TimeoutError:
                    continue
            rest = _read_until_closed(sock)
        status, _, error = _answer(answer + rest)
        assert (status, error["error"]["code"]) == (408, "body_timeout")
        assert sent < len(body)

    async def test_a_queued_pipelined_request_is_timed_from_its_start(self) -> None:
        """A request pipelined behind a slow one gets its body deadline when its own task
        starts: uvicorn reads nothing for it until then, so the earlier answer's time is
        not counted against its body (it got a 408 for a body sent 50 ms after its head)."""
        release = asyncio.Event()
        seen: dict[str, Any] = {}

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["path"] == "/slow":
                await release.wait()
            else:
                seen["body"] = (await receive())["body"]
                seen["late"] = scope.get(BODY_LATE)
            await _ok(scope, receive, send)

        _, protocol = _connected(app, body_timeout=0.05)
        protocol.data_received(_head("/slow", 0) + _head("/next", 5))
        await asyncio.sleep(0.1)  # past the deadline while /next waits in the pipeline
        assert len(protocol.pipeline) == 1 and protocol._body_timer is None
        release.set()
        await _settle()
        assert protocol._body_timer is not None  # /next runs: its body is timed now
        protocol.data_received(b"hello")
        await _settle()
        assert seen == {"body": b"hello", "late": None}
        assert protocol._body_timer is None

    async def test_a_timed_out_request_leaves_no_task(self, runtime: Runtime) -> None:
        """After a 408 for a stalled body the daemon's tasks are back to what they were."""
        context = ServerContext(runtime, config=server_config(body_timeout=0.2))
        context.add_router(build_router(context))
        async with live_daemon(context) as daemon:
            host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
            await asyncio.sleep(0)
            baseline = len(asyncio.all_tasks())
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(_head("/test/echo", 50) + b"{")
            await writer.drain()
            await _eventually(lambda: len(asyncio.all_tasks()) > baseline)
            assert len(asyncio.all_tasks()) > baseline
            raw = await reader.read()  # to EOF: the daemon closed the connection
            writer.close()
            await writer.wait_closed()
            await _eventually(lambda: len(asyncio.all_tasks()) == baseline)
            tasks = len(asyncio.all_tasks())
        assert raw.startswith(b"HTTP/1.1 408 ")
        assert tasks == baseline

    async def test_a_body_never_read_closes_the_connection(self, runtime: Runtime) -> None:
        """A request answered without its body being read (an unknown path) has its
        connection closed once the body is late, though the client keeps trickling it
        (which keeps the keep-alive timer from ever closing it)."""
        context = ServerContext(runtime, config=server_config(body_timeout=0.2))
        async with live_daemon(context) as daemon:
            host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(_head("/nowhere", 1000))
            raw, closed = b"", False
            for _ in range(200):  # 200 bytes, one per 50 ms
                writer.write(b" ")
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), 0.05)
                except TimeoutError:
                    continue
                raw += chunk
                if not chunk:  # EOF: the daemon closed the connection
                    closed = True
                    break
            writer.close()
        assert raw.startswith(b"HTTP/1.1 404 ")
        assert closed


def _trickle_head(sock: socket.socket, prefix: bytes = b"") -> tuple[bytes, int]:
    """Send `prefix`, then a request head a byte at a time until the daemon answers or
    closes: what it sent, and how many header bytes went out (the head is never finished)."""
    sock.sendall(prefix + b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
    sock.settimeout(0.05)
    answer, sent = b"", 0
    while sent < 2000:
        sock.sendall(b"a")
        sent += 1
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        answer += chunk
        if not chunk or b'"header_timeout"' in answer:
            break
    return answer + _read_until_closed(sock), sent


class TestHeaderDeadline:
    def test_a_trickled_head_gets_a_typed_408_and_a_closed_connection(
        self, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """A head sent a byte at a time, on a new connection and on one that was already
        answered, gets a typed 408 past `server.header_timeout` and the connection closes
        long before the client would have finished."""
        daemon = spawn_daemon(LMVISOR_SERVER__HEADER_TIMEOUT="0.3")
        host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
        answered = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
        for prefix in (b"", answered):
            with socket.create_connection((host, int(port))) as sock:
                raw, sent = _trickle_head(sock, prefix)
            if prefix:
                assert raw.startswith(b"HTTP/1.1 200 ")
                raw = raw[raw.index(b"HTTP/1.1 408 ") :]
            status, headers, body = _answer(raw)
            assert (status, headers["connection"]) == (408, "close")
            assert body["error"] == {
                "code": "header_timeout",
                "message": "request headers not received within 0.3 seconds",
                "field": "headers",
                "correlation_id": None,
            }
            assert sent < 2000

    async def test_a_timed_out_head_leaves_no_task_timer_or_connection(
        self, runtime: Runtime
    ) -> None:
        """After a 408 for a stalled head the daemon's tasks and connections are back to
        what they were and the connection's timers are cancelled."""
        context = ServerContext(runtime, config=server_config(header_timeout=0.2))
        async with live_daemon(context) as daemon:
            host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
            await asyncio.sleep(0)
            baseline = len(asyncio.all_tasks())
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"POST /test/echo HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-")
            await writer.drain()
            await _eventually(lambda: daemon._server.server_state.connections)
            (protocol,) = daemon._server.server_state.connections
            raw = await reader.read()  # to EOF: the daemon closed the connection
            writer.close()
            await writer.wait_closed()
            await _eventually(lambda: len(asyncio.all_tasks()) == baseline)
            tasks = len(asyncio.all_tasks())
            connections = len(daemon._server.server_state.connections)
        assert raw.startswith(b"HTTP/1.1 408 ")
        assert (tasks, connections) == (baseline, 0)
        timers = (protocol.timeout_keep_alive_task, protocol._head_timer, protocol._body_timer)
        assert timers == (None, None, None)

    @pytest.mark.parametrize("start", [b"GET /healthz HTTP/1.1\r\nx-big: ", b"GET /healthz?q="])
    async def test_an_endless_head_gets_a_typed_431(self, runtime: Runtime, start: bytes) -> None:
        """A header or URL that does not end is refused with a typed 431 once more than
        `MAX_HEAD_BYTES` are read (it was buffered, and re-copied, until the deadline:
        80 MB in 8 s), the connection closed; the daemon answers the next request."""
        context = ServerContext(runtime, config=server_config())
        async with live_daemon(context) as daemon:
            host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            # One byte past the limit, and no more: all of it is read before the answer, so
            # closing does not reset the connection under the answer.
            head = start + b"a" * (MAX_HEAD_BYTES + 1 - len(start))
            for at in range(0, len(head), 4096):
                writer.write(head[at : at + 4096])
                await writer.drain()
                await asyncio.sleep(0)
            raw = await reader.read()
            writer.close()
            async with httpx.AsyncClient() as client:
                health = await client.get(daemon.url + "/healthz")
        status, headers, body = _answer(raw)
        assert (status, headers["connection"]) == (431, "close")
        assert body["error"]["code"] == "headers_too_large"
        assert body["error"]["message"] == "request headers exceed the limit of 65536 bytes"
        assert health.status_code == 200

    async def test_a_pipelined_head_waits_for_the_answer_before_it(self) -> None:
        """A head left incomplete behind a request still being answered gets no 408 ahead
        of that answer: the answer goes out whole and then the connection closes."""
        release = asyncio.Event()

        async def slow(scope: Scope, receive: Receive, send: Send) -> None:
            await release.wait()
            await _ok(scope, receive, send)

        transport, protocol = _connected(slow, header_timeout=0.05)
        protocol.data_received(_REQUEST + b"GET /y HTTP/1.1\r\nhost: 1")
        for _ in range(500):
            if protocol._head_timer is None:
                break
            await asyncio.sleep(0.01)
        assert protocol._head_timer is None  # it fired
        assert transport.calls == [] and not transport.closed
        release.set()
        await _settle()
        assert len(transport.calls) == 1 and transport.calls[0].startswith(b"HTTP/1.1 204 ")
        assert b"connection: close" in transport.calls[0]
        assert transport.closed

    async def test_only_an_incomplete_head_arms_a_timer(self) -> None:
        """A head split over reads arms one timer, cancelled when it completes; one in a
        read arms none. A new connection is idle (keep-alive timer armed) till its first byte."""
        _, protocol = _connected(_ok, header_timeout=10.0)
        assert protocol.timeout_keep_alive_task is not None
        assert protocol._idle_since is not None
        protocol.data_received(_REQUEST[:10])
        assert protocol._head_timer is not None
        first = protocol._head_timer
        protocol.data_received(_REQUEST[10:] + _REQUEST)
        assert first.cancelled() and protocol._head_timer is None
        assert protocol._idle_since is None


def _chunked_head(path: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        "transfer-encoding: chunked\r\n\r\n"
    ).encode()


class TestBodyFraming:
    async def test_an_endless_trailer_gets_a_typed_413(self, runtime: Runtime) -> None:
        """A chunked body whose trailer does not end is refused with a typed 413 once its
        framing passes the bound (httptools buffered it, re-copying, until the deadline),
        and the connection closes after the answer."""
        context = ServerContext(runtime, config=server_config(body_timeout=5.0))  # fail fast
        context.add_router(build_router(context))
        async with live_daemon(context) as daemon:
            host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(_chunked_head("/test/echo") + b'5\r\n{"a":\r\n')
            await writer.drain()
            await asyncio.sleep(0.05)  # the daemon (this loop) reads the head and the chunk
            # Just past the bound (read - body > MAX_HEAD_BYTES + 8 * body), and no more:
            # all of it is read before the answer.
            trailer = b"0\r\nx-t: " + b"a" * (MAX_HEAD_BYTES + 8 * 5 + 5 + 1 - 8)
            for at in range(0, len(trailer), 4096):
                writer.write(trailer[at : at + 4096])
                await writer.drain()
                await asyncio.sleep(0)
            raw = await reader.read()
            writer.close()
        status, headers, body = _answer(raw)
        assert (status, headers["connection"]) == (413, "close")
        assert body["error"]["code"] == "request_too_large"

    async def test_a_body_in_one_byte_chunks_is_read(self, runtime: Runtime) -> None:
        """Chunk framing within the bound (a chunk of 1 byte costs 5 more) is no reason to
        refuse a body: it is read and answered."""
        context = ServerContext(runtime, config=server_config())
        context.add_router(build_router(context))
        async with live_daemon(context) as daemon:
            host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(_chunked_head("/test/echo"))
            for byte in b'{"name": "x", "items": [1, 2, 3]}':
                writer.write(b"1\r\n%c\r\n" % byte)
                await writer.drain()
                await asyncio.sleep(0)
            writer.write(b"0\r\n\r\n")
            answer = await reader.readuntil(b"]}")
            writer.close()
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert answer.endswith(b'{"name":"x","items":[1,2,3]}')
