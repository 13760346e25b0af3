"""Tests for lmvisor.providers.openai: OpenAIClient against the loopback LMServer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, final

import httpx
import pytest
from structlog.testing import capture_logs

from lmvisor.programs.lm import LMDone, LMRequest, LMResponse, LMStreamItem, ToolCall
from lmvisor.providers.aiohttp_transport import AiohttpTransport
from lmvisor.providers.client import ClientOptions
from lmvisor.providers.errors import (
    AuthenticationError,
    BadRequestError,
    ModelNotFound,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    QuotaExceeded,
    RateLimitError,
    RequestBuildError,
    ResponseFormatError,
    ServerError,
)
from lmvisor.providers.httpx_transport import HttpxTransport
from lmvisor.providers.openai import OpenAIClient
from lmvisor.providers.transport import SSEResponse, TransportResponse, TransportStatistics
from lmvisor.testing.lm_server import FaultRule, LMServer
from tests.providers.conftest import KEY, MESSAGES, PERSON_SCHEMA, WEATHER_TOOL, collect_stream


def _request(model: str = "openai/gpt-4o-mini", **params: Any) -> LMRequest:
    return LMRequest(model=model, messages=MESSAGES, params=params)


class TestComplete:
    async def test_answer_usage_cost_and_wire_model(
        self, oai: OpenAIClient, server: LMServer
    ) -> None:
        """A completion returns the text, usage and cost; the vendor prefix is stripped."""
        resp = await oai.complete(_request(temperature=0.0))
        assert resp.outputs[0]
        assert resp.finish_reason == "stop"
        assert resp.model == "gpt-4o-mini"
        assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
        assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
        assert resp.cost is not None and resp.cost > 0
        sent = server.last_requests(1)[0]
        assert sent["model"] == "gpt-4o-mini"
        assert sent["temperature"] == 0.0
        assert "stream" not in sent

    async def test_max_tokens_sent_as_max_completion_tokens(
        self, oai: OpenAIClient, server: LMServer
    ) -> None:
        """OpenAI proper gets max_completion_tokens; None-valued params are dropped."""
        await oai.complete(_request(max_tokens=64, seed=None, stop=["\n\n"]))
        sent = server.last_requests(1)[0]
        assert sent["max_completion_tokens"] == 64
        assert "max_tokens" not in sent and "seed" not in sent
        assert sent["stop"] == ["\n\n"]

    async def test_n_choices(self, oai: OpenAIClient) -> None:
        """n=3 returns three outputs."""
        resp = await oai.complete(_request(n=3))
        assert len(resp.outputs) == 3

    async def test_tool_calls(self, oai: OpenAIClient, server: LMServer) -> None:
        """Tools are sent as given and tool calls come back as ToolCall with decoded args."""
        resp = await oai.complete(_request(tools=[WEATHER_TOOL], tool_choice="required"))
        assert resp.finish_reason == "tool_calls"
        assert len(resp.tool_calls) == 1
        call = resp.tool_calls[0]
        assert isinstance(call, ToolCall)
        assert call.name == "get_weather"
        assert isinstance(call.arguments["city"], str)
        assert call.id
        assert server.last_requests(1)[0]["tools"] == [WEATHER_TOOL]

    async def test_json_schema(self, oai: OpenAIClient) -> None:
        """A json_schema response_format yields JSON matching the schema."""
        resp = await oai.complete(_request(response_format=PERSON_SCHEMA))
        person = json.loads(resp.outputs[0])
        assert set(person) == {"name", "age"} and isinstance(person["age"], int)

    async def test_json_object(self, oai: OpenAIClient) -> None:
        """A json_object response_format yields a JSON object."""
        resp = await oai.complete(_request(response_format={"type": "json_object"}))
        assert isinstance(json.loads(resp.outputs[0]), dict)

    async def test_default_model_and_missing_model(self, server: LMServer) -> None:
        """An empty request model uses default_model; with neither, ValueError."""
        provider = OpenAIClient(
            ClientOptions(api_key=KEY, base_url=server.url + "/v1", default_model="gpt-4o")
        )
        resp = await provider.complete(_request(model=""))
        assert resp.model == "gpt-4o"
        bare = OpenAIClient(ClientOptions(api_key=KEY, base_url=server.url + "/v1"))
        with pytest.raises(
            ValueError, match=r"^LMRequest\.model is empty and the client has no default_model$"
        ):
            await bare.complete(_request(model=""))
        await provider.aclose()
        await bare.aclose()

    async def test_unserializable_params(self, oai: OpenAIClient) -> None:
        """Params that are not JSON, or message text no UTF-8 holds (a lone surrogate), are a
        ValueError before anything is sent."""
        with pytest.raises(ValueError, match=r"^the LM request cannot be written as JSON: "):
            await oai.complete(_request(temperature=object()))
        request = LMRequest(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "\ud800"}]
        )
        with pytest.raises(ValueError, match=r"^the LM request cannot be written as JSON: .*surr"):
            await oai.complete(request)


class TestStream:
    async def test_deltas_then_done_with_usage(self, oai: OpenAIClient, server: LMServer) -> None:
        """The stream yields text deltas, then LMDone with the whole text and final usage."""
        deltas, resp = await collect_stream(oai.stream(_request()))
        assert deltas and "".join(d.text for d in deltas) == resp.outputs[0]
        assert resp.usage.total_tokens > 0
        assert resp.cost is not None
        sent = server.last_requests(1)[0]
        assert sent["stream"] is True
        assert sent["stream_options"] == {"include_usage": True}
        plain = await oai.complete(_request())
        assert plain.outputs == resp.outputs

    async def test_stream_n_two(self, oai: OpenAIClient) -> None:
        """With n=2, deltas carry their choice index and LMDone has both outputs."""
        deltas, resp = await collect_stream(oai.stream(_request(n=2)))
        assert {d.index for d in deltas} == {0, 1}
        assert len(resp.outputs) == 2
        assert "".join(d.text for d in deltas if d.index == 1) == resp.outputs[1]

    async def test_streamed_tool_call(self, oai: OpenAIClient) -> None:
        """A streamed tool call is assembled into LMDone's tool_calls."""
        _, resp = await collect_stream(
            oai.stream(_request(tools=[WEATHER_TOOL], tool_choice="required"))
        )
        assert resp.finish_reason == "tool_calls"
        assert resp.tool_calls[0].name == "get_weather"
        assert "city" in resp.tool_calls[0].arguments

    async def test_early_exit_frees_the_request(self, oai: OpenAIClient) -> None:
        """Leaving the iteration early closes the stream; nothing stays in flight."""
        stream = oai.stream(_request())
        async for _ in stream:
            break
        await stream.aclose()  # type: ignore[attr-defined]


STATUS_CASES = [
    (FaultRule(kind="status", status=400), BadRequestError, False),
    (FaultRule(kind="status", status=401), AuthenticationError, False),
    (FaultRule(kind="status", status=404), ModelNotFound, False),
    (FaultRule(kind="status", status=429, retry_after=3), RateLimitError, True),
    (
        FaultRule(
            kind="status",
            status=429,
            code="insufficient_quota",
            message="You exceeded your current quota.",
        ),
        QuotaExceeded,
        False,
    ),
    (FaultRule(kind="status", status=500), ServerError, True),
    (FaultRule(kind="status", status=503), ServerError, True),
    (FaultRule(kind="status", status=529), OverloadedError, True),
]


class TestErrors:
    @pytest.mark.parametrize(("rule", "cls", "retryable"), STATUS_CASES)
    async def test_status_faults(
        self,
        oai: OpenAIClient,
        server: LMServer,
        rule: FaultRule,
        cls: type[ProviderError],
        retryable: bool,
    ) -> None:
        """Each injected status surfaces as its typed error with the right retryable flag."""
        server.add_fault(rule)
        for call in (oai.complete(_request()), collect_stream(oai.stream(_request()))):
            with pytest.raises(cls) as info:
                await call
            assert type(info.value) is cls
            assert info.value.retryable is retryable
            assert info.value.status == rule.status
            assert info.value.model == "gpt-4o-mini"

    @pytest.mark.parametrize(
        ("rule", "seconds"),
        [
            (FaultRule(kind="status", status=429, retry_after=2), 2.0),
            (FaultRule(kind="status", status=429, retry_after_ms=350), 0.35),
            (FaultRule(kind="status", status=429, retry_after=9, retry_after_ms=120), 0.12),
        ],
    )
    async def test_retry_after(
        self, oai: OpenAIClient, server: LMServer, rule: FaultRule, seconds: float
    ) -> None:
        """retry-after and retry-after-ms (preferred) become RateLimitError.retry_after."""
        server.add_fault(rule)
        with pytest.raises(RateLimitError) as info:
            await oai.complete(_request())
        assert info.value.retry_after == pytest.approx(seconds)

    async def test_dropped_connection(self, oai: OpenAIClient, server: LMServer) -> None:
        """A connection dropped before the answer is a retryable ProviderConnectionError."""
        server.add_fault(FaultRule(kind="drop"))
        with pytest.raises(ProviderConnectionError) as info:
            await oai.complete(_request())
        assert info.value.retryable is True

    async def test_malformed_json(self, oai: OpenAIClient, server: LMServer) -> None:
        """A truncated JSON body is a non-retryable ResponseFormatError."""
        server.add_fault(FaultRule(kind="malformed_json"))
        with pytest.raises(ResponseFormatError, match=r"response body is not valid JSON") as info:
            await oai.complete(_request())
        assert info.value.retryable is False
        assert isinstance(info.value.__cause__, ValueError)

    async def test_malformed_stream_chunk(self, oai: OpenAIClient, server: LMServer) -> None:
        """A truncated SSE data line is a ResponseFormatError naming the chunk."""
        server.add_fault(FaultRule(kind="malformed_json"))
        with pytest.raises(ResponseFormatError, match=r"stream chunk is not valid JSON"):
            await collect_stream(oai.stream(_request()))

    async def test_disconnect_mid_stream(self, oai: OpenAIClient, server: LMServer) -> None:
        """A stream cut before [DONE] is a ProviderConnectionError, after the first deltas."""
        server.add_fault(FaultRule(kind="disconnect_mid_stream"))
        received: list[LMStreamItem] = []
        with pytest.raises(ProviderConnectionError):
            async for item in oai.stream(_request()):
                received.append(item)
        assert not any(isinstance(item, LMDone) for item in received)

    async def test_error_event_mid_stream(self, oai: OpenAIClient, server: LMServer) -> None:
        """An error object mid-stream is raised as its typed error (server_error here)."""
        server.add_fault(FaultRule(kind="error_event", message="The model crashed."))
        with pytest.raises(ServerError, match=r"The model crashed\.$") as info:
            await collect_stream(oai.stream(_request()))
        assert info.value.status is None and info.value.retryable is True

    async def test_a_line_that_never_ends_is_refused(
        self, oai: OpenAIClient, server: LMServer
    ) -> None:
        """A `data:` line that never ends is a ResponseFormatError once it passes the
        event bound, not a buffer that grows until the process runs out of memory."""
        server.add_fault(FaultRule(kind="endless_line", times=1))
        with pytest.raises(
            ResponseFormatError,
            match=r"^openai: malformed response for model 'gpt-4o-mini': stream: a server-sent "
            r"event is larger than 16777216 bytes$",
        ):
            await collect_stream(oai.stream(_request()))
        assert server.stats().faults_by_kind == {"endless_line": 1}
        _, answer = await collect_stream(oai.stream(_request()))  # the client is still sound
        assert answer.outputs[0].startswith("answer ")

    async def test_a_stream_past_max_stream_bytes_is_refused(self, server: LMServer) -> None:
        """A stream whose events carry more data than `max_stream_bytes` ends with a
        ResponseFormatError, however small each event: memory stays bounded."""
        small = OpenAIClient(
            ClientOptions(api_key=KEY, base_url=server.url + "/v1", max_stream_bytes=200)
        )
        try:
            with pytest.raises(
                ResponseFormatError,
                match=r"^openai: malformed response for model 'gpt-4o-mini': stream: the answer "
                r"carries more than 200 bytes \(max_stream_bytes\)$",
            ):
                await collect_stream(small.stream(_request()))
        finally:
            await small.aclose()

    async def test_timeout(self, server: LMServer) -> None:
        """No answer within the provider's timeout is a ProviderTimeout."""
        provider = OpenAIClient(
            ClientOptions(api_key=KEY, base_url=server.url + "/v1", timeout=0.05)
        )
        server.add_fault(FaultRule(kind="slow_first_byte", delay=0.5))
        with pytest.raises(ProviderTimeout):
            await provider.complete(_request())
        await provider.aclose()

    async def test_unknown_model(self, oai: OpenAIClient) -> None:
        """A model the server does not serve is ModelNotFound naming it."""
        with pytest.raises(ModelNotFound, match=r"for model 'no-such-model'"):
            await oai.complete(_request(model="openai/no-such-model"))

    async def test_statistics_show_the_pool(self, oai: OpenAIClient) -> None:
        """statistics() shows the transport's pool; counting calls is the provider actor's job."""
        await oai.complete(_request())
        stats = oai.statistics()
        assert stats.kind in ("aiohttp", "pyreqwest") and stats.open and stats.owns_client


class TestSecrets:
    async def test_key_absent_from_errors_reprs_and_logs(self, server: LMServer) -> None:
        """No error, repr or log line shows the key, even when the vendor echoes it."""
        wrong = "sk-wrong-DO-NOT-LEAK-4242"
        good = OpenAIClient(ClientOptions(api_key=KEY, base_url=server.url + "/v1"))
        bad = OpenAIClient(ClientOptions(api_key=wrong, base_url=server.url + "/v1"))
        server.add_fault(FaultRule(kind="status", status=429, message=f"key {KEY} is limited"))
        try:
            with capture_logs() as logs:
                with pytest.raises(RateLimitError) as limited:
                    await good.complete(_request())
                with pytest.raises(AuthenticationError) as denied:
                    await bad.complete(_request())
        finally:
            await good.aclose()
            await bad.aclose()
        assert denied.value.status == 401 and denied.value.retryable is False
        assert "key *** is limited" in str(limited.value)
        assert logs == []  # failures are the provider actor's to log, once
        texts = [str(logs), repr(good), repr(bad), repr(good.statistics())]
        for err in (limited.value, denied.value):
            texts += [str(err), repr(err), json.dumps(err.to_dict())]
        for text in texts:
            assert KEY not in text
            assert wrong not in text


class TestTransports:
    async def test_httpx_client_complete_and_stream(self, server: LMServer) -> None:
        """The provider works over a user's own httpx.AsyncClient, plain and streamed."""
        async with httpx.AsyncClient() as client:
            provider = OpenAIClient(
                ClientOptions(api_key=KEY, base_url=server.url + "/v1"),
                transport=HttpxTransport(client),
            )
            resp = await provider.complete(_request())
            deltas, streamed = await collect_stream(provider.stream(_request()))
            assert streamed.outputs == resp.outputs
            assert deltas
            assert provider.statistics().kind == "httpx"
            await provider.aclose()
            assert client.is_closed is False

    async def test_given_transport_left_open(self, server: LMServer) -> None:
        """aclose() leaves a given transport open; the provider itself refuses further use."""
        transport = AiohttpTransport()
        provider = OpenAIClient(
            ClientOptions(api_key=KEY, base_url=server.url + "/v1"), transport=transport
        )
        await provider.complete(_request())
        await provider.aclose()
        assert transport.statistics().open is True
        with pytest.raises(RuntimeError, match=r"^OpenAIClient 'openai' is closed$"):
            await provider.complete(_request())
        await transport.aclose()

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"timeout": 0}, r"^ClientOptions\.timeout must be finite and > 0, got 0$"),
            (
                {"timeout": float("inf")},
                r"^ClientOptions\.timeout must be finite and > 0, got inf$",
            ),
            (
                {"timeout": float("nan")},
                r"^ClientOptions\.timeout must be finite and > 0, got nan$",
            ),
            ({"base_url": ""}, r"^ClientOptions\.base_url must start with http:// or https://"),
            ({"name": ""}, r"^ClientOptions\.name must be a non-empty string or None$"),
            ({"max_connections": -1}, r"^ClientOptions\.max_connections must be >= 0, got -1$"),
            ({"transport": "curl"}, r"^ClientOptions\.transport must be 'auto', 'aiohttp'"),
            (
                {"max_stream_bytes": 0},
                r"^ClientOptions\.max_stream_bytes must be an int >= 1, got 0$",
            ),
        ],
    )
    def test_option_validation(self, kwargs: dict[str, Any], message: str) -> None:
        """Bad options are rejected when the options are built, naming the option."""
        with pytest.raises(ValueError, match=message):
            ClientOptions(**kwargs)

    def test_options_must_be_client_options(self) -> None:
        """A client takes one ClientOptions, nothing else."""
        with pytest.raises(TypeError, match=r"^options must be ClientOptions, got dict$"):
            OpenAIClient({"api_key": KEY})  # type: ignore[arg-type]

    def test_repr_and_capabilities(self) -> None:
        """The repr shows name, URL and model but never the key; capabilities are full."""
        provider = OpenAIClient(ClientOptions(api_key=KEY, default_model="gpt-4o"))
        assert KEY not in repr(provider)
        assert repr(provider).startswith("OpenAIClient(name='openai', base_url=")
        assert provider.capabilities.json_schema and provider.capabilities.tools
        assert provider.name == "openai" and provider.default_model == "gpt-4o"


class TestResponseShape:
    """Bodies a real vendor should never send, served by an httpx.MockTransport."""

    @staticmethod
    async def _complete_with(body: Any, status: int = 200) -> LMResponse:
        def handler(request: httpx.Request) -> httpx.Response:
            if isinstance(body, bytes):
                return httpx.Response(status, content=body)
            return httpx.Response(status, json=body)

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            provider = OpenAIClient(
                ClientOptions(api_key=KEY, base_url="http://mock/v1"),
                transport=HttpxTransport(client),
            )
            return await provider.complete(_request())

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ([], r"response body: expected a JSON object$"),
            ({"id": "x"}, r"choices: expected a non-empty list$"),
            ({"choices": [{"index": 0}]}, r"choices\[0\]\.message: expected an object$"),
            (
                {"choices": [{"message": {"content": 5}}]},
                r"choices\[0\]\.message\.content: expected a string$",
            ),
            (
                {"choices": [{"message": {"content": [{"text": "a"}, {"text": {"b": 1}}]}}]},
                r"choices\[0\]\.message\.content\[1\]\.text: expected a string$",
            ),
            (
                {"choices": [{"message": {"tool_calls": [{"id": "t", "function": {}}]}}]},
                r"choices\[0\]\.message\.tool_calls\[0\]\.function: missing name$",
            ),
        ],
    )
    async def test_bad_shapes_name_the_field(self, body: Any, message: str) -> None:
        """A body missing what the API promises is a ResponseFormatError naming the field."""
        with pytest.raises(ResponseFormatError, match=message):
            await self._complete_with(body)

    async def test_slightly_broken_tool_arguments_are_repaired(self) -> None:
        """Tool-call arguments with a missing brace are repaired into a mapping."""
        call = {"id": "t1", "function": {"name": "f", "arguments": '{"city": "Paris"'}}
        resp = await self._complete_with(
            {"choices": [{"message": {"content": None, "tool_calls": [call]}}]}
        )
        assert resp.tool_calls[0].arguments == {"city": "Paris"}
        assert resp.outputs == [""]
        assert resp.usage.total_tokens == 0 and resp.cost == 0.0

    async def test_unrepairable_tool_arguments(self) -> None:
        """Arguments that are not a JSON object at all are a ResponseFormatError."""
        call = {"id": "t1", "function": {"name": "f", "arguments": "not json at all"}}
        with pytest.raises(ResponseFormatError, match=r"arguments must be a JSON object"):
            await self._complete_with({"choices": [{"message": {"tool_calls": [call]}}]})

    @pytest.mark.parametrize(
        "body",
        [
            b"[" * 100_000 + b"]" * 100_000,
            b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
            b'{"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": 1'
            + b"0" * 5000
            + b"}}",
        ],
        ids=["array-nesting", "object-nesting", "5000-digit-count"],
    )
    async def test_hostile_body_is_a_response_format_error(self, body: bytes) -> None:
        """A body nested 100,000 deep, or with absurd numbers, is bad JSON, not a crash."""
        with pytest.raises(ResponseFormatError, match=r"response body is not valid JSON"):
            await self._complete_with(body)

    async def test_hostile_tool_arguments_are_a_response_format_error(self) -> None:
        """Tool arguments nested past any depth are refused, not repaired into a crash."""
        arguments = "[" * 100_000
        call = {"id": "t1", "function": {"name": "f", "arguments": arguments}}
        with pytest.raises(ResponseFormatError, match=r"arguments must be a JSON object"):
            await self._complete_with({"choices": [{"message": {"tool_calls": [call]}}]})

    async def test_hostile_error_body_is_typed(self) -> None:
        """An error status whose body is nested 100,000 deep still maps to its typed error."""
        with pytest.raises(ServerError, match=r"^openai: server error \(HTTP 500\)"):
            await self._complete_with(b'{"error":' * 100_000 + b"}" * 100_000, status=500)

    async def test_absurd_numbers_keep_the_answer(self) -> None:
        """Counts past 2**53, negative or huge indices are read as 0; no overflow, no huge list."""
        resp = await self._complete_with(
            {
                "model": "gpt-4o-mini",
                "choices": [{"index": 10**12, "message": {"content": "ok"}}],
                "usage": {"prompt_tokens": 10**30, "completion_tokens": -5},
            }
        )
        assert resp.outputs == ["ok"]
        assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (0, 0)
        assert resp.cost == 0.0

    @pytest.mark.parametrize(
        ("chunk", "message"),
        [
            ({"choices": 5}, r"stream choices: expected a list$"),
            (
                {"choices": [{"index": 0, "delta": {"tool_calls": 5}}]},
                r"stream choices\[0\]\.delta\.tool_calls: expected a list$",
            ),
        ],
    )
    async def test_stream_chunks_of_the_wrong_shape_name_the_field(
        self, chunk: Any, message: str
    ) -> None:
        """A stream chunk whose choices or tool_calls is a number is a ResponseFormatError
        naming it (it was a TypeError out of the stream)."""
        body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            provider = OpenAIClient(
                ClientOptions(api_key=KEY, base_url="http://mock/v1"),
                transport=HttpxTransport(client),
            )
            with pytest.raises(ResponseFormatError, match=message):
                await collect_stream(provider.stream(_request()))


class TestCancellation:
    async def test_cancel_abandons_the_request(self) -> None:
        """Cancelling complete() propagates CancelledError (unmapped) and frees the slot."""
        arrived = asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            arrived.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            provider = OpenAIClient(
                ClientOptions(api_key=KEY, base_url="http://mock/v1"),
                transport=HttpxTransport(client),
            )
            task = asyncio.create_task(provider.complete(_request()))
            await arrived.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


_CHUNK = b'data: {"choices": [{"index": 0, "delta": {"content": "Paris"}}]}\n\n'


@final
class _OwnTransport:
    """A user's own `Transport`, written from scratch: canned SSE chunks, and a plain
    ValueError (as an HTTP library refusing a header raises) at the step named `fail`."""

    def __init__(self, fail: str) -> None:
        self.fail = fail
        self.released = 0

    async def post_json(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float,  # noqa: ASYNC109 - the protocol's signature
        provider: str,
        model: str,
    ) -> TransportResponse:
        raise ValueError("Newline or carriage return character detected in header")

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
        if self.fail == "open":
            raise ValueError("Newline or carriage return character detected in header")
        try:
            yield SSEResponse(status=self._status(), headers={}, chunks=self._chunks())
        finally:
            self.released += 1

    def _status(self) -> int:
        return 400 if self.fail == "error body" else 200

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        yield _CHUNK
        if self.fail in ("read", "error body"):
            raise ValueError("chunk of an unexpected encoding")
        yield b"data: [DONE]\n\n"

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(
            kind="own", max_connections=None, keepalive_timeout=None, open=True, owns_client=True
        )

    async def aclose(self) -> None:
        return None


class TestOwnTransport:
    """A ValueError from a user's own transport is the HTTP client's, as from the built-in ones."""

    @pytest.mark.parametrize("fail", ["open", "read", "error body"])
    async def test_a_value_error_while_streaming_is_a_request_build_error(self, fail: str) -> None:
        """Raised opening the stream, reading its events or reading an error body, it is a
        non-retryable RequestBuildError naming provider and model (it was a ValueError,
        the caller's bad input), the library's message left out, the stream released."""
        transport = _OwnTransport(fail)
        provider = OpenAIClient(
            ClientOptions(api_key=KEY, base_url="http://own/v1"), transport=transport
        )
        with pytest.raises(RequestBuildError) as info:
            await collect_stream(provider.stream(_request()))
        assert (info.value.provider, info.value.model, info.value.retryable) == (
            "openai",
            "gpt-4o-mini",
            False,
        )
        assert isinstance(info.value.__cause__, ValueError)
        assert str(info.value).endswith(
            "ValueError: a header value or the URL cannot be sent as configured "
            "(check the provider's api_key, headers and base_url)"
        )
        assert transport.released == (0 if fail == "open" else 1)

    async def test_a_value_error_from_post_json_is_a_request_build_error(self) -> None:
        """`post_json` raising ValueError is a RequestBuildError too."""
        provider = OpenAIClient(
            ClientOptions(api_key=KEY, base_url="http://own/v1"), transport=_OwnTransport("post")
        )
        with pytest.raises(RequestBuildError, match=r"^openai: the HTTP client could not build"):
            await provider.complete(_request())

    async def test_a_working_stream_and_the_callers_own_errors(self) -> None:
        """Its events stream as usual; the caller's bad request is still a ValueError."""
        provider = OpenAIClient(
            ClientOptions(api_key=KEY, base_url="http://own/v1"), transport=_OwnTransport("none")
        )
        deltas, resp = await collect_stream(provider.stream(_request()))
        assert [d.text for d in deltas] == ["Paris"] and resp.outputs == ["Paris"]
        with pytest.raises(ValueError, match=r"^LMRequest\.model is empty"):
            await collect_stream(provider.stream(_request(model="")))
