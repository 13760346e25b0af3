"""Tests for lmvisor.providers.transport: both transports against LMServer and mocks."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from lmvisor.providers.aiohttp_transport import AiohttpTransport
from lmvisor.providers.errors import (
    ProviderConnectionError,
    ProviderTimeout,
    RequestBuildError,
    ResponseFormatError,
)
from lmvisor.providers.httpx_transport import HttpxTransport
from lmvisor.providers.transport import ErrorMap, Transport, build_transport, mapped_error
from lmvisor.runtime.errors import DeadlineExceeded
from lmvisor.testing._lm_lean import LeanServer
from lmvisor.testing.lm_server import FaultRule, LMServer
from tests.providers.conftest import KEY

BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
).encode()
STREAM_BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
).encode()
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}


@pytest.fixture(params=["aiohttp", "httpx", "pyreqwest"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    made = build_transport(request.param)
    yield made
    await made.aclose()


async def _post(transport: Transport, url: str, limit: float = 5.0) -> tuple[int, bytes]:
    resp = await transport.post_json(
        url, headers=HEADERS, body=BODY, timeout=limit, provider="openai", model="gpt-4o-mini"
    )
    return resp.status, bytes(resp.body)


class TestBothTransports:
    async def test_post_json_returns_status_headers_and_body(
        self, transport: Transport, server: LMServer
    ) -> None:
        """A POST returns the raw status, case-insensitive headers and body."""
        resp = await transport.post_json(
            server.url + "/v1/chat/completions",
            headers=HEADERS,
            body=BODY,
            timeout=5.0,
            provider="openai",
            model="gpt-4o-mini",
        )
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("application/json")
        assert resp.headers["Content-Type"] == resp.headers["content-type"]
        assert json.loads(bytes(resp.body))["object"] == "chat.completion"

    async def test_error_status_is_returned_not_raised(
        self, transport: Transport, server: LMServer
    ) -> None:
        """Statuses are the caller's to judge: a 429 comes back as a response."""
        server.add_fault(FaultRule(kind="status", status=429, retry_after=2, times=1))
        status, body = await _post(transport, server.url + "/v1/chat/completions")
        assert status == 429
        assert json.loads(body)["error"]["type"]

    async def test_stream_sse_yields_events(self, transport: Transport, server: LMServer) -> None:
        """A streamed answer arrives as SSE events ending with [DONE]."""
        async with transport.stream_sse(
            server.url + "/v1/chat/completions",
            headers=HEADERS,
            body=STREAM_BODY,
            timeout=5.0,
            provider="openai",
            model="gpt-4o-mini",
        ) as resp:
            assert resp.status == 200
            events = [event.data async for event in resp.events()]
        assert events[-1] == "[DONE]"
        assert json.loads(events[0])["object"] == "chat.completion.chunk"

    async def test_connection_refused(self, transport: Transport) -> None:
        """Nothing listening is a retryable ProviderConnectionError."""
        async with LMServer() as stopped:
            url = stopped.url
        with pytest.raises(ProviderConnectionError) as info:
            await _post(transport, url + "/v1/chat/completions")
        assert info.value.retryable is True
        assert info.value.provider == "openai"
        assert isinstance(info.value.__cause__, Exception)

    async def test_a_header_the_client_cannot_send(
        self, transport: Transport, server: LMServer
    ) -> None:
        """A key with a trailing newline is refused by the HTTP client itself: a
        non-retryable RequestBuildError, whose message does not quote the key."""
        headers = {**HEADERS, "authorization": "Bearer sk-from-a-file-0123456789\n"}
        with pytest.raises(RequestBuildError) as info:
            await transport.post_json(
                server.url + "/v1/chat/completions",
                headers=headers,
                body=BODY,
                timeout=5.0,
                provider="openai",
                model="gpt-4o-mini",
            )
        assert info.value.retryable is False and info.value.provider == "openai"
        assert "sk-from-a-file" not in str(info.value)
        assert server.stats().by_path == {}

    async def test_a_url_the_client_cannot_use(self, transport: Transport) -> None:
        """A URL of a scheme the HTTP client does not speak is the client's own refusal:
        a non-retryable RequestBuildError that does not quote the URL (it may hold a key)."""
        with pytest.raises(RequestBuildError) as info:
            await transport.post_json(
                "ftp://user:sk-in-a-url@127.0.0.1:1/v1/chat/completions",
                headers=HEADERS,
                body=BODY,
                timeout=5.0,
                provider="openai",
                model="gpt-4o-mini",
            )
        assert info.value.retryable is False
        assert "sk-in-a-url" not in str(info.value)

    async def test_dropped_connection(self, transport: Transport, server: LMServer) -> None:
        """A connection closed before any byte is a ProviderConnectionError."""
        server.add_fault(FaultRule(kind="drop"))
        with pytest.raises(ProviderConnectionError):
            await _post(transport, server.url + "/v1/chat/completions")

    async def test_body_cut_mid_way(self, transport: Transport, server: LMServer) -> None:
        """A body cut short by a disconnect is a ProviderConnectionError."""
        server.add_fault(FaultRule(kind="disconnect_mid_stream"))
        with pytest.raises(ProviderConnectionError):
            await _post(transport, server.url + "/v1/chat/completions")

    async def test_timeout(self, transport: Transport, server: LMServer) -> None:
        """No answer within the timeout is a retryable ProviderTimeout."""
        server.add_fault(FaultRule(kind="slow_first_byte", delay=0.5))
        with pytest.raises(ProviderTimeout, match=r"no answer within 0\.05s$") as info:
            await _post(transport, server.url + "/v1/chat/completions", limit=0.05)
        assert isinstance(info.value, TimeoutError)

    async def test_closed_transport_refuses(self, transport: Transport, server: LMServer) -> None:
        """After aclose(), a request raises RuntimeError naming the transport."""
        await _post(transport, server.url + "/v1/chat/completions")
        await transport.aclose()
        with pytest.raises(RuntimeError, match=r"^(Aiohttp|Httpx|Pyreqwest)Transport is closed$"):
            await _post(transport, server.url + "/v1/chat/completions")
        assert transport.statistics().open is False

    async def test_aclose_closes_pooled_connections(self, transport: Transport) -> None:
        """After aclose() no pooled connection stays open, even with a failed request's
        error (and its traceback) still held."""
        server = LeanServer()
        await server.start()
        try:
            url = server.url + "/v1/chat/completions"
            await asyncio.gather(*(_post(transport, url) for _ in range(5)))
            assert server.connections
            server.latency = 1.0
            with pytest.raises(ProviderTimeout) as info:
                await _post(transport, url, limit=0.05)
            kept = info.value
            await transport.aclose()
            async with asyncio.timeout(2.0):
                while server.connections:  # noqa: ASYNC110 (the server offers no notification)
                    await asyncio.sleep(0.01)
            assert kept.__traceback__ is not None
        finally:
            await server.stop()


class TestAiohttpTransport:
    async def test_session_is_created_lazily(self, server: LMServer) -> None:
        """The pool opens on first use; statistics show its limits."""
        transport = AiohttpTransport(max_connections=7, keepalive_timeout=3.0)
        assert transport.statistics().open is False
        await _post(transport, server.url + "/v1/chat/completions")
        after = transport.statistics()
        assert after.kind == "aiohttp"
        assert (after.max_connections, after.keepalive_timeout, after.open) == (7, 3.0, True)
        await transport.aclose()
        await transport.aclose()

    async def test_stream_waiting_for_a_pooled_connection_times_out(self, server: LMServer) -> None:
        """A stream that cannot get a connection from a full pool ends in ProviderTimeout."""
        server.latency = 30.0
        transport = AiohttpTransport(max_connections=1)
        holder = asyncio.ensure_future(
            _post(transport, server.url + "/v1/chat/completions", limit=60.0)
        )
        try:
            async with asyncio.timeout(10.0):  # a guard against a hang, not a measurement
                while server.stats().in_flight < 1:  # noqa: ASYNC110 (no notification to wait on)
                    await asyncio.sleep(0.005)
                with pytest.raises(ProviderTimeout, match=r"no answer within 0\.05s$"):
                    async with transport.stream_sse(
                        server.url + "/v1/chat/completions",
                        headers=HEADERS,
                        body=STREAM_BODY,
                        timeout=0.05,
                        provider="openai",
                        model="gpt-4o-mini",
                    ):
                        pass
        finally:
            holder.cancel()
            await asyncio.gather(holder, return_exceptions=True)
            await transport.aclose()

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"max_connections": -1}, r"^max_connections must be >= 0, got -1$"),
            ({"max_connections_per_host": -2}, r"^max_connections_per_host must be >= 0, got -2$"),
            ({"keepalive_timeout": 0}, r"^keepalive_timeout must be > 0, got 0$"),
        ],
    )
    def test_option_validation(self, kwargs: dict[str, float], message: str) -> None:
        """Out-of-range pool options are rejected, naming the option."""
        with pytest.raises(ValueError, match=message):
            AiohttpTransport(**kwargs)  # type: ignore[arg-type]


class TestHttpxTransport:
    async def test_users_client_is_used_and_left_open(self, server: LMServer) -> None:
        """A user's AsyncClient carries the requests and is not closed by aclose()."""
        seen: list[str] = []

        async def hook(request: httpx.Request) -> None:
            seen.append(request.url.path)

        async with httpx.AsyncClient(event_hooks={"request": [hook]}) as client:
            transport = HttpxTransport(client)
            status, _ = await _post(transport, server.url + "/v1/chat/completions")
            await transport.aclose()
            assert status == 200
            assert seen == ["/v1/chat/completions"]
            assert client.is_closed is False
            stats = transport.statistics()
            assert stats.owns_client is False and stats.max_connections is None

    async def test_mock_transport(self) -> None:
        """An httpx.MockTransport answers without any network."""

        def handler(request: httpx.Request) -> httpx.Response:
            assert request.headers["authorization"] == f"Bearer {KEY}"
            assert json.loads(request.content)["model"] == "gpt-4o-mini"
            return httpx.Response(200, json={"ok": True}, headers={"x-request-id": "r1"})

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            transport = HttpxTransport(client)
            resp = await transport.post_json(
                "http://mock/v1/chat/completions",
                headers=HEADERS,
                body=BODY,
                timeout=1.0,
                provider="openai",
                model="gpt-4o-mini",
            )
        assert (resp.status, json.loads(resp.body)) == (200, {"ok": True})
        assert resp.headers["X-Request-Id"] == "r1"

    async def test_post_json_timeout_bounds_the_whole_answer(self) -> None:
        """A body that stalls after its headers ends in ProviderTimeout, not a hang.

        httpx's own timeouts are per phase and a MockTransport applies none, so only
        a bound on the whole answer can end this call.
        """
        stalled = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield b'{"ok":'
            await stalled.wait()

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=body())

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            transport = HttpxTransport(client)
            with pytest.raises(ProviderTimeout, match=r"no answer within 0.05s$"):
                await transport.post_json(
                    "http://mock/v1/chat/completions",
                    headers=HEADERS,
                    body=BODY,
                    timeout=0.05,
                    provider="openai",
                    model="gpt-4o-mini",
                )

    @pytest.mark.parametrize(
        ("exc", "cls"),
        [
            (httpx.ConnectError("refused"), ProviderConnectionError),
            (httpx.RemoteProtocolError("peer closed"), ProviderConnectionError),
            (httpx.ReadTimeout("slow"), ProviderTimeout),
            (httpx.DecodingError("bad gzip"), ResponseFormatError),
        ],
    )
    async def test_httpx_errors_are_mapped(self, exc: Exception, cls: type[Exception]) -> None:
        """Each httpx failure becomes its provider error, chained from the original."""

        def handler(request: httpx.Request) -> httpx.Response:
            raise exc

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            transport = HttpxTransport(client)
            with pytest.raises(cls) as info:
                await _post(transport, "http://mock/v1/chat/completions")
        assert info.value.__cause__ is exc


class TestMappedError:
    _ERRORS = ErrorMap(
        timeouts=(TimeoutError,),
        body=(EOFError,),
        body_error=ResponseFormatError,
        body_detail="bad body",
        wire=(ConnectionError,),
    )

    def test_library_errors_become_typed(self) -> None:
        """Timeouts, body and wire errors map to the providers' typed errors, in that order."""
        timeout = mapped_error(self._ERRORS, TimeoutError(), "p", "m", 2.5)
        assert isinstance(timeout, ProviderTimeout)
        assert "no answer within 2.5s" in str(timeout)
        body = mapped_error(self._ERRORS, EOFError("cut"), "p", "m", 1.0)
        assert isinstance(body, ResponseFormatError)
        assert "bad body: cut" in str(body)
        wire = mapped_error(self._ERRORS, ConnectionResetError("reset"), "p", "m", 1.0)
        assert isinstance(wire, ProviderConnectionError)
        assert "reset" in str(wire)

    def test_a_request_the_library_will_not_build_is_typed(self) -> None:
        """A ValueError (or a class the map names under `build`, tried before `wire`) is the
        client's own: RequestBuildError, the library's message (it may quote a key) left out."""
        errors = dataclasses.replace(self._ERRORS, build=(ConnectionAbortedError,))
        for exc in (ValueError("Bearer sk-x\n"), ConnectionAbortedError("Bearer sk-x\n")):
            built = mapped_error(errors, exc, "p", "m", 1.0)
            assert isinstance(built, RequestBuildError)
            assert str(built) == (
                f"p: the HTTP client could not build the request for model 'm': "
                f"{type(exc).__name__}: a header value or the URL cannot be sent as configured "
                "(check the provider's api_key, headers and base_url)"
            )

    def test_own_and_unknown_errors_pass(self) -> None:
        """An lmvisor error or an error the map does not name is raised as it is (None)."""
        own = DeadlineExceeded(operation="x")
        assert mapped_error(self._ERRORS, own, "p", "m", 1.0) is None
        assert mapped_error(self._ERRORS, KeyError("k"), "p", "m", 1.0) is None
