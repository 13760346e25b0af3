"""Tests for the bound on a whole answer's body (`max_response_bytes`), per transport."""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, final

import pytest

from lmvisor.programs.lm import LMRequest
from lmvisor.providers.client import MAX_RESPONSE_BYTES, ClientOptions
from lmvisor.providers.embeddings import OpenAIEmbeddings
from lmvisor.providers.errors import RateLimitError, ResponseFormatError, ServerError
from lmvisor.providers.openai import OpenAIClient
from lmvisor.providers.transport import (
    SSEResponse,
    Transport,
    TransportResponse,
    TransportStatistics,
    build_transport,
)
from lmvisor.testing.lm_server import FaultRule, LMServer
from tests.providers.conftest import KEY, MESSAGES, collect_stream

BOUND = 1024 * 1024
BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
).encode()
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
# The built-in transports that bound the read itself (pyreqwest reads in Rust first).
STREAMING_READERS = ["aiohttp", "httpx"]


def _refusal(limit: int, status: int = 200) -> str:
    return (
        rf"^openai: malformed response \(HTTP {status}\) for model 'gpt-4o-mini': "
        rf"response body: larger than {limit} bytes \(max_response_bytes\)$"
    )


def _unread(limit: int, status: int, summary: str = "server error") -> str:
    """The message of an error status whose body passed the bound (left unread)."""
    return (
        rf"^openai: {summary} \(HTTP {status}\) for model 'gpt-4o-mini': "
        rf"response body: larger than {limit} bytes \(max_response_bytes\), left unread$"
    )


def _request() -> LMRequest:
    return LMRequest(model="gpt-4o-mini", messages=MESSAGES)


async def _post(transport: Transport, server: LMServer, limit: int) -> TransportResponse:
    return await transport.post_json(
        server.url + "/v1/chat/completions",
        headers=HEADERS,
        body=BODY,
        timeout=30.0,
        max_response_bytes=limit,
        provider="openai",
        model="gpt-4o-mini",
    )


async def _settled(server: LMServer) -> int:
    """The server's requests in flight once its handlers saw the client hang up."""
    for _ in range(500):
        if server.stats().in_flight == 0:
            break
        await asyncio.sleep(0.01)
    return server.stats().in_flight


@pytest.fixture(params=["aiohttp", "httpx", "pyreqwest"])
async def any_transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    made = build_transport(request.param)
    yield made
    await made.aclose()


@pytest.fixture(params=STREAMING_READERS)
async def reader(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    made = build_transport(request.param)
    yield made
    await made.aclose()


class TestEveryTransport:
    async def test_an_answer_within_the_bound_is_read_whole(
        self, any_transport: Transport, server: LMServer
    ) -> None:
        """An answer no longer than the bound comes back whole, byte for byte."""
        resp = await _post(any_transport, server, MAX_RESPONSE_BYTES)
        body = bytes(resp.body)
        assert resp.status == 200
        exact = await _post(any_transport, server, len(body))  # the bound is inclusive
        assert json.loads(bytes(exact.body))["object"] == "chat.completion"

    async def test_an_answer_past_the_bound_is_refused_typed(
        self, any_transport: Transport, server: LMServer
    ) -> None:
        """A complete answer one byte longer than the bound is a non-retryable
        ResponseFormatError naming the bound; the transport stays usable."""
        size = len(bytes((await _post(any_transport, server, MAX_RESPONSE_BYTES)).body))
        with pytest.raises(ResponseFormatError, match=_refusal(size - 1)) as info:
            await _post(any_transport, server, size - 1)
        assert info.value.retryable is False
        assert await _settled(server) == 0
        assert (await _post(any_transport, server, size)).status == 200


class TestHostileBodies:
    @pytest.mark.parametrize("kind", ["huge_body", "endless_body"])
    async def test_a_huge_body_is_refused_with_memory_bounded(
        self, reader: Transport, server: LMServer, kind: str
    ) -> None:
        """A body announcing 1 GiB, or chunked without end, is refused at the bound:
        memory peaks under twice the bound, the connection is closed (the server's
        handler ends), and the next request is answered."""
        server.add_fault(FaultRule(kind=kind, times=1))  # type: ignore[arg-type]
        gc.collect()
        tracemalloc.start()
        try:
            with pytest.raises(ResponseFormatError, match=_refusal(BOUND)):
                await _post(reader, server, BOUND)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 2 * BOUND
        assert await _settled(server) == 0
        assert server.stats().faults_by_kind == {kind: 1}
        assert (await _post(reader, server, BOUND)).status == 200

    async def test_a_stated_length_past_the_bound_is_refused_before_reading(
        self, reader: Transport, server: LMServer
    ) -> None:
        """A Content-Length above the bound is refused before a byte of the body is
        taken: a bound of 1 GiB - 1 costs no more memory than one of a megabyte."""
        server.add_fault(FaultRule(kind="huge_body", times=1))
        tracemalloc.start()
        try:
            with pytest.raises(ResponseFormatError, match=_refusal(1024**3 - 1)):
                await _post(reader, server, 1024**3 - 1)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < BOUND
        assert await _settled(server) == 0

    async def test_a_streamed_error_answer_without_end_is_refused(
        self, any_transport: Transport, server: LMServer
    ) -> None:
        """A stream's error answer (503) whose body never ends is read only up to the
        client's `max_response_bytes`, not until memory runs out, and is the retryable
        server error a 503 is."""
        server.add_fault(FaultRule(kind="endless_body", status=503, times=1))
        client = OpenAIClient(
            ClientOptions(api_key=KEY, base_url=server.url + "/v1", max_response_bytes=BOUND),
            transport=any_transport,
        )
        with pytest.raises(ServerError, match=_unread(BOUND, 503)) as info:
            await collect_stream(client.stream(_request()))
        assert info.value.retryable is True
        assert await _settled(server) == 0
        _, answer = await collect_stream(client.stream(_request()))
        assert answer.outputs[0].startswith("answer ")


class TestErrorStatusPastTheBound:
    @pytest.mark.parametrize("status", [500, 503])
    async def test_a_5xx_is_a_retryable_server_error_whatever_its_body(
        self, any_transport: Transport, server: LMServer, status: int
    ) -> None:
        """A 5xx whose error body is longer than the bound is the retryable ServerError a
        small 5xx is (its body left unread), not a ResponseFormatError; the transport
        stays usable."""
        server.add_fault(FaultRule(kind="status", status=status, times=1))
        with pytest.raises(ServerError, match=_unread(64, status)) as info:
            await _post(any_transport, server, 64)
        assert (info.value.retryable, info.value.status) == (True, status)
        assert await _settled(server) == 0
        assert (await _post(any_transport, server, BOUND)).status == 200

    async def test_a_429_is_rate_limited_with_its_retry_after(
        self, any_transport: Transport, server: LMServer
    ) -> None:
        """A 429 whose body is longer than the bound is a RateLimitError carrying the
        answer's Retry-After, as a small 429 is."""
        server.add_fault(FaultRule(kind="status", status=429, retry_after=7, times=1))
        with pytest.raises(RateLimitError, match=_unread(64, 429, "rate limited")) as info:
            await _post(any_transport, server, 64)
        assert (info.value.retryable, info.value.retry_after) == (True, 7.0)

    async def test_the_client_answers_the_status_error(self, server: LMServer) -> None:
        """Through `complete()`, a 503 past the options' bound is a ServerError."""
        server.add_fault(FaultRule(kind="status", status=503, times=1))
        client = OpenAIClient(
            ClientOptions(api_key=KEY, base_url=server.url + "/v1", max_response_bytes=64)
        )
        try:
            with pytest.raises(ServerError, match=_unread(64, 503)):
                await client.complete(_request())
        finally:
            await client.aclose()


class TestVendorClient:
    async def test_complete_refuses_a_body_past_the_options_bound(self, server: LMServer) -> None:
        """`complete()` passes `max_response_bytes` to its transport: an endless body is
        refused at it, and the in-flight count goes back to 0."""
        server.add_fault(FaultRule(kind="endless_body", times=1))
        client = OpenAIClient(
            ClientOptions(api_key=KEY, base_url=server.url + "/v1", max_response_bytes=BOUND)
        )
        try:
            with pytest.raises(ResponseFormatError, match=_refusal(BOUND)):
                await client.complete(_request())
            assert await _settled(server) == 0
            assert (await client.complete(_request())).outputs[0].startswith("answer ")
        finally:
            await client.aclose()

    async def test_a_users_transport_gets_the_bound(self) -> None:
        """A transport of one's own receives the options' bound as `max_response_bytes`,
        and a bare `SSEResponse` it builds has its error named for the client."""
        own = _RecordingTransport()
        client = OpenAIClient(
            ClientOptions(api_key=KEY, base_url="http://127.0.0.1:9/v1", max_response_bytes=99),
            transport=own,
        )
        answer = await client.complete(_request())
        assert answer.outputs == ["ok"]
        assert own.bounds == [99]
        with pytest.raises(ServerError, match=_unread(99, 500)):
            await collect_stream(client.stream(_request()))

    @pytest.mark.parametrize("bad", [0, -1, True, 1.5, "64"])
    def test_the_option_is_validated(self, bad: Any) -> None:
        """`max_response_bytes` must be an int >= 1; the message names the option."""
        with pytest.raises(
            ValueError, match=r"^ClientOptions\.max_response_bytes must be an int >= 1, got "
        ):
            ClientOptions(max_response_bytes=bad)

    def test_the_default_is_64_mib(self) -> None:
        """The shipped default is MAX_RESPONSE_BYTES, 64 MiB."""
        assert ClientOptions().max_response_bytes == MAX_RESPONSE_BYTES == 64 * 1024 * 1024


class TestSSEResponseRead:
    async def test_a_stated_length_past_the_bound_is_refused_unread(self) -> None:
        """`read(max_bytes)` refuses a Content-Length above the bound before reading."""
        pulled: list[int] = []
        resp = SSEResponse(
            status=502,
            headers={"Content-Length": "11"},
            chunks=_chunks([b"hello ", b"world"], pulled),
            provider="p",
            model="m",
        )
        with pytest.raises(
            ServerError,
            match=r"^p: server error \(HTTP 502\) for model 'm': response body: "
            r"larger than 10 bytes \(max_response_bytes\), left unread$",
        ):
            await resp.read(10)
        assert pulled == []

    async def test_chunks_are_read_up_to_the_bound(self) -> None:
        """Without a length, chunks are taken until one would pass the bound; a body
        exactly at the bound, or read with no bound, is whole."""
        pulled: list[int] = []
        over = SSEResponse(status=500, headers={}, chunks=_chunks([b"x" * 6] * 5, pulled))
        with pytest.raises(ServerError, match=r"larger than 10 bytes"):
            await over.read(10)
        assert pulled == [0, 1]
        exact = SSEResponse(status=500, headers={}, chunks=_chunks([b"x" * 5] * 2, []))
        assert await exact.read(10) == b"x" * 10
        whole = SSEResponse(status=500, headers={}, chunks=_chunks([b"y" * 6] * 3, []))
        assert await whole.read() == b"y" * 18


class TestEmbeddings:
    async def test_embeddings_pass_their_own_bound(self, server: LMServer) -> None:
        """OpenAIEmbeddings refuses an answer past its `max_response_bytes`."""
        small = OpenAIEmbeddings(
            "text-embedding-3-small",
            ClientOptions(api_key=KEY, base_url=server.url + "/v1"),
            max_response_bytes=64,
        )
        try:
            with pytest.raises(ResponseFormatError, match=r"larger than 64 bytes"):
                await small.embed(["hello"])
        finally:
            await small.aclose()

    def test_embeddings_bound_is_validated(self) -> None:
        """A bound below 1 is refused, named."""
        with pytest.raises(ValueError, match=r"^max_response_bytes must be an int >= 1, got 0$"):
            OpenAIEmbeddings("m", max_response_bytes=0)


async def _chunks(parts: list[bytes], pulled: list[int]) -> AsyncGenerator[bytes, None]:
    for index, part in enumerate(parts):
        pulled.append(index)
        yield part


@final
class _RecordingTransport:
    """A user's own transport: a canned answer, recording the bound it is given; its
    streams are a 500 whose body is longer than any small bound."""

    def __init__(self) -> None:
        self.bounds: list[int] = []

    async def post_json(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float,  # noqa: ASYNC109 - the protocol's signature
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        provider: str,
        model: str,
    ) -> TransportResponse:
        self.bounds.append(max_response_bytes)
        answer = {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
        return TransportResponse(200, {}, json.dumps(answer).encode())

    @asynccontextmanager
    async def stream_sse(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float,  # noqa: ASYNC109 - the protocol's signature
        provider: str,
        model: str,
    ) -> AsyncIterator[SSEResponse]:
        yield SSEResponse(status=500, headers={}, chunks=_chunks([b"e" * 64] * 4, []))

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(
            kind="own",
            max_connections=None,
            keepalive_timeout=None,
            open=True,
            owns_client=True,
        )

    async def aclose(self) -> None:
        return None
