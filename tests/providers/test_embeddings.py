"""OpenAIEmbeddings: built from the chat clients' `ClientOptions`, honouring them as they do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lmvisor.providers import (
    EMBEDDINGS_MAX_RESPONSE_BYTES,
    ClientOptions,
    OpenAIClient,
    OpenAIEmbeddings,
    ProviderTimeout,
    TransportStatistics,
)
from lmvisor.testing.lm_server import LMServer
from tests.providers.conftest import KEY


@pytest.fixture
async def silent_url() -> AsyncIterator[str]:
    """A loopback server that takes every connection and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


class TestOptions:
    @pytest.mark.parametrize("kind", ["aiohttp", "httpx"])
    async def test_the_transport_is_built_as_the_options_ask(
        self, kind: str, server: LMServer
    ) -> None:
        """The transport library and pool limits of the options are the transport's, as a
        chat client's built from the same options; embeddings still arrive through it."""
        options = ClientOptions(
            api_key=KEY,
            base_url=server.url + "/v1",
            transport=kind,  # type: ignore[arg-type]
            max_connections=3,
            keepalive_timeout=7.5,
        )
        embeddings, chat = (
            OpenAIEmbeddings("text-embedding-3-small", options),
            OpenAIClient(options),
        )
        try:
            vectors = await embeddings.embed(["a cat"], dimensions=8)
            pool = chat.statistics()
            assert (pool.kind, pool.max_connections, pool.keepalive_timeout) == (kind, 3, 7.5)
            assert embeddings.statistics() == TransportStatistics(
                kind=kind, max_connections=3, keepalive_timeout=7.5, open=True, owns_client=True
            )
        finally:
            await embeddings.aclose()
            await chat.aclose()
        assert [len(v) for v in vectors] == [8]
        assert not embeddings.statistics().open

    async def test_the_options_timeout_bounds_an_answer(self, silent_url: str) -> None:
        """A server that never answers fails the call with ProviderTimeout after the
        options' timeout, naming it."""
        options = ClientOptions(base_url=silent_url, timeout=0.05, name="local")
        embeddings = OpenAIEmbeddings("local/bge-small", options)
        try:
            with pytest.raises(ProviderTimeout, match=r"no answer within 0\.05s") as info:
                await embeddings.embed(["x"])
        finally:
            await embeddings.aclose()
        assert (info.value.context["provider"], info.value.context["model"]) == (
            "local",
            "bge-small",
        )

    async def test_its_answer_bound(self) -> None:
        """256 MiB with the options' default (a completion's 64 MiB); a bound lowered in the
        options is kept (it was raised to 256 MiB without a word); an explicit one wins."""
        chosen = [
            OpenAIEmbeddings("m", options, **extra)
            for options, extra in (
                (ClientOptions(), {}),
                (ClientOptions(max_response_bytes=8 << 20), {}),
                (ClientOptions(max_response_bytes=8 << 20), {"max_response_bytes": 1 << 30}),
            )
        ]
        try:
            bounds = [embeddings._max_response_bytes for embeddings in chosen]
        finally:
            for embeddings in chosen:
                await embeddings.aclose()
        assert bounds == [EMBEDDINGS_MAX_RESPONSE_BYTES, 8 << 20, 1 << 30]

    def test_options_of_another_type_are_refused(self) -> None:
        """Options must be a ClientOptions, named in the TypeError."""
        with pytest.raises(TypeError, match=r"^options must be ClientOptions, got dict$"):
            OpenAIEmbeddings("m", {"api_key": KEY})  # type: ignore[arg-type]
