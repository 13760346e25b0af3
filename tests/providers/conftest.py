"""Fixtures for the provider tests: a loopback LMServer and one provider per vendor."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lmvisor.programs.lm import LMDelta, LMDone, LMResponse, LMStreamItem
from lmvisor.providers.anthropic import AnthropicClient
from lmvisor.providers.client import ClientOptions
from lmvisor.providers.openai import OpenAIClient
from lmvisor.providers.openai_compatible import OpenAICompatibleClient
from lmvisor.testing.lm_server import LMServer

KEY = "sk-test-SECRET-7f3a9c1e5b"
MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PERSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "person",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": False,
        },
    },
}


async def collect_stream(
    items: AsyncIterator[LMStreamItem],
) -> tuple[list[LMDelta], LMResponse]:
    """The deltas of a provider stream, and the response of its one `LMDone`."""
    deltas: list[LMDelta] = []
    done: list[LMDone] = []
    async for item in items:
        if isinstance(item, LMDone):
            done.append(item)
        else:
            deltas.append(item)
    assert len(done) == 1
    return deltas, done[0].response


@pytest.fixture
async def server() -> AsyncIterator[LMServer]:
    async with LMServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture
async def open_server() -> AsyncIterator[LMServer]:
    """A server that checks no key (as Ollama or llama.cpp do)."""
    async with LMServer() as srv:
        yield srv


@pytest.fixture
async def oai(server: LMServer) -> AsyncIterator[OpenAIClient]:
    provider = OpenAIClient(ClientOptions(api_key=KEY, base_url=server.url + "/v1", timeout=5.0))
    yield provider
    await provider.aclose()


@pytest.fixture
async def claude(server: LMServer) -> AsyncIterator[AnthropicClient]:
    provider = AnthropicClient(ClientOptions(api_key=KEY, base_url=server.url, timeout=5.0))
    yield provider
    await provider.aclose()


@pytest.fixture
async def local(open_server: LMServer) -> AsyncIterator[OpenAICompatibleClient]:
    provider = OpenAICompatibleClient(
        ClientOptions(base_url=open_server.url + "/v1", name="local", timeout=5.0)
    )
    yield provider
    await provider.aclose()
