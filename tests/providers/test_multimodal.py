"""Images, documents and audio in each vendor's format; reasoning content whole and
streamed; OpenAI-compatible embeddings — all against the loopback LM server.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from lmvisor.programs.embeddings import KNN, Embedder
from lmvisor.programs.example import Example
from lmvisor.programs.lm import LMRequest
from lmvisor.providers.anthropic import AnthropicClient
from lmvisor.providers.client import ClientOptions
from lmvisor.providers.embeddings import OpenAIEmbeddings
from lmvisor.providers.errors import AuthenticationError, BadRequestError, UnsupportedMedia
from lmvisor.providers.openai import OpenAIClient
from lmvisor.providers.reasoning import anthropic_thinking, supports_reasoning
from lmvisor.testing.lm_server import LMServer
from tests.providers.conftest import KEY, collect_stream

PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQ"
    "ABpfZFQAAAAABJRU5ErkJggg=="
)
PDF = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4\n%%EOF").decode()
TEXT = "data:text/plain;base64," + base64.b64encode(b"plain notes").decode()
WAV = base64.b64encode(b"RIFF....WAVEfmt ").decode()


def parts(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": "Look:"}, *extra]}]


IMAGE = {"type": "image_url", "image_url": {"url": PNG}}
IMAGE_URL = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
AUDIO = {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}}
FILE = {"type": "file", "file": {"file_data": PDF, "filename": "a.pdf"}}


class TestOpenAIParts:
    @pytest.mark.parametrize(
        "part", [IMAGE, IMAGE_URL, AUDIO, FILE], ids=["png", "url", "wav", "pdf"]
    )
    async def test_parts_accepted(
        self, oai: OpenAIClient, server: LMServer, part: dict[str, Any]
    ) -> None:
        """Every part kind DSPy writes reaches the server unchanged and is answered."""
        response = await oai.complete(LMRequest(model="gpt-4o-mini", messages=parts(part)))
        assert response.outputs[0]
        assert server.last_requests(1)[0]["messages"][0]["content"][1] == part

    async def test_malformed_part_is_a_bad_request(self, oai: OpenAIClient) -> None:
        """The server refuses a part as OpenAI does, naming it."""
        bad = {"type": "input_audio", "input_audio": {"data": "not base64!", "format": "wav"}}
        with pytest.raises(
            BadRequestError, match=r"messages\[0\]\.content\[1\]\.input_audio\.data"
        ):
            await oai.complete(LMRequest(model="gpt-4o-mini", messages=parts(bad)))


class TestAnthropicParts:
    async def test_image_and_documents(self, claude: AnthropicClient, server: LMServer) -> None:
        """Images become image blocks; PDF and text files become document blocks."""
        text_file = {"type": "file", "file": {"file_data": TEXT, "filename": "n.txt"}}
        request = LMRequest(model="claude-haiku-4-5", messages=parts(IMAGE, FILE, text_file))
        await claude.complete(request)
        blocks = server.last_requests(1)[0]["messages"][0]["content"]
        assert blocks[1]["type"] == "image" and blocks[1]["source"]["media_type"] == "image/png"
        assert blocks[2] == {
            "type": "document",
            "source": {
                "type": "base64",
                "media_type": "application/pdf",
                "data": PDF.split(",")[1],
            },
            "title": "a.pdf",
        }
        assert blocks[3]["source"] == {
            "type": "text",
            "media_type": "text/plain",
            "data": "plain notes",
        }

    @pytest.mark.parametrize(
        ("part", "problem"),
        [
            (AUDIO, r"content parts of type 'input_audio' are not supported"),
            (
                {"type": "file", "file": {"file_id": "file-1"}},
                r"uploaded file ids are not supported",
            ),
            (
                {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}},
                r"image type 'image/bmp' is not supported",
            ),
        ],
    )
    async def test_unsupported_media(
        self, claude: AnthropicClient, server: LMServer, part: dict[str, Any], problem: str
    ) -> None:
        """What Anthropic cannot take is a typed error raised before anything is sent."""
        before = server.stats().requests
        with pytest.raises(UnsupportedMedia, match=problem) as info:
            await claude.complete(LMRequest(model="claude-haiku-4-5", messages=parts(part)))
        assert isinstance(info.value, BadRequestError) and not info.value.retryable
        assert server.stats().requests == before


class TestReasoning:
    def test_reasoning_models(self) -> None:
        """o-series, gpt-5, reasoning Claudes and R1 reason natively; gpt-4o does not."""
        assert supports_reasoning("openai/o3-mini") and supports_reasoning("gpt-5-mini")
        assert supports_reasoning("anthropic/claude-sonnet-4-5")
        assert not supports_reasoning("openai/gpt-4o-mini")

    def test_anthropic_budget(self) -> None:
        """Efforts map to thinking budgets below max_tokens; an unknown effort is refused."""
        assert anthropic_thinking("low", 4096) == {"type": "enabled", "budget_tokens": 2048}
        assert anthropic_thinking("high", 4096) == {"type": "enabled", "budget_tokens": 4095}
        assert anthropic_thinking(None, 4096) is None
        with pytest.raises(ValueError, match=r"reasoning_effort must be one of"):
            anthropic_thinking("extreme", 4096)

    async def test_openai_reasoning_content(self, oai: OpenAIClient) -> None:
        """With reasoning_effort the answer carries reasoning_content, whole and streamed."""
        request = LMRequest(model="o3-mini", messages=parts(), params={"reasoning_effort": "low"})
        whole = await oai.complete(request)
        assert whole.reasoning and whole.reasoning.startswith("Reasoning ")
        deltas, streamed = await collect_stream(oai.stream(request))
        assert "".join(d.text for d in deltas if d.reasoning) == whole.reasoning
        assert streamed.reasoning == whole.reasoning
        assert streamed.outputs == whole.outputs

    async def test_anthropic_thinking(self, claude: AnthropicClient, server: LMServer) -> None:
        """reasoning_effort becomes a thinking budget; thinking blocks fill `reasoning`."""
        request = LMRequest(
            model="claude-sonnet-4-5",
            messages=parts(),
            params={"reasoning_effort": "low", "max_tokens": 4000},
        )
        whole = await claude.complete(request)
        body = server.last_requests(1)[0]
        assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
        assert "reasoning_effort" not in body
        assert whole.reasoning and whole.reasoning.startswith("Reasoning ")
        deltas, streamed = await collect_stream(claude.stream(request))
        assert "".join(d.text for d in deltas if d.reasoning) == whole.reasoning
        assert streamed.outputs == whole.outputs


class TestEmbeddings:
    async def test_vectors(self, server: LMServer) -> None:
        """One request per batch; unit vectors in the texts' order; deterministic."""
        client = OpenAIEmbeddings(
            "openai/text-embedding-3-small", ClientOptions(api_key=KEY, base_url=server.url + "/v1")
        )
        try:
            first = await client.embed(["a cat", "a dog"], dimensions=16)
            again = await client.embed(["a cat", "a dog"], dimensions=16)
        finally:
            await client.aclose()
        assert first == again
        assert [len(v) for v in first] == [16, 16]
        assert abs(sum(x * x for x in first[0]) - 1.0) < 1e-5
        body = server.last_requests(1)[0]
        assert body == {
            "model": "text-embedding-3-small",
            "input": ["a cat", "a dog"],
            "encoding_format": "float",
            "dimensions": 16,
        }

    async def test_bad_key(self, server: LMServer) -> None:
        """A wrong key is an AuthenticationError, the key never in the message."""
        client = OpenAIEmbeddings(
            "text-embedding-3-small",
            ClientOptions(api_key="sk-wrong-key", base_url=server.url + "/v1"),
        )
        try:
            with pytest.raises(AuthenticationError) as info:
                await client.embed(["x"])
        finally:
            await client.aclose()
        assert "sk-wrong-key" not in str(info.value)

    async def test_knn_over_the_server(self, server: LMServer) -> None:
        """KNN retrieves by shared words through the real client."""
        client = OpenAIEmbeddings(
            "text-embedding-3-small", ClientOptions(api_key=KEY, base_url=server.url + "/v1")
        )
        train = [
            Example(question="how do cats purr", answer="a").with_inputs("question"),
            Example(question="capital city of France", answer="b").with_inputs("question"),
        ]
        try:
            found = await KNN(1, train, Embedder(client, batch_size=1))(question="France capital")
        finally:
            await client.aclose()
        assert [e.answer for e in found] == ["b"]


class TestControlParams:
    async def test_never_sent(
        self, oai: OpenAIClient, claude: AnthropicClient, server: LMServer
    ) -> None:
        """rollout_id and cache are lmvisor's; neither vendor body carries them."""
        params = {"rollout_id": 3, "cache": False, "temperature": 1.0}
        await oai.complete(LMRequest(model="gpt-4o-mini", messages=parts(), params=params))
        await claude.complete(LMRequest(model="claude-haiku-4-5", messages=parts(), params=params))
        for body in server.last_requests(2):
            assert "rollout_id" not in body and "cache" not in body
