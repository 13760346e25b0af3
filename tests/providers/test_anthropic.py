"""Tests for lmvisor.providers.anthropic: request mapping and AnthropicClient on LMServer."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from lmvisor.programs.lm import LMRequest
from lmvisor.providers._anthropic_request import to_anthropic_messages
from lmvisor.providers.anthropic import AnthropicClient
from lmvisor.providers.client import ClientOptions
from lmvisor.providers.errors import (
    AuthenticationError,
    BadRequestError,
    ModelNotFound,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
)
from lmvisor.providers.httpx_transport import HttpxTransport
from lmvisor.testing.lm_server import FaultRule, LMServer
from tests.providers.conftest import KEY, MESSAGES, PERSON_SCHEMA, WEATHER_TOOL, collect_stream

MODEL = "claude-haiku-4-5"


def _request(model: str = f"anthropic/{MODEL}", **params: Any) -> LMRequest:
    return LMRequest(model=model, messages=MESSAGES, params=params)


class TestMessageMapping:
    def test_system_user_assistant(self) -> None:
        """System texts leave the message list; user and assistant text stay as strings."""
        system, messages = to_anthropic_messages(
            [
                {"role": "system", "content": "A"},
                {"role": "developer", "content": [{"type": "text", "text": "B"}]},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ]
        )
        assert system == ["A", "B"]
        assert messages == [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
        ]

    def test_tool_calls_and_results(self) -> None:
        """Assistant tool_calls become tool_use blocks; tool messages one user turn of results."""
        _, messages = to_anthropic_messages(
            [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": "Let me look.",
                    "tool_calls": [
                        {
                            "id": "t1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        },
                        {
                            "id": "t2",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "t2", "content": "rain"},
            ]
        )
        assert messages[1]["content"] == [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "t2", "name": "get_weather", "input": {"city": "Rome"}},
        ]
        assert messages[2] == {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "t2", "content": "rain"},
            ],
        }

    def test_images(self) -> None:
        """image_url parts become base64 or url image blocks."""
        _, messages = to_anthropic_messages(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                    ],
                }
            ]
        )
        assert messages[0]["content"][1:] == [
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": "QUJD"},
            },
            {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
        ]

    def test_bad_role(self) -> None:
        """An unknown role is a ValueError naming the message."""
        with pytest.raises(
            ValueError,
            match=r"^messages\[0\]\.role must be system, user, assistant or tool, got 'robot'$",
        ):
            to_anthropic_messages([{"role": "robot", "content": "x"}])

    @pytest.mark.parametrize(
        ("calls", "message"),
        [
            ("f()", r"^messages\[0\]\.tool_calls must be a list$"),
            (["f"], r"^messages\[0\]\.tool_calls\[0\]\.function must be an object$"),
            ([{"id": "t"}], r"^messages\[0\]\.tool_calls\[0\]\.function must be an object$"),
        ],
    )
    def test_malformed_tool_calls(self, calls: Any, message: str) -> None:
        """Assistant tool_calls of the wrong shape are a ValueError naming them, not a crash."""
        with pytest.raises(ValueError, match=message):
            to_anthropic_messages([{"role": "assistant", "content": None, "tool_calls": calls}])

    @pytest.mark.parametrize("arguments", ["{bad", "[" * 100_000])
    def test_bad_tool_arguments(self, arguments: str) -> None:
        """Assistant tool-call arguments that are not JSON (or nested past the decoder's
        depth) are a ValueError naming them."""
        with pytest.raises(
            ValueError, match=r"^messages\[0\]\.tool_calls\[0\]\.function\.arguments is not"
        ):
            to_anthropic_messages(
                [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {"id": "t", "function": {"name": "f", "arguments": arguments}}
                        ],
                    }
                ]
            )


class TestComplete:
    async def test_wire_format(self, claude: AnthropicClient, server: LMServer) -> None:
        """System goes top-level, max_tokens defaults to 1024, OpenAI-only params drop."""
        resp = await claude.complete(_request(temperature=0.2, seed=1, stop="\n\n", top_k=5))
        sent = server.last_requests(1)[0]
        assert sent["model"] == MODEL
        assert sent["system"] == "Answer briefly."
        assert sent["messages"] == [MESSAGES[1]]
        assert sent["max_tokens"] == 1024
        assert sent["stop_sequences"] == ["\n\n"]
        assert (sent["temperature"], sent["top_k"]) == (0.2, 5)
        assert "seed" not in sent and "stop" not in sent
        assert resp.outputs[0] and resp.finish_reason == "stop"
        assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
        assert resp.usage.prompt_tokens > 0
        assert resp.cost is not None and resp.cost > 0

    async def test_max_tokens_given(self, claude: AnthropicClient, server: LMServer) -> None:
        """max_completion_tokens (or max_tokens) is sent as max_tokens."""
        await claude.complete(_request(max_completion_tokens=77))
        assert server.last_requests(1)[0]["max_tokens"] == 77

    async def test_tools(self, claude: AnthropicClient, server: LMServer) -> None:
        """OpenAI tools map to Anthropic's schema; tool_use comes back as ToolCall."""
        resp = await claude.complete(
            _request(tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False)
        )
        sent = server.last_requests(1)[0]
        assert sent["tools"] == [
            {
                "name": "get_weather",
                "description": "The weather in a city.",
                "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
            }
        ]
        assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
        assert resp.finish_reason == "tool_calls"
        assert resp.tool_calls[0].name == "get_weather"
        assert isinstance(resp.tool_calls[0].arguments["city"], str)

    async def test_named_tool_choice(self, claude: AnthropicClient, server: LMServer) -> None:
        """A named function tool_choice becomes {"type": "tool", "name": ...}."""
        choice = {"type": "function", "function": {"name": "get_weather"}}
        await claude.complete(_request(tools=[WEATHER_TOOL], tool_choice=choice))
        assert server.last_requests(1)[0]["tool_choice"] == {"type": "tool", "name": "get_weather"}

    async def test_n_sends_concurrent_requests(
        self, claude: AnthropicClient, server: LMServer
    ) -> None:
        """n=3 sends three requests and returns three outputs with summed usage."""
        single = await claude.complete(_request())
        before = server.stats().requests
        resp = await claude.complete(_request(n=3))
        assert server.stats().requests - before == 3
        assert len(resp.outputs) == 3
        assert resp.usage.total_tokens == 3 * single.usage.total_tokens
        assert resp.cost == pytest.approx(3 * (single.cost or 0.0))
        assert "n" not in server.last_requests(1)[0]

    async def test_n_failure_raises_one_typed_error(
        self, claude: AnthropicClient, server: LMServer
    ) -> None:
        """If one of the n requests fails, its typed error is raised and none is left running."""
        server.add_fault(FaultRule(kind="status", status=529, times=1))
        with pytest.raises(OverloadedError):
            await claude.complete(_request(n=3))

    async def test_json_schema_by_instruction(
        self, claude: AnthropicClient, server: LMServer
    ) -> None:
        """By default a json_schema becomes a system instruction carrying the schema."""
        await claude.complete(_request(response_format=PERSON_SCHEMA))
        sent = server.last_requests(1)[0]
        schema = json.dumps(PERSON_SCHEMA["json_schema"]["schema"])  # type: ignore[index]
        assert sent["system"].startswith("Answer briefly.\n\nRespond with a single valid JSON")
        assert sent["system"].endswith(schema)
        assert "response_format" not in sent and "output_format" not in sent
        assert claude.capabilities.json_schema is False

    async def test_json_object_instruction(self, claude: AnthropicClient, server: LMServer) -> None:
        """json_object asks for a single JSON object in the system text."""
        await claude.complete(_request(response_format={"type": "json_object"}))
        assert "single valid JSON object" in server.last_requests(1)[0]["system"]

    async def test_native_json_schema(self, server: LMServer) -> None:
        """With native_json_schema, the schema is sent as output_format and enforced."""
        provider = AnthropicClient(
            ClientOptions(api_key=KEY, base_url=server.url), native_json_schema=True
        )
        try:
            resp = await provider.complete(_request(response_format=PERSON_SCHEMA))
        finally:
            await provider.aclose()
        sent = server.last_requests(1)[0]
        assert sent["output_format"]["type"] == "json_schema"
        assert sent["system"] == "Answer briefly."
        assert set(json.loads(resp.outputs[0])) == {"name", "age"}
        assert provider.capabilities.json_schema is True


class TestStream:
    async def test_deltas_then_done(self, claude: AnthropicClient) -> None:
        """The event sequence yields text deltas, then LMDone with usage and stop reason."""
        deltas, resp = await collect_stream(claude.stream(_request()))
        assert deltas and "".join(d.text for d in deltas) == resp.outputs[0]
        assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
        assert resp.finish_reason == "stop"
        assert resp.model == MODEL
        assert (await claude.complete(_request())).outputs == resp.outputs

    async def test_streamed_tool_use(self, claude: AnthropicClient) -> None:
        """input_json_delta pieces assemble into the tool call's arguments."""
        _, resp = await collect_stream(
            claude.stream(_request(tools=[WEATHER_TOOL], tool_choice="any"))
        )
        assert resp.finish_reason == "tool_calls"
        assert resp.tool_calls[0].name == "get_weather"
        assert "city" in resp.tool_calls[0].arguments

    async def test_stream_rejects_n(self, claude: AnthropicClient) -> None:
        """Streaming with n > 1 is refused before anything is sent."""
        with pytest.raises(
            ValueError,
            match=r"^AnthropicClient\.stream does not support n > 1; use complete\(\)$",
        ):
            await collect_stream(claude.stream(_request(n=2)))

    async def test_error_event_is_overloaded(
        self, claude: AnthropicClient, server: LMServer
    ) -> None:
        """An `event: error` overloaded_error mid-stream raises a retryable OverloadedError."""
        server.add_fault(FaultRule(kind="error_event"))
        with pytest.raises(OverloadedError) as info:
            await collect_stream(claude.stream(_request()))
        assert info.value.retryable is True and info.value.status is None

    async def test_disconnect_mid_stream(self, claude: AnthropicClient, server: LMServer) -> None:
        """A stream cut before message_stop is a ProviderConnectionError."""
        server.add_fault(FaultRule(kind="disconnect_mid_stream"))
        with pytest.raises(ProviderConnectionError):
            await collect_stream(claude.stream(_request()))

    async def test_malformed_event(self, claude: AnthropicClient, server: LMServer) -> None:
        """A truncated event's JSON is a ResponseFormatError."""
        server.add_fault(FaultRule(kind="malformed_json"))
        with pytest.raises(ResponseFormatError, match=r"event is not valid JSON"):
            await collect_stream(claude.stream(_request()))

    @pytest.mark.parametrize(
        ("event", "field"),
        [
            ({"type": "message_start", "message": "oops"}, "message_start.message"),
            ({"type": "content_block_start", "content_block": 1}, "content_block_start."),
            ({"type": "content_block_delta", "delta": []}, "content_block_delta.delta"),
            ({"type": "message_delta", "usage": "x"}, "message_delta.usage"),
        ],
    )
    async def test_misshapen_event_field(self, event: dict[str, Any], field: str) -> None:
        """An event whose nested object is of the wrong type is a ResponseFormatError naming it."""
        body = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            provider = AnthropicClient(
                ClientOptions(api_key=KEY, base_url="http://mock"), transport=HttpxTransport(client)
            )
            with pytest.raises(ResponseFormatError, match=rf": {field}.*not an object$"):
                await collect_stream(provider.stream(_request()))

    async def test_odd_stop_reason_and_model_are_ignored(self) -> None:
        """A stop_reason or model that is not a string (a list, here) is no reason and no
        model name, as in a whole answer (it raised TypeError: unhashable type)."""
        events = [
            {"type": "message_start", "message": {"model": ["m"], "usage": {}}},
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "hi"},
            },
            {"type": "message_delta", "delta": {"stop_reason": ["end_turn"]}, "usage": {}},
            {"type": "message_stop"},
        ]
        body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            provider = AnthropicClient(
                ClientOptions(api_key=KEY, base_url="http://mock"), transport=HttpxTransport(client)
            )
            _, resp = await collect_stream(provider.stream(_request()))
        assert (resp.outputs, resp.finish_reason, resp.model) == (["hi"], None, MODEL)

    async def test_over_httpx(self, server: LMServer) -> None:
        """The provider streams over a user's httpx.AsyncClient too."""
        async with httpx.AsyncClient() as client:
            provider = AnthropicClient(
                ClientOptions(api_key=KEY, base_url=server.url), transport=HttpxTransport(client)
            )
            deltas, resp = await collect_stream(provider.stream(_request()))
            assert deltas and resp.outputs[0]
            assert (await provider.complete(_request())).outputs == resp.outputs
            await provider.aclose()


class TestErrors:
    @pytest.mark.parametrize(
        ("rule", "cls", "retryable"),
        [
            (FaultRule(kind="status", status=400), BadRequestError, False),
            (FaultRule(kind="status", status=429, retry_after=4), RateLimitError, True),
            (FaultRule(kind="status", status=500), ServerError, True),
            (FaultRule(kind="status", status=503), ServerError, True),
            (FaultRule(kind="status", status=529), OverloadedError, True),
        ],
    )
    async def test_status_faults(
        self,
        claude: AnthropicClient,
        server: LMServer,
        rule: FaultRule,
        cls: type[ProviderError],
        retryable: bool,
    ) -> None:
        """Anthropic's error bodies map to the same typed errors as OpenAI's."""
        server.add_fault(rule)
        for call in (claude.complete(_request()), collect_stream(claude.stream(_request()))):
            with pytest.raises(cls) as info:
                await call
            assert type(info.value) is cls
            assert info.value.retryable is retryable
            assert info.value.provider == "anthropic"
        if rule.status == 429:
            assert isinstance(info.value, RateLimitError) and info.value.retry_after == 4.0

    async def test_unknown_model(self, claude: AnthropicClient) -> None:
        """An unknown model is ModelNotFound."""
        with pytest.raises(ModelNotFound):
            await claude.complete(_request(model="anthropic/unknown-model"))

    async def test_wrong_key_never_shown(self, server: LMServer) -> None:
        """A wrong x-api-key is AuthenticationError; the key is in no error or log."""
        wrong = "sk-ant-WRONG-never-show-99"
        provider = AnthropicClient(ClientOptions(api_key=wrong, base_url=server.url))
        try:
            with capture_logs() as logs, pytest.raises(AuthenticationError) as info:
                await provider.complete(_request())
        finally:
            await provider.aclose()
        assert info.value.status == 401
        for text in (
            str(logs),
            str(info.value),
            repr(info.value),
            repr(provider),
            json.dumps(info.value.to_dict()),
        ):
            assert wrong not in text

    def test_option_validation(self) -> None:
        """default_max_tokens must be positive."""
        with pytest.raises(ValueError, match=r"^default_max_tokens must be >= 1, got 0$"):
            AnthropicClient(ClientOptions(), default_max_tokens=0)
