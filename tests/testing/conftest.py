"""Fixtures for the LMServer tests: a loopback server and the official SDK clients on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import openai
import pytest

from lmvisor.testing.lm_server import LMServer


@pytest.fixture
async def server() -> AsyncIterator[LMServer]:
    async with LMServer() as lm:
        yield lm


@pytest.fixture
async def oai(server: LMServer) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="sk-test", max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def claude(server: LMServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=server.url, api_key="test", max_retries=0)
    yield client
    await client.close()
