"""The loopback server's embeddings, content-part validation and reasoning, read through
the official SDKs' own types.
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from lmvisor.testing._lm_parts import embed


class TestEmbeddings:
    async def test_sdk_reads_the_answer(self, oai: openai.AsyncOpenAI) -> None:
        """The OpenAI SDK parses the answer: one vector per input, in order, deterministic."""
        first = await oai.embeddings.create(model="text-embedding-3-small", input=["a", "b c"])
        again = await oai.embeddings.create(model="text-embedding-3-small", input=["a", "b c"])
        assert [d.index for d in first.data] == [0, 1]
        assert first.data[1].embedding == again.data[1].embedding
        assert first.data[1].embedding == pytest.approx(embed("b c", 64), abs=1e-6)
        assert first.usage.total_tokens > 0

    async def test_bad_input(self, oai: openai.AsyncOpenAI) -> None:
        """A non-string input is OpenAI's 400 naming `input`."""
        with pytest.raises(openai.BadRequestError, match=r"input: must be a string"):
            await oai.embeddings.create(model="text-embedding-3-small", input=[[1, 2]])  # type: ignore[list-item]

    def test_similar_texts_are_near(self) -> None:
        """Texts sharing words score higher than unrelated ones."""
        dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
        base = embed("the capital of france", 64)
        assert dot(base, embed("france capital", 64)) > dot(base, embed("purring cats", 64))


class TestParts:
    async def test_unknown_part_refused(self, oai: openai.AsyncOpenAI) -> None:
        """An unknown content part type is a 400 naming where it is."""
        with pytest.raises(openai.BadRequestError, match=r"messages\[0\]\.content\[0\]\.type"):
            await oai.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": [{"type": "video", "video": {}}]}],  # type: ignore[list-item]
            )

    async def test_anthropic_bad_image(self, claude: anthropic.AsyncAnthropic) -> None:
        """An image of a type Anthropic refuses is its 400."""
        image = {"type": "base64", "media_type": "image/bmp", "data": "Qk0="}
        with pytest.raises(anthropic.BadRequestError, match=r"media_type"):
            await claude.messages.create(
                model="claude-haiku-4-5",
                max_tokens=100,
                messages=[{"role": "user", "content": [{"type": "image", "source": image}]}],  # type: ignore[list-item, typeddict-item]
            )


class TestReasoning:
    async def test_openai_reasoning_content(self, oai: openai.AsyncOpenAI) -> None:
        """reasoning_effort adds reasoning_content beside the answer."""
        done = await oai.chat.completions.create(
            model="o3-mini",
            messages=[{"role": "user", "content": "2+2?"}],
            reasoning_effort="low",
        )
        extra = done.choices[0].message.model_extra or {}
        assert str(extra["reasoning_content"]).startswith("Reasoning ")

    async def test_anthropic_thinking_blocks(self, claude: anthropic.AsyncAnthropic) -> None:
        """`thinking` adds a signed thinking block before the text, whole and streamed."""
        kwargs = {
            "model": "claude-haiku-4-5",
            "max_tokens": 3000,
            "messages": [{"role": "user", "content": "2+2?"}],
            "thinking": {"type": "enabled", "budget_tokens": 1024},
        }
        message = await claude.messages.create(**kwargs)  # type: ignore[call-overload]
        assert [b.type for b in message.content] == ["thinking", "text"]
        async with claude.messages.stream(**kwargs) as stream:  # type: ignore[arg-type]
            final = await stream.get_final_message()
        assert final.content[0].thinking == message.content[0].thinking  # type: ignore[union-attr]
        assert final.content[1].text == message.content[1].text  # type: ignore[union-attr]
