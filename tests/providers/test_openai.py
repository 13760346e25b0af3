"""Tests for lmvisor.providers.openai: OpenAIProvider against the loopback LMServer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from lmvisor.programs.lm import LMDone, LMRequest, LMResponse, LMStreamItem, ToolCall
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
    ResponseFormatError,
    ServerError,
)
from lmvisor.providers.openai import OpenAIProvider
from lmvisor.providers.transport import AiohttpTransport, HttpxTransport
from lmvisor.testing.lm_server import FaultRule, LMServer
from tests.providers.conftest import KEY, MESSAGES, PERSON_SCHEMA, WEATHER_TOOL, collect_stream


def _request(model: str = "openai/gpt-4o-mini", **params: Any) -> LMRequest:
    return LMRequest(model=model, messages=MESSAGES, params=params)


class TestComplete:
    async def test_answer_usage_cost_and_wire_model(
        self, oai: OpenAIProvider, server: LMServer
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
        self, oai: OpenAIProvider, server: LMServer
    ) -> None:
        """OpenAI proper gets max_completion_tokens; None-valued params are dropped."""
        await oai.complete(_request(max_tokens=64, seed=None, stop=["\n\n"]))
        sent = server.last_requests(1)[0]
        assert sent["max_completion_tokens"] == 64
        assert "max_tokens" not in sent and "seed" not in sent
        assert sent["stop"] == ["\n\n"]

    async def test_n_choices(self, oai: OpenAIProvider) -> None:
        """n=3 returns three outputs."""
        resp = await oai.complete(_request(n=3))
        assert len(resp.outputs) == 3

    async def test_tool_calls(self, oai: OpenAIProvider, server: LMServer) -> None:
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

    async def test_json_schema(self, oai: OpenAIProvider) -> None:
        """A json_schema response_format yields JSON matching the schema."""
        resp = await oai.complete(_request(response_format=PERSON_SCHEMA))
        person = json.loads(resp.outputs[0])
        assert set(person) == {"name", "age"} and isinstance(person["age"], int)

    async def test_json_object(self, oai: OpenAIProvider) -> None:
        """A json_object response_format yields a JSON object."""
        resp = await oai.complete(_request(response_format={"type": "json_object"}))
        assert isinstance(json.loads(resp.outputs[0]), dict)

    async def test_default_model_and_missing_model(self, server: LMServer) -> None:
        """An empty request model uses default_model; with neither, ValueError."""
        provider = OpenAIProvider(api_key=KEY, base_url=server.url + "/v1", default_model="gpt-4o")
        resp = await provider.complete(_request(model=""))
        assert resp.model == "gpt-4o"
        bare = OpenAIProvider(api_key=KEY, base_url=server.url + "/v1")
        with pytest.raises(
            ValueError, match=r"^LMRequest\.model is empty and the provider has no default_model$"
        ):
            await bare.complete(_request(model=""))
        await provider.aclose()
        await bare.aclose()

    async def test_unserializable_params(self, oai: OpenAIProvider) -> None:
        """Params that are not JSON are a ValueError before anything is sent."""
        with pytest.raises(ValueError, match=r"^LMRequest params are not JSON-serializable"):
            await oai.complete(_request(temperature=object()))


class TestStream:
    async def test_deltas_then_done_with_usage(self, oai: OpenAIProvider, server: LMServer) -> None:
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

    async def test_stream_n_two(self, oai: OpenAIProvider) -> None:
        """With n=2, deltas carry their choice index and LMDone has both outputs."""
        deltas, resp = await collect_stream(oai.stream(_request(n=2)))
        assert {d.index for d in deltas} == {0, 1}
        assert len(resp.outputs) == 2
        assert "".join(d.text for d in deltas if d.index == 1) == resp.outputs[1]

    async def test_streamed_tool_call(self, oai: OpenAIProvider) -> None:
        """A streamed tool call is assembled into LMDone's tool_calls."""
        _, resp = await collect_stream(
            oai.stream(_request(tools=[WEATHER_TOOL], tool_choice="required"))
        )
        assert resp.finish_reason == "tool_calls"
        assert resp.tool_calls[0].name == "get_weather"
        assert "city" in resp.tool_calls[0].arguments

    async def test_early_exit_frees_the_request(self, oai: OpenAIProvider) -> None:
        """Leaving the iteration early closes the stream; nothing stays in flight."""
        stream = oai.stream(_request())
        async for _ in stream:
            break
        await stream.aclose()  # type: ignore[attr-defined]
        assert oai.statistics().in_flight == 0
        assert oai.statistics().transport.in_flight == 0


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
        oai: OpenAIProvider,
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
        self, oai: OpenAIProvider, server: LMServer, rule: FaultRule, seconds: float
    ) -> None:
        """retry-after and retry-after-ms (preferred) become RateLimitError.retry_after."""
        server.add_fault(rule)
        with pytest.raises(RateLimitError) as info:
            await oai.complete(_request())
        assert info.value.retry_after == pytest.approx(seconds)

    async def test_dropped_connection(self, oai: OpenAIProvider, server: LMServer) -> None:
        """A connection dropped before the answer is a retryable ProviderConnectionError."""
        server.add_fault(FaultRule(kind="drop"))
        with pytest.raises(ProviderConnectionError) as info:
            await oai.complete(_request())
        assert info.value.retryable is True

    async def test_malformed_json(self, oai: OpenAIProvider, server: LMServer) -> None:
        """A truncated JSON body is a non-retryable ResponseFormatError."""
        server.add_fault(FaultRule(kind="malformed_json"))
        with pytest.raises(ResponseFormatError, match=r"response body is not valid JSON") as info:
            await oai.complete(_request())
        assert info.value.retryable is False
        assert isinstance(info.value.__cause__, ValueError)

    async def test_malformed_stream_chunk(self, oai: OpenAIProvider, server: LMServer) -> None:
        """A truncated SSE data line is a ResponseFormatError naming the chunk."""
        server.add_fault(FaultRule(kind="malformed_json"))
        with pytest.raises(ResponseFormatError, match=r"stream chunk is not valid JSON"):
            await collect_stream(oai.stream(_request()))

    async def test_disconnect_mid_stream(self, oai: OpenAIProvider, server: LMServer) -> None:
        """A stream cut before [DONE] is a ProviderConnectionError, after the first deltas."""
        server.add_fault(FaultRule(kind="disconnect_mid_stream"))
        received: list[LMStreamItem] = []
        with pytest.raises(ProviderConnectionError):
            async for item in oai.stream(_request()):
                received.append(item)
        assert not any(isinstance(item, LMDone) for item in received)
        assert oai.statistics().in_flight == 0

    async def test_error_event_mid_stream(self, oai: OpenAIProvider, server: LMServer) -> None:
        """An error object mid-stream is raised as its typed error (server_error here)."""
        server.add_fault(FaultRule(kind="error_event", message="The model crashed."))
        with pytest.raises(ServerError, match=r"The model crashed\.$") as info:
            await collect_stream(oai.stream(_request()))
        assert info.value.status is None and info.value.retryable is True

    async def test_timeout(self, server: LMServer) -> None:
        """No answer within the provider's timeout is a ProviderTimeout."""
        provider = OpenAIProvider(api_key=KEY, base_url=server.url + "/v1", timeout=0.05)
        server.add_fault(FaultRule(kind="slow_first_byte", delay=0.5))
        with pytest.raises(ProviderTimeout):
            await provider.complete(_request())
        await provider.aclose()

    async def test_unknown_model(self, oai: OpenAIProvider) -> None:
        """A model the server does not serve is ModelNotFound naming it."""
        with pytest.raises(ModelNotFound, match=r"for model 'no-such-model'"):
            await oai.complete(_request(model="openai/no-such-model"))

    async def test_statistics_count_requests_and_errors(
        self, oai: OpenAIProvider, server: LMServer
    ) -> None:
        """statistics() counts calls, failures and what is in flight."""
        await oai.complete(_request())
        server.add_fault(FaultRule(kind="status", status=500, times=1))
        with pytest.raises(ServerError):
            await oai.complete(_request())
        stats = oai.statistics()
        assert (stats.name, stats.requests, stats.errors, stats.in_flight) == ("openai", 2, 1, 0)
        assert stats.transport.kind == "aiohttp" and stats.transport.requests == 2


class TestSecrets:
    async def test_key_absent_from_errors_reprs_and_logs(self, server: LMServer) -> None:
        """No error, repr or log line shows the key, even when the vendor echoes it."""
        wrong = "sk-wrong-DO-NOT-LEAK-4242"
        good = OpenAIProvider(api_key=KEY, base_url=server.url + "/v1")
        bad = OpenAIProvider(api_key=wrong, base_url=server.url + "/v1")
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
        assert [entry["event"] for entry in logs] == ["provider.request_failed"] * 2
        assert logs[0]["error"] == "provider_rate_limited" and logs[0]["status"] == 429
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
            provider = OpenAIProvider(
                api_key=KEY, base_url=server.url + "/v1", transport=HttpxTransport(client)
            )
            resp = await provider.complete(_request())
            deltas, streamed = await collect_stream(provider.stream(_request()))
            assert streamed.outputs == resp.outputs
            assert deltas
            assert provider.statistics().transport.kind == "httpx"
            await provider.aclose()
            assert client.is_closed is False

    async def test_given_transport_left_open(self, server: LMServer) -> None:
        """aclose() leaves a given transport open; the provider itself refuses further use."""
        transport = AiohttpTransport()
        provider = OpenAIProvider(api_key=KEY, base_url=server.url + "/v1", transport=transport)
        await provider.complete(_request())
        await provider.aclose()
        assert transport.statistics().open is True
        with pytest.raises(RuntimeError, match=r"^OpenAIProvider 'openai' is closed$"):
            await provider.complete(_request())
        await transport.aclose()

    def test_pool_options_clash_with_a_transport(self) -> None:
        """Pool options with a given transport are a ValueError naming both."""
        with pytest.raises(ValueError, match=r"^max_connections and keepalive_timeout configure"):
            OpenAIProvider(transport=AiohttpTransport(), max_connections=5)

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"timeout": 0}, r"^timeout must be > 0, got 0$"),
            ({"base_url": ""}, r"^base_url must be a non-empty string$"),
            ({"name": ""}, r"^name must be a non-empty string$"),
        ],
    )
    def test_option_validation(self, kwargs: dict[str, Any], message: str) -> None:
        """Bad options are rejected at construction, naming the option."""
        with pytest.raises(ValueError, match=message):
            OpenAIProvider(**kwargs)

    def test_repr_and_capabilities(self) -> None:
        """The repr shows name, URL and model but never the key; capabilities are full."""
        provider = OpenAIProvider(api_key=KEY, default_model="gpt-4o")
        assert KEY not in repr(provider)
        assert repr(provider).startswith("OpenAIProvider(name='openai', base_url=")
        assert provider.capabilities.json_schema and provider.capabilities.tools
        assert provider.name == "openai" and provider.default_model == "gpt-4o"


class TestResponseShape:
    """Bodies a real vendor should never send, served by an httpx.MockTransport."""

    @staticmethod
    async def _complete_with(body: Any) -> LMResponse:
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json=body)

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            provider = OpenAIProvider(
                api_key=KEY, base_url="http://mock/v1", transport=HttpxTransport(client)
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


class TestCancellation:
    async def test_cancel_abandons_the_request(self) -> None:
        """Cancelling complete() propagates CancelledError (unmapped) and frees the slot."""
        arrived = asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            arrived.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            provider = OpenAIProvider(
                api_key=KEY, base_url="http://mock/v1", transport=HttpxTransport(client)
            )
            task = asyncio.create_task(provider.complete(_request()))
            await arrived.wait()
            assert provider.statistics().in_flight == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        stats = provider.statistics()
        assert (stats.in_flight, stats.errors, stats.transport.in_flight) == (0, 0, 0)
