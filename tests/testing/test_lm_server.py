"""LMServer against the official OpenAI and Anthropic SDKs: wire fidelity, stats, scale."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from lmvisor.testing.lm_server import LMServer, LMServerStats, main
from tests.testing.test_lm_server_answers import _SYSTEM, _USER, parse_chat_adapter

USER: Any = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "days", "unit"],
        },
    },
}
QA_SCHEMA: Any = {
    "type": "json_schema",
    "json_schema": {
        "name": "QA",
        "strict": True,
        "schema": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "answer": {"type": "string"},
                "confidence": {"type": "number"},
                "kind": {"type": "string", "enum": ["fact", "opinion"]},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["answer", "confidence", "kind", "tags"],
        },
    },
}


async def _raw_post(
    url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=json.dumps(body), headers=headers or {}) as resp,
    ):
        text = await resp.text()
        return resp.status, json.loads(text), dict(resp.headers)


async def _sse_event_names(url: str, body: Any) -> list[str]:
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as resp,
    ):
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        text = await resp.text()
    return [line[7:] for line in text.splitlines() if line.startswith("event: ")]


class TestOpenAIChat:
    async def test_completion_parses_into_the_sdk_type(self, oai: openai.AsyncOpenAI) -> None:
        """A plain completion is a valid ChatCompletion with text, finish reason and usage."""
        result = await oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
        assert isinstance(result, ChatCompletion)
        assert result.object == "chat.completion"
        assert result.id.startswith("chatcmpl-")
        assert result.model == "gpt-4o-mini"
        (choice,) = result.choices
        assert choice.finish_reason == "stop"
        assert choice.message.role == "assistant"
        assert choice.message.content and "capital of France" in choice.message.content
        assert result.usage is not None
        assert result.usage.prompt_tokens == len(USER[0]["content"]) // 4
        assert (
            result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
        )
        assert result.usage.prompt_tokens_details is not None
        assert result.usage.prompt_tokens_details.cached_tokens == 0

    async def test_same_request_same_answer(self, oai: openai.AsyncOpenAI) -> None:
        """Answers are deterministic: repeating a request repeats the text."""
        first = await oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
        second = await oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
        assert first.choices[0].message.content == second.choices[0].message.content

    async def test_n_returns_that_many_distinct_choices(self, oai: openai.AsyncOpenAI) -> None:
        """`n=2` gives two choices, indexed 0 and 1, with different texts."""
        result = await oai.chat.completions.create(model="gpt-4o-mini", messages=USER, n=2)
        assert [c.index for c in result.choices] == [0, 1]
        assert result.choices[0].message.content != result.choices[1].message.content

    async def test_stream_with_usage(self, oai: openai.AsyncOpenAI) -> None:
        """A stream is role delta, content deltas, finish chunk, then a usage-only chunk."""
        plain = await oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
        stream = await oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
        assert chunks[0].choices[0].delta.role == "assistant"
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == plain.choices[0].message.content
        assert chunks[-2].choices[0].finish_reason == "stop"
        assert chunks[-1].choices == []
        assert chunks[-1].usage == plain.usage
        assert all(c.usage is None for c in chunks[:-1])

    async def test_stream_without_usage_has_no_usage_chunk(self, oai: openai.AsyncOpenAI) -> None:
        """Without include_usage no chunk carries usage and the last one has the finish."""
        stream = await oai.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
        chunks = [chunk async for chunk in stream]
        assert all(c.usage is None for c in chunks)
        assert chunks[-1].choices[0].finish_reason == "stop"

    async def test_stream_n_two_streams_both_choices(self, oai: openai.AsyncOpenAI) -> None:
        """A stream with n=2 carries deltas and a finish for each choice index."""
        stream = await oai.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True, n=2
        )
        finishes = {
            c.choices[0].index for c in [x async for x in stream] if c.choices[0].finish_reason
        }
        assert finishes == {0, 1}

    async def test_json_schema_answer_is_valid(self, oai: openai.AsyncOpenAI) -> None:
        """A json_schema response format gets JSON with every property of the right type."""
        result = await oai.chat.completions.create(
            model="gpt-4o-mini", messages=USER, response_format=QA_SCHEMA
        )
        value = json.loads(result.choices[0].message.content or "")
        assert set(value) == {"answer", "confidence", "kind", "tags"}
        assert isinstance(value["answer"], str)
        assert isinstance(value["confidence"], float)
        assert value["kind"] == "fact"
        assert all(isinstance(t, str) for t in value["tags"])

    async def test_json_object_answer_is_an_object(self, oai: openai.AsyncOpenAI) -> None:
        """JSON mode gets a JSON object."""
        result = await oai.chat.completions.create(
            model="gpt-4o-mini", messages=USER, response_format={"type": "json_object"}
        )
        assert isinstance(json.loads(result.choices[0].message.content or ""), dict)

    async def test_tools_are_answered_with_a_tool_call(self, oai: openai.AsyncOpenAI) -> None:
        """Given tools, the answer calls the first one with arguments built from its schema."""
        result = await oai.chat.completions.create(
            model="gpt-4o-mini", messages=USER, tools=[WEATHER_TOOL]
        )
        (choice,) = result.choices
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        (call,) = choice.message.tool_calls or []
        assert call.type == "function"
        assert call.id.startswith("call_")
        assert call.function.name == "get_weather"
        args = json.loads(call.function.arguments)
        assert isinstance(args["city"], str)
        assert 1 <= args["days"] <= 7
        assert args["unit"] == "celsius"

    async def test_streamed_tool_call_assembles(self, oai: openai.AsyncOpenAI) -> None:
        """Streamed tool-call argument deltas join into the same JSON as the plain answer."""
        plain = await oai.chat.completions.create(
            model="gpt-4o-mini", messages=USER, tools=[WEATHER_TOOL]
        )
        stream = await oai.chat.completions.create(
            model="gpt-4o-mini", messages=USER, tools=[WEATHER_TOOL], stream=True
        )
        chunks = [c async for c in stream]
        deltas = [d for c in chunks for d in c.choices[0].delta.tool_calls or []]
        assert (deltas[0].id or "").startswith("call_")
        arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
        (call,) = plain.choices[0].message.tool_calls or []
        assert call.type == "function"
        assert arguments == call.function.arguments
        assert chunks[-1].choices[0].finish_reason == "tool_calls"

    async def test_tool_choice_none_and_tool_results_get_text(
        self, oai: openai.AsyncOpenAI
    ) -> None:
        """tool_choice "none", or a last message that is a tool result, gets a text answer."""
        none = await oai.chat.completions.create(
            model="gpt-4o-mini", messages=USER, tools=[WEATHER_TOOL], tool_choice="none"
        )
        assert none.choices[0].finish_reason == "stop"
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"},
        }
        messages: Any = [
            *USER,
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ]
        after = await oai.chat.completions.create(
            model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL]
        )
        assert after.choices[0].finish_reason == "stop"
        assert after.choices[0].message.content

    async def test_max_tokens_truncates_with_length(self, oai: openai.AsyncOpenAI) -> None:
        """An answer longer than max_completion_tokens is cut and finishes with "length"."""
        result = await oai.chat.completions.create(
            model="gpt-4o-mini", messages=USER, max_completion_tokens=2
        )
        assert result.choices[0].finish_reason == "length"
        assert len(result.choices[0].message.content or "") == 8
        legacy = await oai.chat.completions.create(model="gpt-4o-mini", messages=USER, max_tokens=2)
        assert legacy.choices[0].finish_reason == "length"

    async def test_stop_sequence_cuts_the_answer(self, oai: openai.AsyncOpenAI) -> None:
        """The text ends before the first stop sequence it contains."""
        plain = await oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
        text = plain.choices[0].message.content or ""
        assert " re:" in text
        result = await oai.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stop=[" re:"]
        )
        assert result.choices[0].message.content == text.split(" re:")[0]
        assert result.choices[0].finish_reason == "stop"

    async def test_chat_adapter_prompt_gets_chat_adapter_answer(
        self, oai: openai.AsyncOpenAI
    ) -> None:
        """A DSPy ChatAdapter prompt is answered field by field in markers."""
        messages: Any = [{"role": "system", "content": _SYSTEM}, _USER]
        result = await oai.chat.completions.create(model="gpt-4o-mini", messages=messages)
        fields = parse_chat_adapter(result.choices[0].message.content or "")
        assert list(fields) == ["answer", "confidence", "kind", "completed"]
        assert float(fields["confidence"]) > 0
        assert fields["kind"] == "fact"

    async def test_unknown_model_is_not_found(self, oai: openai.AsyncOpenAI) -> None:
        """A model the server does not serve is OpenAI's 404 model_not_found."""
        with pytest.raises(openai.NotFoundError) as info:
            await oai.chat.completions.create(model="no-such-model", messages=USER)
        assert info.value.code == "model_not_found"

    async def test_bad_body_is_bad_request(self, oai: openai.AsyncOpenAI) -> None:
        """An empty message list is a 400 naming `messages`."""
        with pytest.raises(openai.BadRequestError) as info:
            await oai.chat.completions.create(model="gpt-4o-mini", messages=[])
        assert info.value.param == "messages"

    async def test_invalid_json_gets_openai_error_shape(self, server: LMServer) -> None:
        """A body that is not JSON gets 400 and `{"error": {message, type, param, code}}`."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(server.url + "/v1/chat/completions", data=b"{oops") as resp,
        ):
            body = await resp.json()
        assert resp.status == 400
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["type"] == "invalid_request_error"

    async def test_models_list(self, oai: openai.AsyncOpenAI) -> None:
        """GET /v1/models lists the served models in OpenAI's shape."""
        models = [m.id async for m in oai.models.list()]
        assert "gpt-4o-mini" in models
        assert not any(m.endswith("*") for m in models)

    async def test_model_retrieve(self, oai: openai.AsyncOpenAI) -> None:
        """GET /v1/models/{id} returns a served model, prefix patterns included, or 404."""
        assert (await oai.models.retrieve("gpt-4o-mini")).id == "gpt-4o-mini"
        assert (await oai.models.retrieve("llama3.2:latest")).id == "llama3.2:latest"
        with pytest.raises(openai.NotFoundError):
            await oai.models.retrieve("no-such-model")

    async def test_custom_model_list(self) -> None:
        """A server built with `models` serves exactly those and 404s the rest."""
        async with LMServer(models=["only-one"]) as lm:
            client = openai.AsyncOpenAI(base_url=lm.url + "/v1", api_key="k", max_retries=0)
            assert [m.id async for m in client.models.list()] == ["only-one"]
            assert (await client.chat.completions.create(model="only-one", messages=USER)).choices
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
            await client.close()


class TestOpenAIAuth:
    async def test_bearer_key_checked_when_set(self) -> None:
        """With api_key set, a wrong bearer is 401 AuthenticationError and the right one works."""
        async with LMServer(api_key="sk-right") as lm:
            wrong = openai.AsyncOpenAI(base_url=lm.url + "/v1", api_key="sk-wrong", max_retries=0)
            right = openai.AsyncOpenAI(base_url=lm.url + "/v1", api_key="sk-right", max_retries=0)
            with pytest.raises(openai.AuthenticationError) as info:
                await wrong.chat.completions.create(model="gpt-4o-mini", messages=USER)
            assert info.value.code == "invalid_api_key"
            assert "sk-wrong" not in str(info.value)
            result = await right.chat.completions.create(model="gpt-4o-mini", messages=USER)
            assert result.choices[0].message.content
            await wrong.close()
            await right.close()


class TestAnthropicMessages:
    async def test_message_parses_into_the_sdk_type(self, claude: anthropic.AsyncAnthropic) -> None:
        """A plain message is a valid Message with one text block, end_turn and usage."""
        result = await claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=200,
            messages=USER,
        )
        assert isinstance(result, Message)
        assert result.id.startswith("msg_")
        assert result.type == "message"
        assert result.role == "assistant"
        assert result.stop_reason == "end_turn"
        assert result.stop_sequence is None
        (block,) = result.content
        assert block.type == "text"
        assert "capital of France" in block.text
        assert result.usage.input_tokens == len(USER[0]["content"]) // 4
        assert result.usage.cache_read_input_tokens == 0
        assert result.usage.cache_creation_input_tokens == 0

    async def test_system_field_carries_chat_adapter_prompt(
        self, claude: anthropic.AsyncAnthropic
    ) -> None:
        """A DSPy prompt in the top-level `system` gets a ChatAdapter answer."""
        result = await claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=500,
            system=_SYSTEM,
            messages=[_USER],
        )
        block = result.content[0]
        assert block.type == "text"
        assert list(parse_chat_adapter(block.text)) == ["answer", "confidence", "kind", "completed"]

    async def test_stream_events_and_final_message(self, claude: anthropic.AsyncAnthropic) -> None:
        """The SDK's stream helper assembles the same message the plain call returns."""
        plain = await claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=200,
            messages=USER,
        )
        async with claude.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=200,
            messages=USER,
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
        assert plain.content[0].type == "text"
        assert text == plain.content[0].text
        assert final.content[0].type == "text"
        assert final.content[0].text == plain.content[0].text
        assert final.stop_reason == "end_turn"
        assert final.usage.output_tokens == plain.usage.output_tokens

    async def test_raw_stream_event_order(self, server: LMServer) -> None:
        """The SSE sequence is message_start, content_block_start, ping, deltas, stops."""
        body = {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": USER, "stream": True}
        names = await _sse_event_names(server.url + "/v1/messages", body)
        assert names[:3] == ["message_start", "content_block_start", "ping"]
        assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
        assert set(names[3:-3]) == {"content_block_delta"}

    async def test_stream_events_are_sdk_types(self, claude: anthropic.AsyncAnthropic) -> None:
        """Every raw event of `stream=True` parses as a RawMessageStreamEvent."""
        stream = await claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=100,
            messages=USER,
            stream=True,
        )
        events: list[RawMessageStreamEvent] = [e async for e in stream]
        assert events[0].type == "message_start"
        assert events[-1].type == "message_stop"
        delta = events[-2]
        assert delta.type == "message_delta"
        assert delta.delta.stop_reason == "end_turn"

    async def test_tools_are_answered_with_tool_use(self, claude: anthropic.AsyncAnthropic) -> None:
        """Given tools, the answer is a tool_use block with input built from input_schema."""
        tool: Any = {
            "name": "lookup",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
        result = await claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=100,
            messages=USER,
            tools=[tool],
        )
        assert result.stop_reason == "tool_use"
        (block,) = result.content
        assert block.type == "tool_use"
        assert block.name == "lookup"
        assert block.id.startswith("toolu_")
        assert isinstance(block.input, dict)
        assert isinstance(block.input["q"], str)
        async with claude.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=100,
            messages=USER,
            tools=[tool],
        ) as stream:
            final = await stream.get_final_message()
        assert final.content[0].type == "tool_use"
        assert final.content[0].input == block.input

    async def test_tool_result_gets_text(self, claude: anthropic.AsyncAnthropic) -> None:
        """A last user turn holding a tool_result is answered with text."""
        tool: Any = {"name": "lookup", "input_schema": {"type": "object", "properties": {}}}
        messages: Any = [
            *USER,
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Paris"}],
            },
        ]
        result = await claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=100,
            messages=messages,
            tools=[tool],
        )
        assert result.stop_reason == "end_turn"

    async def test_max_tokens_and_stop_sequences(self, claude: anthropic.AsyncAnthropic) -> None:
        """A short max_tokens stops with "max_tokens"; a stop sequence is reported."""
        short = await claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=1,
            messages=USER,
        )
        assert short.stop_reason == "max_tokens"
        stopped = await claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=100,
            messages=USER,
            stop_sequences=[" re:"],
        )
        assert stopped.stop_reason == "stop_sequence"
        assert stopped.stop_sequence == " re:"

    async def test_missing_max_tokens_is_bad_request(self, server: LMServer) -> None:
        """No max_tokens is a 400 invalid_request_error in Anthropic's error shape."""
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
        status, body, _ = await _raw_post(
            server.url + "/v1/messages", {"model": "claude-haiku-4-5", "messages": USER}, headers
        )
        assert status == 400
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["message"] == "max_tokens: Field required"

    @pytest.mark.parametrize(
        ("headers", "status", "kind"),
        [
            ({"anthropic-version": "2023-06-01"}, 401, "authentication_error"),
            ({"x-api-key": "k"}, 400, "invalid_request_error"),
        ],
    )
    async def test_required_headers(
        self, server: LMServer, headers: dict[str, str], status: int, kind: str
    ) -> None:
        """x-api-key and anthropic-version are required, in Anthropic's error shape."""
        body = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": USER}
        got, error, _ = await _raw_post(server.url + "/v1/messages", body, headers)
        assert got == status
        assert error["error"]["type"] == kind

    async def test_wrong_key_is_authentication_error(self) -> None:
        """With api_key set, another x-api-key is the SDK's AuthenticationError."""
        async with LMServer(api_key="right") as lm:
            client = anthropic.AsyncAnthropic(base_url=lm.url, api_key="wrong", max_retries=0)
            with pytest.raises(anthropic.AuthenticationError):
                await client.messages.create(
                    model="claude-haiku-4-5",
                    max_tokens=10,
                    messages=USER,
                )
            await client.close()

    async def test_structured_output_schema(self, server: LMServer) -> None:
        """`output_format` json_schema gets a text block holding JSON valid for the schema."""
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
        body = {
            "model": "claude-haiku-4-5",
            "max_tokens": 100,
            "messages": USER,
            "output_format": {"type": "json_schema", "schema": schema},
        }
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
        status, message, _ = await _raw_post(server.url + "/v1/messages", body, headers)
        assert status == 200
        assert isinstance(json.loads(message["content"][0]["text"])["n"], int)

    async def test_models_list_in_anthropic_shape(self, claude: anthropic.AsyncAnthropic) -> None:
        """With anthropic-version sent, GET /v1/models answers in Anthropic's list shape."""
        models = [m.id async for m in claude.models.list()]
        assert "claude-haiku-4-5" in models


class TestStats:
    async def test_counts_paths_statuses_and_bodies(
        self, server: LMServer, oai: openai.AsyncOpenAI
    ) -> None:
        """stats() counts requests per path and status; last_requests() keeps the bodies."""
        await oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
        with pytest.raises(openai.NotFoundError):
            await oai.chat.completions.create(model="nope", messages=USER)
        stats = server.stats()
        assert isinstance(stats, LMServerStats)
        assert stats.requests == 2
        assert stats.in_flight == 0
        assert stats.peak_in_flight == 1
        assert stats.by_path == {"/v1/chat/completions": 2}
        assert stats.by_status == {200: 1, 404: 1}
        assert [b["model"] for b in server.last_requests()] == ["gpt-4o-mini", "nope"]
        assert server.last_requests(1)[0]["model"] == "nope"
        assert server.last_requests(0) == []
        assert len(server.last_requests(5)) == 2

    async def test_stats_endpoint_and_reset(
        self, server: LMServer, oai: openai.AsyncOpenAI
    ) -> None:
        """GET /stats serves stats() as JSON and is itself not counted; reset zeroes it."""
        await oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.url + "/stats") as resp,
        ):
            body = await resp.json()
        assert body["requests"] == 1
        assert body["in_flight"] == 0
        assert body["by_status"] == {"200": 1}
        server.reset_stats()
        assert server.stats().requests == 0
        assert server.stats().by_path == {}

    def test_last_requests_rejects_negative(self) -> None:
        """A negative count is a ValueError naming it."""
        with pytest.raises(ValueError, match=r"^last_requests: n must be >= 0, got -1$"):
            LMServer().last_requests(-1)


class TestLifecycle:
    def test_url_before_start_is_an_error(self) -> None:
        """There is no URL until the server is started."""
        with pytest.raises(RuntimeError, match=r"^LMServer.url: the server is not started$"):
            _ = LMServer().url

    async def test_start_twice_and_stop_twice(self) -> None:
        """start() runs once; stop() is idempotent and a stopped server cannot restart."""
        lm = LMServer()
        await lm.start()
        with pytest.raises(RuntimeError, match=r"^LMServer.start: the server is running$"):
            await lm.start()
        assert lm.port > 0
        await lm.stop()
        await lm.stop()
        with pytest.raises(RuntimeError, match=r"^LMServer.start: the server is stopped$"):
            await lm.start()

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"latency": -1}, r"^LMServer.latency must be a number >= 0, got -1$"),
            ({"jitter": -0.5}, r"^LMServer.jitter must be a number >= 0, got -0.5$"),
            ({"port": 70000}, r"^LMServer.port must be in 0..65535, got 70000$"),
            ({"models": []}, r"^LMServer.models must be non-empty strings, got \[\]$"),
        ],
    )
    def test_bad_settings_are_value_errors(self, kwargs: dict[str, Any], message: str) -> None:
        """Out-of-range settings fail at construction, naming the field."""
        with pytest.raises(ValueError, match=message):
            LMServer(**kwargs)

    def test_latency_settable_and_checked_at_run_time(self) -> None:
        """latency and jitter can change on a live server, still validated."""
        lm = LMServer()
        lm.latency, lm.jitter = 0.25, 0.1
        assert (lm.latency, lm.jitter) == (0.25, 0.1)
        with pytest.raises(ValueError, match=r"^LMServer.latency must be a number >= 0"):
            lm.latency = float("nan")

    def test_repr_shows_state(self) -> None:
        """repr names the state and the live counters."""
        assert repr(LMServer()).startswith("<LMServer new not started in_flight=0 requests=0")


class TestLatency:
    async def test_latency_and_jitter_go_through_the_clock(self) -> None:
        """Each chat response sleeps latency plus a jitter in [0, jitter) on the given clock."""
        clock = _RecordingClock()
        async with LMServer(latency=0.05, jitter=0.01, clock=clock) as lm:
            client = openai.AsyncOpenAI(base_url=lm.url + "/v1", api_key="k", max_retries=0)
            for _ in range(3):
                await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
            await client.close()
        assert len(clock.sleeps) == 3
        assert all(0.05 <= s < 0.06 for s in clock.sleeps)

    async def test_chunk_delay_paces_stream_events(self) -> None:
        """With chunk_delay, the clock sleeps once between consecutive SSE events."""
        clock = _RecordingClock()
        async with LMServer(chunk_delay=0.01, clock=clock) as lm:
            client = openai.AsyncOpenAI(base_url=lm.url + "/v1", api_key="k", max_retries=0)
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=USER, stream=True
            )
            chunks = [c async for c in stream]
            await client.close()
        # The SDK does not yield the final `[DONE]` event, which is paced too.
        assert clock.sleeps == [0.01] * len(chunks)


class _RecordingClock:
    """A Clock whose sleeps return at once and are recorded."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)


class TestConcurrency:
    async def test_two_thousand_concurrent_requests(self) -> None:
        """2,000 requests at once, each held 50 ms, all succeed and run concurrently."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < 8192:
            # Both ends of 2,000 sockets live in this process.
            target = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        async with LMServer(latency=0.05) as lm:
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def one(i: int) -> int:
                    body = {
                        "model": "gpt-4o-mini",
                        "messages": [{"role": "user", "content": f"q{i}"}],
                    }
                    async with session.post(lm.url + "/v1/chat/completions", json=body) as resp:
                        await resp.json()
                        return resp.status

                statuses = await asyncio.gather(*(one(i) for i in range(2000)))
            stats = lm.stats()
        assert statuses == [200] * 2000
        assert stats.requests == 2000
        assert stats.peak_in_flight >= 1000


class TestSubprocess:
    async def test_module_runs_prints_url_and_answers(self) -> None:
        """`python -m lmvisor.testing.lm_server` prints its URL first, answers, stops on SIGTERM."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lmvisor.testing.lm_server",
            "--port",
            "0",
            "--latency",
            "0",
            "--fault",
            '{"kind": "status", "status": 429, "times": 1}',
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            url = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
            assert url.startswith("http://127.0.0.1:")
            client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
            with pytest.raises(openai.RateLimitError):
                await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
            result = await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
            assert result.choices[0].message.content
            await client.close()
        finally:
            proc.terminate()
            code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 0

    def test_bad_fault_flag_exits_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A --fault that is not a valid FaultRule exits with status 2 and says why."""
        assert main(["--fault", '{"kind": "explode"}']) == 2
        assert capsys.readouterr().err.startswith("lm_server: FaultRule.kind must be one of")
