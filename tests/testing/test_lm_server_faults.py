"""LMServer fault injection, seen through the official SDKs' own error classes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from lmvisor.testing._lm_faults import FaultBook, fault_rule_from_dict
from lmvisor.testing.lm_server import FaultRule, LMServer

USER: Any = [{"role": "user", "content": "Say something."}]
GPT = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"


@pytest.fixture
async def server() -> AsyncIterator[LMServer]:
    """Overrides the conftest server: a fixed seed for reproducible fault draws."""
    async with LMServer(seed=7) as lm:
        yield lm


async def _openai_call(
    client: openai.AsyncOpenAI, *, stream: bool = False, model: str = GPT
) -> str:
    if not stream:
        result = await client.chat.completions.create(model=model, messages=USER)
        return result.choices[0].message.content or ""
    chunks = await client.chat.completions.create(model=model, messages=USER, stream=True)
    return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


async def _claude_call(client: anthropic.AsyncAnthropic, *, stream: bool = False) -> str:
    if not stream:
        result = await client.messages.create(model=CLAUDE, max_tokens=100, messages=USER)
        block = result.content[0]
        return block.text if block.type == "text" else ""
    events = await client.messages.create(model=CLAUDE, max_tokens=100, messages=USER, stream=True)
    return "".join(
        [
            e.delta.text
            async for e in events
            if e.type == "content_block_delta" and e.delta.type == "text_delta"
        ]
    )


class TestStatusFaults:
    @pytest.mark.parametrize(
        ("status", "error"),
        [
            (400, openai.BadRequestError),
            (401, openai.AuthenticationError),
            (404, openai.NotFoundError),
            (429, openai.RateLimitError),
            (500, openai.InternalServerError),
            (503, openai.InternalServerError),
            (529, openai.InternalServerError),
        ],
    )
    async def test_openai_status_maps_to_sdk_class(
        self, server: LMServer, oai: openai.AsyncOpenAI, status: int, error: type[Exception]
    ) -> None:
        """Each injected status surfaces as the OpenAI SDK's class, body in OpenAI's shape."""
        server.add_fault(FaultRule(kind="status", status=status))
        with pytest.raises(error) as info:
            await _openai_call(oai)
        assert isinstance(info.value, openai.APIStatusError)
        assert info.value.status_code == status
        assert isinstance(info.value.body, dict)
        assert set(info.value.body) == {"message", "type", "param", "code"}

    @pytest.mark.parametrize(
        ("status", "error", "kind"),
        [
            (400, anthropic.BadRequestError, "invalid_request_error"),
            (401, anthropic.AuthenticationError, "authentication_error"),
            (429, anthropic.RateLimitError, "rate_limit_error"),
            (500, anthropic.InternalServerError, "api_error"),
            (529, anthropic.OverloadedError, "overloaded_error"),
        ],
    )
    async def test_anthropic_status_maps_to_sdk_class(
        self,
        server: LMServer,
        claude: anthropic.AsyncAnthropic,
        status: int,
        error: type[Exception],
        kind: str,
    ) -> None:
        """Each injected status surfaces as the Anthropic SDK's class, with its error type."""
        server.add_fault(FaultRule(kind="status", status=status))
        with pytest.raises(error) as info:
            await _claude_call(claude)
        assert isinstance(info.value, anthropic.APIStatusError)
        assert info.value.status_code == status
        assert isinstance(info.value.body, dict)
        assert info.value.body["type"] == "error"
        assert info.value.body["error"]["type"] == kind

    @pytest.mark.parametrize(
        ("seconds", "millis", "header", "header_ms"),
        [(2, 1500, "2", "1500"), (0.25, 2500000.5, "0.25", "2500000.5")],
    )
    async def test_retry_after_headers(
        self,
        server: LMServer,
        oai: openai.AsyncOpenAI,
        seconds: float,
        millis: float,
        header: str,
        header_ms: str,
    ) -> None:
        """retry_after and retry_after_ms become Retry-After and retry-after-ms, no exponents."""
        rule = FaultRule(kind="status", status=429, retry_after=seconds, retry_after_ms=millis)
        server.add_fault(rule)
        with pytest.raises(openai.RateLimitError) as info:
            await _openai_call(oai)
        assert info.value.response.headers["retry-after"] == header
        assert info.value.response.headers["retry-after-ms"] == header_ms

    async def test_anthropic_status_on_stream(
        self, server: LMServer, claude: anthropic.AsyncAnthropic
    ) -> None:
        """A status fault on a streamed request fails before any event, as an HTTP error."""
        server.add_fault(FaultRule(kind="status", status=529, api="anthropic"))
        with pytest.raises(anthropic.OverloadedError):
            await _claude_call(claude, stream=True)

    async def test_message_and_code_override(
        self, server: LMServer, oai: openai.AsyncOpenAI
    ) -> None:
        """A quota rule carries OpenAI's insufficient_quota type and code and its message."""
        server.add_fault(
            FaultRule(
                kind="status",
                status=429,
                message="You exceeded your current quota",
                code="insufficient_quota",
            )
        )
        with pytest.raises(openai.RateLimitError) as info:
            await _openai_call(oai)
        assert info.value.code == "insufficient_quota"
        assert info.value.type == "insufficient_quota"
        assert info.value.message.endswith("You exceeded your current quota")


class TestConnectionFaults:
    @pytest.mark.parametrize("stream", [False, True])
    async def test_drop_is_a_connection_error(
        self,
        server: LMServer,
        oai: openai.AsyncOpenAI,
        claude: anthropic.AsyncAnthropic,
        stream: bool,
    ) -> None:
        """A dropped connection is each SDK's APIConnectionError, stream or not."""
        server.add_fault(FaultRule(kind="drop"))
        with pytest.raises(openai.APIConnectionError):
            await _openai_call(oai, stream=stream)
        with pytest.raises(anthropic.APIConnectionError):
            await _claude_call(claude, stream=stream)
        assert server.stats().by_status == {0: 2}

    @pytest.mark.parametrize("stream", [False, True])
    async def test_openai_disconnect_mid_stream(
        self, server: LMServer, oai: openai.AsyncOpenAI, stream: bool
    ) -> None:
        """A response cut midway (stream or body) is OpenAI's APIConnectionError."""
        server.add_fault(FaultRule(kind="disconnect_mid_stream"))
        with pytest.raises(openai.APIConnectionError):
            await _openai_call(oai, stream=stream)

    async def test_anthropic_disconnect_mid_stream_ends_without_message_stop(
        self, server: LMServer
    ) -> None:
        """The Messages stream is cut after its first events: no message_stop, a payload error."""
        server.add_fault(FaultRule(kind="disconnect_mid_stream", api="anthropic"))
        body = {"model": CLAUDE, "max_tokens": 100, "messages": USER, "stream": True}
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
        received = b""
        async with (
            aiohttp.ClientSession() as session,
            session.post(server.url + "/v1/messages", json=body, headers=headers) as resp,
        ):
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                async for chunk in resp.content.iter_any():
                    received += chunk
        assert b"event: message_start" in received
        assert b"message_stop" not in received

    async def test_error_event_mid_stream(
        self, server: LMServer, oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
    ) -> None:
        """A mid-stream error is OpenAI's APIError and Anthropic's overloaded_error event."""
        server.add_fault(FaultRule(kind="error_event"))
        with pytest.raises(openai.APIError) as info:
            await _openai_call(oai, stream=True)
        assert not isinstance(info.value, openai.APIStatusError)
        with pytest.raises(anthropic.APIStatusError) as event:
            await _claude_call(claude, stream=True)
        assert isinstance(event.value.body, dict)
        assert event.value.body["error"]["type"] == "overloaded_error"

    async def test_error_event_leaves_plain_requests_alone(
        self, server: LMServer, oai: openai.AsyncOpenAI
    ) -> None:
        """error_event targets streams only: a plain request neither fails nor spends the rule."""
        server.add_fault(FaultRule(kind="error_event", times=1))
        assert await _openai_call(oai)
        assert server.stats().faults_injected == 0
        assert len(server.faults) == 1

    @pytest.mark.parametrize("stream", [False, True])
    async def test_malformed_json_makes_the_sdks_raise(
        self,
        server: LMServer,
        oai: openai.AsyncOpenAI,
        claude: anthropic.AsyncAnthropic,
        stream: bool,
    ) -> None:
        """A truncated JSON body or SSE data line makes both SDKs raise a JSON decode error."""
        server.add_fault(FaultRule(kind="malformed_json"))
        with pytest.raises(json.JSONDecodeError):
            await _openai_call(oai, stream=stream)
        with pytest.raises(json.JSONDecodeError):
            await _claude_call(claude, stream=stream)

    async def test_slow_first_byte_adds_its_delay(self) -> None:
        """slow_first_byte waits latency plus the rule's delay, through the server's clock."""
        clock = _RecordingClock()
        rule = FaultRule(kind="slow_first_byte", delay=3.0, times=1)
        async with LMServer(latency=0.5, faults=[rule], clock=clock) as lm:
            client = openai.AsyncOpenAI(base_url=lm.url + "/v1", api_key="k", max_retries=0)
            assert await _openai_call(client)
            assert await _openai_call(client)
            await client.close()
        assert clock.sleeps == [3.5, 0.5]


class TestHugeBodies:
    @pytest.mark.parametrize(
        ("kind", "stream", "status", "length"),
        [
            ("huge_body", False, 200, "1073741824"),
            ("endless_body", False, 200, None),
            ("endless_body", True, 503, None),
        ],
    )
    async def test_a_body_without_end(
        self, server: LMServer, kind: str, stream: bool, status: int, length: str | None
    ) -> None:
        """`huge_body` announces 1 GiB, `endless_body` states no length; both write JSON
        that never ends (a stream request gets the rule's status), until the client leaves."""
        server.add_fault(FaultRule(kind=kind, status=503, times=1))  # type: ignore[arg-type]
        payload = {"model": GPT, "messages": USER, "stream": stream}
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                server.url + "/v1/chat/completions",
                json=payload,
                headers={"Authorization": "Bearer sk-test"},
            ) as resp,
        ):
            assert resp.status == status
            assert resp.headers.get("Content-Length") == length
            head = await resp.content.readexactly(4 * 1024 * 1024)
            assert head.startswith(b'{"choices": [{"message": {"content": "xxx')
            resp.close()
        assert server.stats().faults_by_kind == {kind: 1}


class _RecordingClock:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class TestRuleSelection:
    async def test_times_spends_the_rule(self, server: LMServer, oai: openai.AsyncOpenAI) -> None:
        """A rule with times=2 fails two requests, then the server answers normally."""
        server.add_fault(FaultRule(kind="status", status=503, times=2))
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                await _openai_call(oai)
        assert await _openai_call(oai)
        assert server.stats().faults_injected == 2
        assert server.stats().faults_by_kind == {"status": 2}
        assert server.faults == []

    async def test_api_and_model_filters(
        self, server: LMServer, oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
    ) -> None:
        """A rule for one API and model leaves the other API and other models alone."""
        server.add_fault(FaultRule(kind="status", status=429, api="openai", model="gpt-4o"))
        assert await _openai_call(oai)
        assert await _claude_call(claude)
        with pytest.raises(openai.RateLimitError):
            await _openai_call(oai, model="gpt-4o")

    async def test_clear_faults(self, server: LMServer, oai: openai.AsyncOpenAI) -> None:
        """After clear_faults() no rule applies."""
        server.add_fault(FaultRule(kind="status", status=500))
        server.clear_faults()
        assert await _openai_call(oai)

    def test_probability_is_seeded(self) -> None:
        """Equal seeds draw the same faults; probability 0.3 hits some requests, not all."""
        rule = FaultRule(kind="drop", probability=0.3)

        def draws(seed: int) -> list[bool]:
            book = FaultBook([rule], seed=seed)
            return [
                book.pick(api="openai", model=GPT, stream=False) is not None for _ in range(200)
            ]

        first = draws(1)
        assert first == draws(1)
        assert first != draws(2)
        assert 30 <= sum(first) <= 90

    def test_first_matching_rule_wins(self) -> None:
        """Rules are tried in order; a spent rule lets the next one through."""
        once = FaultRule(kind="status", status=429, times=1)
        always = FaultRule(kind="status", status=500)
        book = FaultBook([once, always], seed=0)
        picks = [book.pick(api="anthropic", model=CLAUDE, stream=True) for _ in range(3)]
        assert picks == [once, always, always]

    async def test_control_api_adds_and_clears(
        self, server: LMServer, oai: openai.AsyncOpenAI
    ) -> None:
        """POST /_control/faults adds rules over HTTP; DELETE clears; bad rules are 400."""
        async with aiohttp.ClientSession() as session:
            url = server.url + "/_control/faults"
            async with session.post(url, json=[{"kind": "status", "status": 429}]) as resp:
                assert resp.status == 200
            with pytest.raises(openai.RateLimitError):
                await _openai_call(oai)
            async with session.delete(url) as resp:
                assert resp.status == 200
            assert await _openai_call(oai)
            async with session.post(url, json={"kind": "boom"}) as resp:
                assert resp.status == 400
            async with session.post(
                server.url + "/_control/settings", json={"latency": 0.01}
            ) as resp:
                assert (await resp.json())["latency"] == 0.01
        assert server.latency == 0.01


class TestFaultRuleValidation:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"kind": "explode"}, r"^FaultRule.kind must be one of \["),
            ({"kind": "status", "status": 200}, r"^FaultRule.status must be in 400..599, got 200$"),
            (
                {"kind": "drop", "probability": 1.5},
                r"^FaultRule.probability must be a number in \[0, 1\], got 1.5$",
            ),
            (
                {"kind": "drop", "probability": True},
                r"^FaultRule.probability must be a number in \[0, 1\], got True$",
            ),
            (
                {"kind": "drop", "times": -1},
                r"^FaultRule.times must be None or an int >= 0, got -1$",
            ),
            (
                {"kind": "drop", "times": "3"},
                r"^FaultRule.times must be None or an int >= 0, got '3'$",
            ),
            (
                {"kind": "drop", "times": float("nan")},
                r"^FaultRule.times must be None or an int >= 0, got nan$",
            ),
            (
                {"kind": "drop", "retry_after": -2},
                r"^FaultRule.retry_after must be a number in \[0, 3600\], got -2$",
            ),
            (
                {"kind": "drop", "retry_after": "5"},
                r"^FaultRule.retry_after must be a number in \[0, 3600\], got '5'$",
            ),
            (
                {"kind": "drop", "retry_after_ms": 1e308},
                r"^FaultRule.retry_after_ms must be a number in \[0, 3.6e\+06\], got 1e\+308$",
            ),
            (
                {"kind": "slow_first_byte", "delay": -1},
                r"^FaultRule.delay must be a number in \[0, 3600\], got -1$",
            ),
            (
                {"kind": "slow_first_byte", "delay": 1e308},
                r"^FaultRule.delay must be a number in \[0, 3600\], got 1e\+308$",
            ),
            (
                {"kind": "slow_first_byte", "delay": "1"},
                r"^FaultRule.delay must be a number in \[0, 3600\], got '1'$",
            ),
            ({"kind": "drop", "model": 5}, r"^FaultRule.model must be None or a string, got 5$"),
            (
                {"kind": "status", "message": ["x"]},
                r"^FaultRule.message must be None or a string, got \['x'\]$",
            ),
            ({"kind": "drop", "api": "gemini"}, r"^FaultRule.api must be one of \["),
        ],
    )
    def test_bad_fields_name_themselves(self, kwargs: dict[str, Any], message: str) -> None:
        """Each out-of-range or wrongly typed field fails at construction with a ValueError
        naming it (a string where a number belongs raised a bare TypeError; a delay of
        1e308 held each request until its client gave up)."""
        with pytest.raises(ValueError, match=message):
            FaultRule(**kwargs)

    @pytest.mark.parametrize(("data", "kind"), [(["drop"], "list"), ("drop", "str"), (3, "int")])
    def test_from_dict_needs_an_object(self, data: Any, kind: str) -> None:
        """The JSON form of a rule must be an object (a string was read as its letters)."""
        with pytest.raises(ValueError, match=rf"^FaultRule: expected a JSON object, got {kind}$"):
            fault_rule_from_dict(data)

    def test_from_dict_rejects_unknown_keys(self) -> None:
        """The JSON form refuses keys FaultRule does not have."""
        with pytest.raises(ValueError, match=r"^FaultRule: unknown field\(s\) \['colour'\]$"):
            fault_rule_from_dict({"kind": "drop", "colour": "red"})

    def test_add_fault_needs_a_rule(self) -> None:
        """add_fault with anything but a FaultRule is a TypeError."""
        with pytest.raises(TypeError, match=r"^add_fault: rule must be a FaultRule, got dict$"):
            LMServer().add_fault({"kind": "drop"})  # type: ignore[arg-type]
