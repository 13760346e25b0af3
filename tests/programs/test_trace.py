"""trace(): records each predictor call made inside the block."""

from __future__ import annotations

from lmvisor.programs.chain_of_thought import ChainOfThought
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.programs.trace import trace
from lmvisor.testing.scripted_lm import ScriptedLM


class TestTrace:
    async def test_records_calls(self) -> None:
        """Each Predict call inside the block is recorded with its inputs and prediction."""
        cot = ChainOfThought("question -> answer")
        lm = ScriptedLM(["[[ ## reasoning ## ]]\nr\n\n[[ ## answer ## ]]\n4"])
        with context(lm=lm), trace() as entries:
            pred = await cot(question="2+2?")
        assert len(entries) == 1
        assert entries[0].predictor is cot.predict
        assert entries[0].inputs == {"question": "2+2?"}
        assert entries[0].prediction.answer == pred.answer == "4"

    async def test_inactive_and_nested(self) -> None:
        """Outside a block nothing is recorded; a nested block records into its own list."""
        predict = Predict("question -> answer")
        with context(lm=ScriptedLM()):
            await predict(question="untraced")
            with trace() as outer:
                await predict(question="outer")
                with trace() as inner:
                    await predict(question="inner")
        assert [e.inputs["question"] for e in outer] == ["outer"]
        assert [e.inputs["question"] for e in inner] == ["inner"]
