"""Tests for lmvisor.services.module_stream: an execution's field chunks handed over as they
arrive, through the programs layer's streamify."""

from __future__ import annotations

import asyncio
from typing import Any

from lmvisor.programs.chain_of_thought import ChainOfThought
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.programs.streaming import StreamResponse
from lmvisor.services.app import App
from lmvisor.services.module_stream import stream_program
from lmvisor.testing.lm_server import LMServer
from lmvisor.testing.scripted_lm import ScriptedLM


def _fields(seen: list[Any]) -> dict[str, str]:
    text: dict[str, str] = {}
    for item in seen:
        assert isinstance(item, StreamResponse)
        text[item.signature_field_name] = text.get(item.signature_field_name, "") + item.chunk
    return text


class TestStreamProgram:
    async def test_every_output_field_streams_then_the_result(self) -> None:
        """Each output field arrives as chunks whose text is the field's value."""
        seen: list[Any] = []
        program = ChainOfThought("question -> answer")
        with context(lm=ScriptedLM()):
            result = await stream_program(program, {"question": "why?"}, seen.append)
        fields = _fields(seen)
        assert fields == {"reasoning": result.reasoning, "answer": result.answer}
        last = [item for item in seen if item.is_last_chunk]
        assert [item.signature_field_name for item in last] == ["reasoning", "answer"]
        assert {item.predict_name for item in seen} == {"predict"}

    async def test_the_result_equals_an_unstreamed_run(self) -> None:
        """Streaming changes nothing about the prediction."""
        with context(lm=ScriptedLM()):
            streamed = await stream_program(Predict("question -> answer"), {"question": "q"}, print)
            plain = await Predict("question -> answer")(question="q")
        assert streamed.answer == plain.answer

    async def test_cancelling_the_caller_stops_the_program(
        self, lm_server: LMServer, app: App
    ) -> None:
        """A cancelled stream closes the program's LM stream: nothing keeps running."""
        lm_server.chunk_delay = 0.5
        seen: list[Any] = []
        with context(lm=app.lm()):
            task = asyncio.ensure_future(
                stream_program(Predict("question -> answer"), {"question": "q"}, seen.append)
            )
            await asyncio.sleep(0.3)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
        assert not [t for t in asyncio.all_tasks() if "_drive" in repr(t.get_coro())]


class TestExecuteStream:
    async def test_execution_streams_through_the_module_manager(self, app: App) -> None:
        """`execute(stream=...)` hands the field chunks over and still records the execution."""
        await app.register("qa", {"module": "ChainOfThought", "signature": "question -> answer"})
        seen: list[Any] = []
        execution = await app.run("qa", {"question": "streamed?"}, stream=seen.append)
        assert _fields(seen)["answer"] == execution.prediction.answer
        assert execution.strategy == "primary" and execution.lm_calls == 1
        assert not execution.cached
