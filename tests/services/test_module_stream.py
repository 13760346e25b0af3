"""Tests for lmvisor.services.module_stream: an execution's LM text handed over as it arrives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from lmvisor.programs.lm import LMCapabilities, LMDelta, LMRequest, LMResponse
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.providers.errors import ProviderError
from lmvisor.services.app import App
from lmvisor.services.module_stream import StreamingLM
from lmvisor.testing.scripted_lm import ScriptedLM

_REQUEST = LMRequest(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


class _NoStreamLM:
    """An LM that cannot stream: every call is a complete."""

    def __init__(self) -> None:
        self.inner = ScriptedLM(["whole answer"])

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def capabilities(self) -> LMCapabilities:
        return LMCapabilities(streaming=False)

    async def complete(self, request: LMRequest) -> LMResponse:
        return await self.inner.complete(request)

    def stream(self, request: LMRequest) -> AsyncIterator[Any]:
        raise AssertionError("must not stream")


class _CutStreamLM(_NoStreamLM):
    """An LM whose stream ends without its final response."""

    @property
    def capabilities(self) -> LMCapabilities:
        return LMCapabilities()

    async def stream(self, request: LMRequest) -> AsyncIterator[Any]:  # type: ignore[override]
        yield LMDelta(text="half")


class TestStreamingLM:
    async def test_complete_streams_and_returns_the_same_response(self) -> None:
        """Each delta goes to the sink; the response equals an unstreamed one."""
        seen: list[Any] = []
        lm = StreamingLM(ScriptedLM(["streamed answer text"] * 2), seen.append)
        response = await lm.complete(_REQUEST)
        plain = await ScriptedLM(["streamed answer text"]).complete(_REQUEST)
        assert response.outputs == plain.outputs == ["streamed answer text"]
        assert seen and all(isinstance(item, LMDelta) for item in seen)
        assert "".join(item.text for item in seen) == "streamed answer text"

    async def test_an_lm_that_cannot_stream_is_completed(self) -> None:
        """Without streaming support the call is a plain complete and the sink gets nothing."""
        seen: list[Any] = []
        response = await StreamingLM(_NoStreamLM(), seen.append).complete(_REQUEST)
        assert response.outputs == ["whole answer"] and seen == []

    async def test_a_stream_without_its_end_is_a_provider_error(self) -> None:
        """A stream that stops before `LMDone` raises a typed error."""
        with pytest.raises(ProviderError, match="the stream ended without its final response"):
            await StreamingLM(_CutStreamLM(), lambda item: None).complete(_REQUEST)

    async def test_a_program_runs_unchanged_on_it(self) -> None:
        """A Predict on a StreamingLM parses the same prediction as on the plain LM."""
        seen: list[Any] = []
        with context(lm=StreamingLM(ScriptedLM(), seen.append)):
            streamed = await Predict("question -> answer")(question="why?")
        with context(lm=ScriptedLM()):
            plain = await Predict("question -> answer")(question="why?")
        assert streamed.answer == plain.answer and seen


class TestExecuteStream:
    async def test_execution_streams_through_the_module_manager(self, app: App) -> None:
        """`execute(stream=...)` hands the LM text over and still records the execution."""
        await app.register("qa", {"module": "ChainOfThought", "signature": "question -> answer"})
        seen: list[Any] = []
        execution = await app.run("qa", {"question": "streamed?"}, stream=seen.append)
        text = "".join(item.text for item in seen)
        assert "[[ ## answer ## ]]" in text and execution.prediction.answer in text
        assert execution.strategy == "primary" and execution.lm_calls == 1
        assert not execution.cached
