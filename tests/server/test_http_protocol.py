"""Tests for lmvisor.server.http_protocol: a response's head goes out with its body."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from lmvisor.server.http_protocol import _HeadWithBody, http_protocol

_REQUEST = b"GET /x HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"


class _Transport(asyncio.Transport):
    """Records each write call: one entry per `write`, one joined entry per `writelines`."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bytes] = []
        self.closed = False

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

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _serve_one(app: Any) -> tuple[_Transport, asyncio.Protocol]:
    protocol_class = http_protocol()
    assert not isinstance(protocol_class, str)
    config = uvicorn.Config(app, http=protocol_class, lifespan="off", log_config=None)
    config.load()
    protocol: Any = protocol_class(config, ServerState(), {}, asyncio.get_running_loop())  # type: ignore[call-arg]
    transport = _Transport()
    protocol.connection_made(transport)
    protocol.data_received(_REQUEST)
    return transport, protocol


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
