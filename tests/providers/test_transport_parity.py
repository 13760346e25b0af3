"""Tests that the pyreqwest transport behaves as the aiohttp one: installing the `fast`
extra must change speed, not behaviour (proxies, CA roots, redirects, decompression,
cookies, every fault the loopback server injects, connections after `aclose()`)."""

from __future__ import annotations

import asyncio
import atexit
import gzip
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from lmvisor.providers.client import ClientOptions
from lmvisor.providers.errors import ProviderConnectionError, ProviderTimeout
from lmvisor.providers.pyreqwest_transport import PyreqwestTransport, _let_pyreqwest_settle
from lmvisor.providers.transport import Transport, build_transport, default_transport_kind
from lmvisor.testing._lm_lean import LeanServer
from lmvisor.testing.lm_server import FaultRule, LMServer
from tests.providers._tls_server import DATA
from tests.providers.conftest import KEY

ROOT = DATA.parent.parent.parent  # the children import tests.providers
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
STREAM_BODY = BODY[:-1] + ', "stream": true}'
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
KINDS = ["aiohttp", "pyreqwest"]


async def _post(transport: Transport, url: str, limit: float = 5.0) -> tuple[int, bytes]:
    resp = await transport.post_json(
        url, headers=HEADERS, body=BODY.encode(), timeout=limit, provider="p", model="m"
    )
    return resp.status, bytes(resp.body)


@pytest.fixture(params=KINDS)
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    made = build_transport(request.param)
    yield made
    await made.aclose()


async def _echo(request: web.Request) -> web.Response:
    """Answers with what arrived, so a test sees what the transport sent."""
    return web.json_response(
        {
            "method": request.method,
            "body": (await request.read()).decode(),
            "cookie": request.headers.get("Cookie"),
        },
        headers={"Set-Cookie": "affinity=node-7; Path=/"},
    )


async def _redirect_307(request: web.Request) -> web.Response:
    raise web.HTTPTemporaryRedirect("/echo")


async def _redirect_302(request: web.Request) -> web.Response:
    raise web.HTTPFound("/echo")


async def _gzipped(request: web.Request) -> web.Response:
    body = gzip.compress(b'{"zipped": true}')
    return web.Response(
        body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )


@pytest.fixture
async def site() -> AsyncIterator[str]:
    """A loopback aiohttp app with the HTTP behaviours the parity tests need."""
    app = web.Application()
    app.router.add_post("/echo", _echo)
    app.router.add_get("/echo", _echo)
    app.router.add_post("/r307", _redirect_307)
    app.router.add_post("/r302", _redirect_302)
    app.router.add_post("/gzip", _gzipped)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = runner.addresses[0][1]
    yield f"http://localhost:{port}"
    await runner.cleanup()


class TestParity:
    async def test_env_proxy_is_not_used(
        self, transport: Transport, site: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """HTTP(S)_PROXY in the environment is ignored: requests go straight to the host."""
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        status, body = await _post(transport, site + "/echo")
        assert (status, json.loads(body)["method"]) == (200, "POST")

    async def test_307_redirect_resends_the_post(self, transport: Transport, site: str) -> None:
        """A 307 is followed with the same method and body."""
        status, body = await _post(transport, site + "/r307")
        assert status == 200
        assert json.loads(body)["method"] == "POST"
        assert json.loads(json.loads(body)["body"])["model"] == "gpt-4o-mini"

    async def test_302_redirect_becomes_a_get(self, transport: Transport, site: str) -> None:
        """A 302 after a POST is followed as a GET without the body (as browsers do)."""
        status, body = await _post(transport, site + "/r302")
        assert (status, json.loads(body)["method"], json.loads(body)["body"]) == (200, "GET", "")

    async def test_gzip_answer_is_decompressed(self, transport: Transport, site: str) -> None:
        """A gzip-encoded answer reaches the caller decompressed."""
        status, body = await _post(transport, site + "/gzip")
        assert (status, json.loads(body)) == (200, {"zipped": True})

    async def test_cookies_set_by_the_host_are_sent_back(
        self, transport: Transport, site: str
    ) -> None:
        """A cookie a host sets (a sticky load balancer's) goes back on the next request."""
        _, first = await _post(transport, site + "/echo")
        _, second = await _post(transport, site + "/echo")
        assert json.loads(first)["cookie"] is None
        assert json.loads(second)["cookie"] == "affinity=node-7"


_TLS_CHILD = """
import asyncio, os, sys
from lmvisor.providers.transport import build_transport
from tests.providers._tls_server import start_tls_server

async def main():
    runner, url = await start_tls_server()
    for kind in ("aiohttp", "pyreqwest"):
        transport = build_transport(kind)
        try:
            answer = await transport.post_json(
                url, headers={}, body=b"{}", timeout=5.0, provider="p", model="m"
            )
            print(kind, answer.status)
        except Exception as exc:
            print(kind, type(exc).__name__)
        await transport.aclose()
    await runner.cleanup()

asyncio.run(main())
sys.stdout.flush()
os._exit(0)  # pyreqwest can abort the interpreter at exit: not what this child checks
"""


class TestCARoots:
    @pytest.mark.parametrize("env", ["none", "SSL_CERT_FILE", "SSL_CERT_DIR"])
    def test_both_trust_the_same_roots(self, env: str, tmp_path: Path) -> None:
        """Both transports refuse a CA the system does not trust, and both trust it when
        SSL_CERT_FILE or SSL_CERT_DIR (set when the process starts) names it."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SSL_CERT_")}
        if env == "SSL_CERT_FILE":
            environ[env] = str(DATA / "test_ca.pem")
        elif env == "SSL_CERT_DIR":  # OpenSSL's layout: the subject hash names the file
            shutil.copy(DATA / "test_ca.pem", tmp_path / "c2ecdbde.0")
            environ[env] = str(tmp_path)
        child = subprocess.run(
            [sys.executable, "-c", _TLS_CHILD],
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        expected = "200" if env != "none" else "ProviderConnectionError"
        assert child.stdout.split() == ["aiohttp", expected, "pyreqwest", expected]


class TestFaultMapping:
    @pytest.mark.parametrize(
        ("fault", "error"),
        [
            (FaultRule(kind="drop"), ProviderConnectionError),
            (FaultRule(kind="disconnect_mid_stream"), ProviderConnectionError),
            (FaultRule(kind="slow_first_byte", delay=0.5), ProviderTimeout),
        ],
    )
    async def test_wire_faults_raise_the_same_error(
        self, fault: FaultRule, error: type[Exception], server: LMServer
    ) -> None:
        """Each wire fault raises the same typed error on both transports."""
        for kind in KINDS:
            server.add_fault(FaultRule(**{**fault.__dict__, "times": 1}))
            transport = build_transport(kind)  # type: ignore[arg-type]
            try:
                with pytest.raises(error):
                    await _post(transport, server.url + "/v1/chat/completions", limit=0.1)
            finally:
                await transport.aclose()

    async def test_answer_faults_come_back_byte_for_byte(self, server: LMServer) -> None:
        """A status fault and a malformed JSON body reach the caller as the same bytes."""
        seen: dict[str, list[tuple[int, bytes]]] = {}
        for kind in KINDS:
            server.reset_stats()
            server.add_fault(FaultRule(kind="status", status=503, times=1))
            server.add_fault(FaultRule(kind="malformed_json", times=1))
            transport = build_transport(kind)  # type: ignore[arg-type]
            try:
                url = server.url + "/v1/chat/completions"
                seen[kind] = [await _post(transport, url), await _post(transport, url)]
            finally:
                await transport.aclose()
        assert [status for status, _ in seen["aiohttp"]] == [503, 200]
        assert [status for status, _ in seen["pyreqwest"]] == [503, 200]
        assert seen["aiohttp"][1][1] and seen["pyreqwest"][1][1]
        with pytest.raises(json.JSONDecodeError):
            json.loads(seen["pyreqwest"][1][1])


class TestPyreqwestContainment:
    async def test_streams_never_reach_pyreqwest(self, server: LMServer) -> None:
        """A stream, whole or broken mid-way, goes over aiohttp: no pyreqwest client is built."""
        server.add_fault(FaultRule(kind="disconnect_mid_stream", times=1))
        transport = PyreqwestTransport()
        try:
            for _ in range(2):
                try:
                    async with transport.stream_sse(
                        server.url + "/v1/chat/completions",
                        headers=HEADERS,
                        body=STREAM_BODY.encode(),
                        timeout=5.0,
                        provider="p",
                        model="m",
                    ) as resp:
                        [event async for event in resp.events()]
                except ProviderConnectionError:
                    pass
            assert transport.statistics().open is False
            assert server.stats().requests == 2
        finally:
            await transport.aclose()

    @pytest.mark.parametrize("outcome", ["ok", "status", "timeout", "cancelled"])
    async def test_no_connection_left_open_after_aclose(self, outcome: str) -> None:
        """After aclose() the server sees every connection closed, whatever the requests did."""
        server = LeanServer()
        await server.start()
        transport = PyreqwestTransport()
        try:
            url = server.url + "/v1/chat/completions"
            await asyncio.gather(*(_post(transport, url) for _ in range(4)))
            kept = await _finish_one(transport, server, outcome)
            assert server.connections
            await transport.aclose()
            async with asyncio.timeout(2.0):  # a guard against a hang, not a measurement
                while server.connections:  # noqa: ASYNC110 (the server offers no notification)
                    await asyncio.sleep(0.01)
            assert kept is None or kept.__traceback__ is not None
        finally:
            await server.stop()


async def _finish_one(
    transport: Transport, server: LeanServer, outcome: str
) -> BaseException | None:
    """One more request ending in `outcome`; returns the error it raised (kept alive)."""
    url = server.url + "/v1/chat/completions"
    if outcome == "ok":
        await _post(transport, url)
        return None
    if outcome == "status":
        status, _ = await _post(transport, server.url + "/nowhere")
        assert status == 404
        return None
    server.latency = 1.0
    if outcome == "timeout":
        with pytest.raises(ProviderTimeout) as info:
            await _post(transport, url, limit=0.05)
        return info.value
    task = asyncio.ensure_future(_post(transport, url))
    async with asyncio.timeout(2.0):
        while server.in_flight < 1:  # noqa: ASYNC110 (the server offers no notification)
            await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError) as cancelled:
        await task
    return cancelled.value


class TestExitSettle:
    async def test_building_a_client_registers_the_exit_wait_once(
        self, server: LMServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The first pyreqwest client of each transport registers the exit wait, replacing
        any earlier registration, so the interpreter waits once at exit."""
        registered: list[object] = []
        removed: list[object] = []
        monkeypatch.setattr(atexit, "register", registered.append)
        monkeypatch.setattr(atexit, "unregister", removed.append)
        for _ in range(2):
            transport = PyreqwestTransport()
            try:
                await _post(transport, server.url + "/v1/chat/completions")
                await _post(transport, server.url + "/v1/chat/completions")
            finally:
                await transport.aclose()
        assert registered == removed == [_let_pyreqwest_settle] * 2


class TestCancellation:
    @pytest.mark.parametrize("kind", KINDS)
    async def test_cancelled_requests_stay_cancelled_when_the_client_closes(
        self, kind: str
    ) -> None:
        """Requests cancelled in the same step in which their transport closes (an actor
        dying: its tasks cancelled, the one holding the client closing it) raise
        CancelledError, not a connection error."""
        server = LeanServer(latency=30.0)
        await server.start()
        transport = build_transport(kind)  # type: ignore[arg-type]
        closing = asyncio.ensure_future(_close_when_cancelled(transport))
        url = server.url + "/v1/chat/completions"
        calls = [asyncio.ensure_future(_post(transport, url)) for _ in range(8)]
        try:
            async with asyncio.timeout(5.0):  # a guard against a hang, not a measurement
                while server.in_flight < 8:  # noqa: ASYNC110 (the server offers no notification)
                    await asyncio.sleep(0.005)
            for task in (closing, *calls):
                task.cancel()
            results = await asyncio.gather(*calls, return_exceptions=True)
            await asyncio.gather(closing, return_exceptions=True)
        finally:
            await server.stop()
        assert [type(result) for result in results] == [asyncio.CancelledError] * 8


async def _close_when_cancelled(transport: Transport) -> None:
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await transport.aclose()


class TestDefault:
    async def test_the_default_is_aiohttp_and_auto_picks_pyreqwest_when_installed(self) -> None:
        """Clients and build_transport default to aiohttp; "auto" is pyreqwest, installed by
        the dev extras here (the `fast` extra)."""
        assert ClientOptions().transport == "aiohttp"
        assert default_transport_kind() == "pyreqwest"
        for kind, expected in (("aiohttp", "aiohttp"), ("auto", "pyreqwest")):
            made = build_transport() if kind == "aiohttp" else build_transport("auto")
            try:
                assert made.statistics().kind == expected
            finally:
                await made.aclose()
