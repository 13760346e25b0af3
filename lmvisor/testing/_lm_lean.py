"""The loopback LM's lean mode: OpenAI chat completions over a bare asyncio.Protocol, for benches.

`LMServer` (aiohttp) spends 250-390 us of CPU per request; on a 2-core machine
that distorts a client throughput bench. `LeanServer` answers the same
deterministic completions (`_lm_requests.compose`, `_lm_wire`), plain or SSE,
for ~60-120 us: HTTP/1.1 keep-alive parsed by hand, latency by
`loop.call_later` (timers, not tasks), no faults, no per-path statistics.

Routes: `POST /v1/chat/completions`, `GET /stats` (`requests`, `in_flight`,
`peak_in_flight`), `POST /_control/settings` (`{"latency": s}`) and
`POST /_control/reset-stats`. Anything else is a 404. Requests on one
connection are answered in order.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import final

from lmvisor.testing._lm_requests import Rejected, compose, parse_openai, tool_call_id
from lmvisor.testing._lm_wire import openai_chunks, openai_completion

__all__ = ["LeanServer"]

_HEAD_END = b"\r\n\r\n"
_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
_BACKLOG = 4096


@final
class LeanServer:
    """A minimal loopback OpenAI chat-completions server (see the module).

    Args:
        host: interface to bind (loopback).
        port: TCP port; 0 picks a free one.
        latency: seconds before each chat answer.

    Raises:
        ValueError: a negative latency.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0) -> None:
        if not latency >= 0:
            raise ValueError(f"LeanServer.latency must be >= 0, got {latency!r}")
        self.host, self.port, self.latency = host, port, float(latency)
        self.requests = self.in_flight = self.peak_in_flight = 0
        self._seq = 0
        self._server: asyncio.Server | None = None
        self.connections: set[asyncio.Transport] = set()

    @property
    def url(self) -> str:
        """`http://HOST:PORT` of the running server."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve; returns once the port accepts connections."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, backlog=_BACKLOG
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every connection. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for transport in list(self.connections):
                transport.close()
            await server.wait_closed()

    def stats(self) -> dict[str, int]:
        """The counters as a JSON-ready dict."""
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
        }

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, str, bytes, bool]:
        """(status, content type, body, is_chat) for one request."""
        if method == "POST" and path == "/v1/chat/completions":
            return self._chat(body)
        if method == "GET" and path == "/stats":
            return 200, "application/json", json.dumps(self.stats()).encode(), False
        if method == "POST" and path == "/_control/settings":
            settings = json.loads(body or b"{}")
            if "latency" in settings:
                self.latency = max(0.0, float(settings["latency"]))
            return 200, "application/json", json.dumps({"latency": self.latency}).encode(), False
        if method == "POST" and path == "/_control/reset-stats":
            self.requests, self.peak_in_flight = 0, self.in_flight
            return 200, "application/json", json.dumps(self.stats()).encode(), False
        return 404, "application/json", b'{"error": {"message": "not found"}}', False

    def _chat(self, body: bytes) -> tuple[int, str, bytes, bool]:
        self._seq += 1
        seq = self._seq
        try:
            ask = parse_openai(json.loads(body))
        except (ValueError, Rejected) as exc:
            message = json.dumps({"error": {"message": str(exc), "type": "invalid_request_error"}})
            return 400, "application/json", message.encode(), True
        ids = [tool_call_id("call_", seq * 1000 + i) for i in range(ask.n)] if ask.tool else []
        choices = compose(ask, ids=ids or [""] * ask.n)
        created = int(time.time())
        if ask.stream:
            events = openai_chunks(ask, choices, id=f"chatcmpl-lmv{seq:012d}", created=created)
            return 200, "text/event-stream", b"".join(events), True
        answer = openai_completion(ask, choices, id=f"chatcmpl-lmv{seq:012d}", created=created)
        return 200, "application/json", answer, True


class _Answer:
    """One answer on its way: its bytes, and whether its latency has passed."""

    __slots__ = ("data", "is_chat", "ready")

    def __init__(self, data: bytes, is_chat: bool) -> None:
        self.data, self.is_chat, self.ready = data, is_chat, False


class _Connection(asyncio.Protocol):
    """One client connection: parse requests as bytes arrive, answer them in order."""

    def __init__(self, server: LeanServer) -> None:
        self._server = server
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._answers: deque[_Answer] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.connections.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._server.connections.discard(self._transport)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (request := self._take_request()) is not None:
            self._handle(*request)

    def _take_request(self) -> tuple[str, str, bytes] | None:
        buffer = self._buffer
        end = buffer.find(_HEAD_END)
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                self._close()
            return None
        head = buffer[:end].decode("latin-1").split("\r\n")
        parts = head[0].split(" ")
        if len(parts) != 3:
            self._close()
            return None
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip() or 0) if value.strip().isdigit() else -1
        if not 0 <= length <= _MAX_BODY:
            self._close()
            return None
        start = end + len(_HEAD_END)
        if len(buffer) < start + length:
            return None
        self._buffer = buffer[start + length :]
        return parts[0], parts[1].split("?", 1)[0], buffer[start : start + length]

    def _handle(self, method: str, path: str, body: bytes) -> None:
        server = self._server
        status, kind, payload, is_chat = server.answer(method, path, body)
        head = (
            f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}\r\n"
            f"Content-Type: {kind}\r\nContent-Length: {len(payload)}\r\n"
            "Connection: keep-alive\r\n\r\n"
        ).encode()
        answer = _Answer(head + payload, is_chat)
        self._answers.append(answer)
        if is_chat:
            server.requests += 1
            server.in_flight += 1
            server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
        if is_chat and server.latency > 0:
            asyncio.get_running_loop().call_later(server.latency, self._ready, answer)
        else:
            self._ready(answer)

    def _ready(self, answer: _Answer) -> None:
        answer.ready = True
        answers = self._answers
        while answers and answers[0].ready:  # in request order
            done = answers.popleft()
            if done.is_chat:
                self._server.in_flight -= 1
            if self._transport is not None:
                self._transport.write(done.data)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
