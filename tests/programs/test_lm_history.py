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
