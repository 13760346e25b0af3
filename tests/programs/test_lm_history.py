"""CallHistory: bounded per LM; inspect_history prints the last calls readably."""

from __future__ import annotations

import io

import pytest

from lmvisor.programs.lm import LMRequest, LMResponse
from lmvisor.programs.lm_history import CallHistory, inspect_history
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.testing.scripted_lm import ScriptedLM


def _call(i: int) -> tuple[LMRequest, LMResponse]:
    request = LMRequest(model="m", messages=[{"role": "user", "content": f"q{i}"}])
    return request, LMResponse(outputs=[f"a{i}"])


class TestCallHistory:
    def test_bounded_per_model(self) -> None:
        """Each model keeps only its last max_per_lm calls."""
        history = CallHistory(max_per_lm=3)
        for i in range(5):
            history.record("a/x", *_call(i))
        history.record("b/y", *_call(99))
        assert [e.response.outputs[0] for e in history.last(10, model="a/x")] == ["a2", "a3", "a4"]
        assert [e.response.outputs[0] for e in history.last(1, model="b/y")] == ["a99"]
        assert history.last(0) == []

    def test_bounded_in_models(self) -> None:
        """Past max_models, a new model drops the calls of the model least recently used."""
        history = CallHistory(max_per_lm=2, max_models=3)
        for i in range(1000):
            history.record(f"v/m{i}", *_call(i))
        assert repr(history) == "CallHistory(models=['v/m997', 'v/m998', 'v/m999'], max_per_lm=2)"
        assert history.last(5, model="v/m0") == []
        assert [e.response.outputs[0] for e in history.last(5)] == ["a998", "a999"]
        with pytest.raises(ValueError, match=r"^max_models must be >= 1$"):
            CallHistory(max_models=0)

    def test_busy_model_survives_churn(self) -> None:
        """A model called between new names is never the one dropped; the idle one is."""
        history = CallHistory(max_per_lm=100, max_models=3)
        history.record("v/busy", *_call(0))
        history.record("v/idle", *_call(1))
        for i in range(2, 50):
            history.record(f"v/new{i}", *_call(i))
            history.record("v/busy", *_call(100 + i))
        models = "['v/busy', 'v/new48', 'v/new49']"
        assert repr(history) == f"CallHistory(models={models}, max_per_lm=100)"
        busy = [e.response.outputs[0] for e in history.last(100, model="v/busy")]
        assert busy == ["a0", *(f"a{100 + i}" for i in range(2, 50))]
        assert history.last(5, model="v/idle") == []

    def test_invalid_size(self) -> None:
        """max_per_lm must be positive."""
        with pytest.raises(ValueError, match=r"^max_per_lm must be >= 1$"):
            CallHistory(max_per_lm=0)

    async def test_inspect_history(self) -> None:
        """inspect_history prints the messages and the response of the last call."""
        history = CallHistory()
        with context(lm=ScriptedLM(["[[ ## answer ## ]]\n4"], model="t/m"), history=history):
            await Predict("question -> answer", temperature=0.5)(question="2+2?")
            out = io.StringIO()
            text = inspect_history(1, file=out)
        assert out.getvalue() == text + "\n"
        assert text.startswith("=== t/m ===\nparams: {'temperature': 0.5}\n--- system ---\n")
        assert "--- user ---\n[[ ## question ## ]]\n2+2?" in text
        assert "--- response ---\n[[ ## answer ## ]]\n4" in text
        history.clear()
        assert history.format() == ""


class TestScopes:
    async def test_each_context_has_its_own(self) -> None:
        """Sibling contexts opened without a history record into different ones."""
        lm = ScriptedLM()
        with context(lm=lm) as first:
            await Predict("q -> a")(q="one")
        with context(lm=lm) as second:
            await Predict("q -> a")(q="two")
        assert first.history is not second.history
        assert first.history is not None and second.history is not None
        assert len(first.history.last(5)) == len(second.history.last(5)) == 1

    async def test_nested_contexts_share(self) -> None:
        """A context inside another records into the outer one's history."""
        with context(lm=ScriptedLM()) as outer:
            with context(lm_params={"temperature": 0.1}) as inner:
                await Predict("q -> a")(q="x")
            assert inner.history is outer.history
            assert outer.history is not None and len(outer.history.last(5)) == 1

    def test_separate_event_loops_share_nothing(self) -> None:
        """Two asyncio.run calls never see each other's calls: nothing is process-wide."""
        import asyncio

        from lmvisor.programs.settings import configure, current_history

        async def run(q: str) -> list[str]:
            configure(lm=ScriptedLM())
            await Predict("q -> a")(q=q)
            history = current_history()
            assert history is not None
            return [e.request.messages[-1]["content"] for e in history.last(10)]

        first = asyncio.run(run("one"))
        second = asyncio.run(run("two"))
        assert len(first) == len(second) == 1
        assert "one" in first[0] and "two" in second[0]

    async def test_outside_any_scope_nothing_is_recorded(self) -> None:
        """A predictor with its own LM and no configure/context records nowhere."""
        predict = Predict("q -> a")
        predict.lm = ScriptedLM()
        await predict(q="x")
        assert inspect_history(file=io.StringIO()).startswith("(no LM calls recorded here")
