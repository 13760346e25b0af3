"""Tests for lmvisor.providers.openai_compatible: Ollama / vLLM / llama.cpp differences."""

from __future__ import annotations

from typing import Any

import pytest

from lmvisor.programs.lm import LMRequest
from lmvisor.providers.client import ClientOptions
from lmvisor.providers.errors import ModelNotFound, NotFoundError
from lmvisor.providers.openai_compatible import OpenAICompatibleClient
from lmvisor.providers.pricing import ModelPrice
from lmvisor.testing.lm_server import LMServer
from tests.providers.conftest import MESSAGES, WEATHER_TOOL, collect_stream


def _request(model: str = "local/llama3", **params: Any) -> LMRequest:
    return LMRequest(model=model, messages=MESSAGES, params=params)


class TestRequestMapping:
    async def test_max_tokens_kept(
        self, local: OpenAICompatibleClient, open_server: LMServer
    ) -> None:
        """max_tokens is sent as max_tokens, and max_completion_tokens is renamed to it."""
        await local.complete(_request(max_tokens=40))
        assert open_server.last_requests(1)[0]["max_tokens"] == 40
        await local.complete(_request(max_completion_tokens=30))
        sent = open_server.last_requests(1)[0]
        assert sent["max_tokens"] == 30 and "max_completion_tokens" not in sent

    async def test_name_prefix_stripped_other_slashes_kept(
        self, local: OpenAICompatibleClient, open_server: LMServer
    ) -> None:
        """The "local/" prefix is stripped; an org/model name goes out unchanged."""
        await local.complete(_request())
        assert open_server.last_requests(1)[0]["model"] == "llama3"
        with pytest.raises(ModelNotFound):
            await local.complete(_request(model="meta-llama/Llama-3.1-8B"))
        assert open_server.last_requests(1)[0]["model"] == "meta-llama/Llama-3.1-8B"

    async def test_no_key_no_authorization(
        self, local: OpenAICompatibleClient, open_server: LMServer
    ) -> None:
        """Without an api_key the request still succeeds on a server that checks none."""
        resp = await local.complete(_request())
        assert resp.outputs[0]
        assert resp.cost is None

    async def test_own_prices(self, open_server: LMServer) -> None:
        """A local model gets a cost when the provider is given its price."""
        provider = OpenAICompatibleClient(
            ClientOptions(
                base_url=open_server.url + "/v1",
                prices={"llama3": ModelPrice(input=1e-6, output=2e-6, context_window=8192)},
            )
        )
        try:
            resp = await provider.complete(_request(model="llama3"))
        finally:
            await provider.aclose()
        expected = resp.usage.prompt_tokens * 1e-6 + resp.usage.completion_tokens * 2e-6
        assert resp.cost == pytest.approx(expected)

    async def test_tools(self, local: OpenAICompatibleClient) -> None:
        """Tool calls work as with OpenAI."""
        resp = await local.complete(_request(tools=[WEATHER_TOOL], tool_choice="required"))
        assert resp.tool_calls[0].name == "get_weather"


class TestStream:
    async def test_no_usage_unless_asked(
        self, local: OpenAICompatibleClient, open_server: LMServer
    ) -> None:
        """By default no stream_options are sent and the final usage is zero."""
        deltas, resp = await collect_stream(local.stream(_request()))
        assert deltas and resp.outputs[0] == "".join(d.text for d in deltas)
        assert "stream_options" not in open_server.last_requests(1)[0]
        assert resp.usage.total_tokens == 0

    async def test_usage_when_asked_by_option(self, open_server: LMServer) -> None:
        """stream_usage=True asks for the usage chunk."""
        provider = OpenAICompatibleClient(
            ClientOptions(base_url=open_server.url + "/v1", stream_usage=True)
        )
        try:
            _, resp = await collect_stream(provider.stream(_request(model="llama3")))
        finally:
            await provider.aclose()
        assert open_server.last_requests(1)[0]["stream_options"] == {"include_usage": True}
        assert resp.usage.total_tokens > 0

    async def test_usage_when_asked_by_request(
        self, local: OpenAICompatibleClient, open_server: LMServer
    ) -> None:
        """stream_options in the request's params are sent as given."""
        _, resp = await collect_stream(
            local.stream(_request(stream_options={"include_usage": True}))
        )
        assert resp.usage.completion_tokens > 0


class TestErrors:
    async def test_unknown_model_is_clear(self, local: OpenAICompatibleClient) -> None:
        """An unknown model's 404 is ModelNotFound naming the provider and the model."""
        with pytest.raises(
            ModelNotFound,
            match=r"^local: model not found \(HTTP 404\) for model 'mistery-7b': ",
        ) as info:
            await local.complete(_request(model="local/mistery-7b"))
        assert isinstance(info.value, NotFoundError)
        assert info.value.retryable is False
        assert info.value.model == "mistery-7b"

    async def test_unknown_model_while_streaming(self, local: OpenAICompatibleClient) -> None:
        """The same 404 surfaces from stream()."""
        with pytest.raises(ModelNotFound):
            await collect_stream(local.stream(_request(model="mistery-7b")))

    def test_capabilities_and_defaults(self) -> None:
        """Defaults: Ollama's URL, no key, full capabilities unless overridden."""
        provider = OpenAICompatibleClient(ClientOptions())
        assert "127.0.0.1:11434/v1" in repr(provider)
        assert provider.name == "openai_compatible"
        assert provider.capabilities.tools is True
