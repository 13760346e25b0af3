"""Loading programs saved by DSPy 3.x: demos and instructions restored, `lm` ignored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import structlog.testing

from lmvisor.programs.chain_of_thought import ChainOfThought
from lmvisor.programs.errors import StateError
from lmvisor.programs.example import Example
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.testing.scripted_lm import ScriptedLM

SAVED = Path(__file__).parent / "compat_fixtures" / "saved_program.json"


class TestLoadDSPySaved:
    def test_chain_of_thought(self) -> None:
        """The saved demo and instructions are restored; the lm block is logged and ignored."""
        with structlog.testing.capture_logs() as logs:
            cot = ChainOfThought("question -> answer").load(SAVED)
        assert cot.predict.demos == [Example(question="2+2?", reasoning="add", answer="4")]
        signature = cot.predict.signature
        assert signature.instructions == "Given the fields `question`, produce the fields `answer`."
        assert [f.prefix for f in signature.fields.values()] == [
            "Question:",
            "Reasoning:",
            "Answer:",
        ]
        assert [log["event"] for log in logs] == ["programs.load.lm_ignored"]
        assert logs[0]["saved_model"] == "openai/gpt-4o-mini"
        assert logs[0]["predictor"] == "predict"

    async def test_loaded_demo_is_sent(self) -> None:
        """After loading, the demo appears as a user/assistant pair in the request."""
        cot = ChainOfThought("question -> answer").load(SAVED)
        lm = ScriptedLM()
        with context(lm=lm):
            await cot(question="3+3?")
        messages = lm.requests[0].messages
        assert messages[1] == {"role": "user", "content": "[[ ## question ## ]]\n2+2?"}
        assert messages[2]["content"] == (
            "[[ ## reasoning ## ]]\nadd\n\n[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]\n"
        )

    def test_saved_instructions_win(self, tmp_path: Path) -> None:
        """Edited instructions and descriptions in the file replace the program's."""
        data = json.loads(SAVED.read_text())
        data["predict"]["signature"]["instructions"] = "Optimized instructions."
        data["predict"]["signature"]["fields"][2]["description"] = "the sum"
        path = tmp_path / "edited.json"
        path.write_text(json.dumps(data))
        cot = ChainOfThought("question -> answer").load(path)
        assert cot.predict.signature.instructions == "Optimized instructions."
        assert cot.predict.signature.fields["answer"].desc == "the sum"

    def test_without_lm_block(self, tmp_path: Path) -> None:
        """A file without the lm block loads and logs nothing."""
        data = json.loads(SAVED.read_text())
        del data["predict"]["lm"]
        path = tmp_path / "nolm.json"
        path.write_text(json.dumps(data))
        with structlog.testing.capture_logs() as logs:
            ChainOfThought("question -> answer").load(path)
        assert logs == []

    def test_bare_predict(self, tmp_path: Path) -> None:
        """A DSPy-saved bare Predict (flat state) loads into Predict."""
        data = json.loads(SAVED.read_text())["predict"]
        data["signature"]["fields"] = data["signature"]["fields"][::2]
        path = tmp_path / "predict.json"
        path.write_text(json.dumps(data))
        with structlog.testing.capture_logs():
            predict = Predict("question -> answer").load(path)
        assert predict.demos[0].answer == "4"

    def test_wrong_program_shape(self, tmp_path: Path) -> None:
        """Loading a ChainOfThought save into a program with other predictors fails clearly."""
        path = tmp_path / "copy.json"
        shutil.copy(SAVED, path)

        class Other(ChainOfThought):
            pass

        other = Other("question -> answer")
        other.second = Predict("a -> b")
        with (
            structlog.testing.capture_logs(),
            pytest.raises(StateError, match=r"at second: no saved state"),
        ):
            other.load(path)
