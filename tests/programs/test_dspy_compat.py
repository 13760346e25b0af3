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


WITH_LM = Path(__file__).parent / "compat_fixtures" / "saved_with_lm.json"


class TestSavedLMSettings:
    def test_ignored_by_default(self) -> None:
        """Without opting in, a saved lm block restores nothing and says so."""
        with structlog.testing.capture_logs() as logs:
            cot = ChainOfThought("question -> answer").load(WITH_LM)
        assert cot.predict.lm_params == {}
        assert [log["event"] for log in logs] == ["programs.load.lm_ignored"]

    async def test_restored_when_asked(self) -> None:
        """`lm_settings=True` restores temperature, max_tokens and top_p and sends them."""
        with structlog.testing.capture_logs() as logs:
            cot = ChainOfThought("question -> answer").load(WITH_LM, lm_settings=True)
        assert cot.predict.lm_params == {"temperature": 0.3, "max_tokens": 321, "top_p": 0.9}
        assert logs[0]["event"] == "programs.load.lm_restored"
        assert logs[0]["restored"] == ["max_tokens", "temperature", "top_p"]
        lm = ScriptedLM()
        with context(lm=lm):
            await cot(question="3+3?")
        assert dict(lm.requests[0].params) == {"temperature": 0.3, "max_tokens": 321, "top_p": 0.9}

    def test_connection_settings_never_restored(self, tmp_path: Path) -> None:
        """API keys and base URLs in the block are never restored nor logged."""
        data = json.loads(WITH_LM.read_text())
        data["predict"]["lm"]["api_key"] = "sk-leaked-secret"
        path = tmp_path / "leaky.json"
        path.write_text(json.dumps(data))
        with structlog.testing.capture_logs() as logs:
            cot = ChainOfThought("question -> answer").load(path, lm_settings=True)
        assert "api_key" not in cot.predict.lm_params
        assert "api_base" not in cot.predict.lm_params
        assert "sk-leaked-secret" not in repr(logs)
        assert "10.0.0.1" not in repr(logs)

    def test_a_non_finite_setting_is_a_state_error(self, tmp_path: Path) -> None:
        """A saved temperature of NaN (the stdlib JSON reader takes it) is refused, naming
        the setting: the vendor would have been sent null, not the saved value."""
        data = json.loads(WITH_LM.read_text())
        data["predict"]["lm"]["temperature"] = float("nan")
        path = tmp_path / "nan.json"
        path.write_text(json.dumps(data))
        with pytest.raises(StateError, match=r"predict\.lm\.temperature: numbers must be finite"):
            ChainOfThought("question -> answer").load(path, lm_settings=True)

    def test_an_unbounded_count_is_a_state_error(self, tmp_path: Path) -> None:
        """A saved max_tokens of 10**29 (shown as a string in program views) is refused,
        naming the setting and its range."""
        data = json.loads(WITH_LM.read_text())
        data["predict"]["lm"]["max_tokens"] = 10**29
        path = tmp_path / "huge.json"
        path.write_text(json.dumps(data))
        problem = r"predict\.lm\.max_tokens: must be a whole number from 1 to 2147483647$"
        with pytest.raises(StateError, match=problem):
            ChainOfThought("question -> answer").load(path, lm_settings=True)

    def test_round_trip(self, tmp_path: Path) -> None:
        """Saving again writes the model and the restored settings back in the lm block."""
        cot = ChainOfThought("question -> answer")
        with structlog.testing.capture_logs():
            cot.load(WITH_LM, lm_settings=True)
        path = tmp_path / "again.json"
        cot.save(path)
        lm = json.loads(path.read_text())["predict"]["lm"]
        assert lm == {
            "model": "openai/gpt-4o-mini",
            "temperature": 0.3,
            "max_tokens": 321,
            "top_p": 0.9,
        }


class TestAllOrNothing:
    def test_bad_second_predictor_changes_nothing(self, tmp_path: Path) -> None:
        """A bad entry for one predictor leaves every predictor as it was."""

        class Two(ChainOfThought):
            pass

        program = Two("question -> answer")
        program.second = Predict("a -> b")
        before = program.dump_state()
        data = json.loads(SAVED.read_text())
        data["second"] = {"demos": "not a list"}
        path = tmp_path / "half.json"
        path.write_text(json.dumps(data))
        with (
            structlog.testing.capture_logs(),
            pytest.raises(StateError, match=r"at second\.demos: must be a list"),
        ):
            program.load(path)
        assert program.dump_state() == before


class TestDeepNesting:
    def test_deep_file_is_a_state_error(self, tmp_path: Path) -> None:
        """A saved program nested thousands deep raises StateError, not RecursionError."""
        path = tmp_path / "deep.json"
        path.write_text('{"predict": ' + "[" * 50_000 + "]" * 50_000 + "}")
        with pytest.raises(StateError, match=r"nested deeper than 100 levels"):
            ChainOfThought("question -> answer").load(path)

    def test_deep_but_parseable_state(self) -> None:
        """State parsed fine but nested past the limit is refused before anything changes."""
        deep: object = "x"
        for _ in range(150):
            deep = [deep]
        state = {"predict": {"demos": [{"question": deep, "answer": "4"}]}}
        with pytest.raises(StateError, match=r"nested deeper than 100 levels"):
            ChainOfThought("question -> answer").load_state(state)

    def test_deep_state_of_a_lone_predict(self, tmp_path: Path) -> None:
        """A bare Predict (its own load_state, DSPy's flat form) refuses deep demos too, by
        file or by value, keeping its state: it loaded them, and dump_state then recursed out."""
        deep: object = "x"
        for _ in range(800):
            deep = [deep]
        state = {"demos": [{"question": deep, "answer": "4"}]}
        path = tmp_path / "deep.json"
        path.write_text(json.dumps(state))
        program = Predict("question -> answer")
        before = program.dump_state()
        for load in (lambda: program.load_state(state), lambda: program.load(path)):
            with pytest.raises(StateError, match=r"^cannot load program state at self: nested d"):
                load()
        assert program.dump_state() == before
