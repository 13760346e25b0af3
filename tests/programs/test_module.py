"""Module base: parameters, copies, JSON state, save/load, batch, callbacks, run_sync, usage."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from lmvisor.programs.callbacks import Callback
from lmvisor.programs.chain_of_thought import ChainOfThought
from lmvisor.programs.errors import StateError
from lmvisor.programs.example import Example, Prediction
from lmvisor.programs.lm import LMRequest, LMResponse, Usage
from lmvisor.programs.module import Module
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.testing.scripted_lm import ScriptedLM


class Pipeline(Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = Predict("question -> draft")
        self.second = ChainOfThought("question, draft -> answer")
        self.extra = [Predict("a -> b")]
        self.by_name = {"k": Predict("c -> d")}

    async def forward(self, **inputs: Any) -> Prediction:
        draft = await self.first(**inputs)
        return await self.second(question=inputs["question"], draft=draft.draft)  # type: ignore[no-any-return]


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self.events.append(f"module_start:{type(instance).__name__}")

    def on_module_end(self, call_id: str, outputs: Any, exception: BaseException | None) -> None:
        self.events.append("module_end" if exception is None else "module_error")

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        assert isinstance(inputs["request"], LMRequest)
        self.events.append("lm_start")

    def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None) -> None:
        self.events.append("lm_end")

    def on_adapter_format_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self.events.append("format_start")

    def on_adapter_format_end(
        self, call_id: str, outputs: Any, exception: BaseException | None
    ) -> None:
        self.events.append("format_end")

    def on_adapter_parse_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self.events.append("parse_start")

    def on_adapter_parse_end(
        self, call_id: str, outputs: Any, exception: BaseException | None
    ) -> None:
        self.events.append("parse_end" if exception is None else "parse_error")


class TestParameters:
    def test_named_parameters(self) -> None:
        """Predictors are found in attributes, nested modules, lists and dicts."""
        names = [name for name, _ in Pipeline().named_parameters()]
        assert names == ["first", "second.predict", "extra[0]", "by_name['k']"]

    def test_predict_is_its_own_parameter(self) -> None:
        """A bare Predict lists itself as `self`."""
        predict = Predict("q -> a")
        assert predict.named_predictors() == [("self", predict)]

    def test_shared_predictor_listed_once(self) -> None:
        """A predictor reachable twice is listed once."""
        program = Pipeline()
        program.alias = program.first
        assert [n for n, _ in program.named_parameters()].count("alias") == 0

    def test_deepcopy_shares_lm(self) -> None:
        """deepcopy copies demos and signatures but shares the LM."""
        program = Pipeline()
        lm = ScriptedLM()
        program.first.lm = lm
        program.first.demos = [Example(question="q", draft="d")]
        copy = program.deepcopy()
        assert copy.first is not program.first
        assert copy.first.lm is lm
        assert copy.first.demos == program.first.demos
        assert copy.first.demos is not program.first.demos
        assert copy.first.demos[0] is not program.first.demos[0]

    def test_reset_copy(self) -> None:
        """reset_copy clears demos and per-predictor LMs in the copy only."""
        program = Pipeline()
        program.first.demos = [Example(question="q", draft="d")]
        program.first.lm = ScriptedLM()
        copy = program.reset_copy()
        assert copy.first.demos == []
        assert copy.first.lm is None
        assert len(program.first.demos) == 1

    async def test_forward_required(self) -> None:
        """A module without forward fails with a TypeError naming the class."""
        with pytest.raises(TypeError, match=r"^Module must implement async def forward"):
            await Module()()


class TestState:
    def test_round_trip(self, tmp_path: Path) -> None:
        """save then load restores demos, instructions and descriptions."""
        program = Pipeline()
        program.first.demos = [Example(question="q1", draft="d1")]
        program.second.predict.signature = program.second.predict.signature.with_instructions(
            "Think."
        )
        path = tmp_path / "program.json"
        program.save(path)
        loaded = Pipeline().load(path)
        assert loaded.first.demos == [Example(question="q1", draft="d1")]
        assert loaded.second.predict.signature.instructions == "Think."
        assert loaded.dump_state() == program.dump_state()
        saved = json.loads(path.read_text())
        assert saved["metadata"]["format"] == "lmvisor.program_state/1"

    def test_private_predictor_round_trip(self, tmp_path: Path) -> None:
        """A predictor held in a private attribute is saved and loaded too, as in DSPy."""

        class Private(Module):
            def __init__(self) -> None:
                super().__init__()
                self._gen = Predict("question -> answer")

        program = Private()
        program._gen.demos = [Example(question="q", answer="a")]
        program.save(tmp_path / "p.json")
        loaded = Private().load(tmp_path / "p.json")
        assert [n for n, _ in loaded.named_parameters()] == ["_gen"]
        assert loaded._gen.demos == [Example(question="q", answer="a")]

    def test_pickle_refused_on_save(self, tmp_path: Path) -> None:
        """Saving to a pickle path, or with save_program=True, is refused."""
        with pytest.raises(ValueError, match=r"pickled programs are not supported"):
            Predict("q -> a").save(tmp_path / "p.pkl")
        with pytest.raises(ValueError, match=r"pickled programs are not supported"):
            Predict("q -> a").save(tmp_path / "p.json", save_program=True)

    def test_pickle_refused_on_load(self, tmp_path: Path) -> None:
        """A pickled file is refused without being unpickled."""
        path = tmp_path / "p.bin"
        path.write_bytes(pickle.dumps({"a": 1}))
        with pytest.raises(
            StateError, match=r"pickled programs are refused; only JSON state loads$"
        ):
            Predict("q -> a").load(path)

    @pytest.mark.parametrize(
        ("content", "pattern"),
        [
            ("{not json", r"not valid JSON"),
            ("[]", r"at <root>: state must be a JSON object$"),
            ('{"predict": {"demos": 3}}', r"predict.demos.*must be a list of JSON objects$"),
            (
                '{"predict": {"demos": [], "signature": {"fields": 1}}}',
                r"signature.fields: must be a list$",
            ),
            (
                '{"predict": {"demos": [], "signature": {"instructions": 2}}}',
                r"instructions: must be a string$",
            ),
            ('{"other": {}}', r"at predict: no saved state for this predictor$"),
        ],
    )
    def test_bad_files(self, tmp_path: Path, content: str, pattern: str) -> None:
        """A malformed state file raises StateError naming the bad part."""
        path = tmp_path / "bad.json"
        path.write_text(content)
        with pytest.raises(StateError, match=pattern):
            ChainOfThought("question -> answer").load(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is a StateError."""
        with pytest.raises(StateError, match=r"cannot read file"):
            Predict("q -> a").load(tmp_path / "nope.json")

    def test_a_path_that_is_no_regular_file(self, tmp_path: Path) -> None:
        """A FIFO (a plain read waited for a writer), /dev/zero (read forever) or a
        directory is a StateError at once."""
        fifo = tmp_path / "program.json"
        os.mkfifo(fifo)
        for path in (fifo, Path("/dev/zero"), tmp_path):
            with pytest.raises(StateError, match=r"cannot read file: not a regular file$"):
                Predict("q -> a").load(path)


class TestBatch:
    async def test_results_in_order(self) -> None:
        """batch returns one prediction per example in order, Examples giving their inputs."""
        predict = Predict("question -> answer")
        examples = [
            Example(question=f"q{i}", answer="gold").with_inputs("question") for i in range(5)
        ]
        with context(lm=ScriptedLM()):
            results = await predict.batch(examples, concurrency=2)
        assert [f"q{i}" in r.answer for i, r in enumerate(results)] == [True] * 5

    async def test_concurrency_is_bounded(self) -> None:
        """No more than `concurrency` calls are in flight at once."""
        in_flight = peak = 0
        release = asyncio.Event()

        async def reply(request: LMRequest) -> str:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            if peak == 3:
                release.set()
            await release.wait()
            in_flight -= 1
            return "[[ ## answer ## ]]\nok"

        with context(lm=ScriptedLM(reply)):
            results = await Predict("question -> answer").batch(
                [{"question": str(i)} for i in range(10)], concurrency=3
            )
        assert peak == 3
        assert len(results) == 10

    async def test_return_exceptions(self) -> None:
        """With return_exceptions a failure takes its place in the results."""
        lm = ScriptedLM(["[[ ## answer ## ]]\nok", RuntimeError("down")])
        with context(lm=lm):
            results = await Predict("question -> answer").batch(
                [{"question": "1"}, {"question": "2"}], concurrency=1, return_exceptions=True
            )
        assert results[0].answer == "ok"
        assert isinstance(results[1], RuntimeError)

    async def test_failure_raises(self) -> None:
        """Without return_exceptions the first failure is raised."""
        with (
            context(lm=ScriptedLM([RuntimeError("down")])),
            pytest.raises(RuntimeError, match="down"),
        ):
            await Predict("question -> answer").batch([{"question": "1"}])

    async def test_bad_concurrency(self) -> None:
        """concurrency < 1 is a ValueError."""
        with pytest.raises(ValueError, match=r"^concurrency must be >= 1$"):
            await Predict("q -> a").batch([], concurrency=0)


class TestCallbacks:
    async def test_event_order(self) -> None:
        """Module, adapter and LM hooks fire in nesting order."""
        recorder = Recorder()
        with context(lm=ScriptedLM(), callbacks=[recorder]):
            await ChainOfThought("question -> answer")(question="q")
        assert recorder.events == [
            "module_start:ChainOfThought",
            "module_start:Predict",
            "format_start",
            "format_end",
            "lm_start",
            "lm_end",
            "parse_start",
            "parse_end",
            "module_end",
            "module_end",
        ]

    async def test_error_reported(self) -> None:
        """A failing module reports its exception to on_module_end."""
        recorder = Recorder()
        predict = Predict("question -> answer", callbacks=[recorder])
        with context(lm=ScriptedLM([RuntimeError("x")])), pytest.raises(RuntimeError):
            await predict(question="q")
        assert recorder.events[-2:] == ["lm_end", "module_error"]

    async def test_failing_callback_is_ignored(self) -> None:
        """A callback that raises does not break the program."""

        class Broken(Callback):
            def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
                raise RuntimeError("bad hook")

        with context(lm=ScriptedLM(), callbacks=[Broken()]):
            pred = await Predict("question -> answer")(question="q")
        assert pred.answer


class TestRunSyncAndUsage:
    def test_run_sync(self) -> None:
        """run_sync runs the module from synchronous code."""
        with context(lm=ScriptedLM(["[[ ## answer ## ]]\n4"])):
            assert Predict("question -> answer").run_sync(question="2+2?").answer == "4"

    async def test_run_sync_inside_loop(self) -> None:
        """run_sync inside a running loop is a RuntimeError."""
        with pytest.raises(RuntimeError, match=r"^run_sync\(\) cannot run inside an event loop"):
            Predict("q -> a").run_sync(q="x")

    async def test_usage_summed_over_nested_calls(self) -> None:
        """A program's prediction sums the usage of every LM call inside it."""
        lm = ScriptedLM()
        with context(lm=lm):
            pred = await Pipeline()(question="q")
        assert lm.calls == 2
        assert pred.usage == lm.total_usage()

    async def test_usage_of_concurrent_children_stays_apart(self) -> None:
        """Module calls run in child tasks each count only their own LM calls; the
        enclosing call counts all of them, and an accumulator closed is not told again."""
        response = LMResponse(outputs=["[[ ## a ## ]]\nx"], usage=Usage(total_tokens=3))
        lm = ScriptedLM([response] * 3)

        class Fan(Module):
            def __init__(self) -> None:
                super().__init__()
                self.one = Predict("q -> a")
                self.two = Predict("q -> a")

            async def forward(self, **inputs: Any) -> Prediction:
                first, second = await asyncio.gather(self.one(**inputs), self.two(**inputs))
                assert first.usage.total_tokens == 3
                assert second.usage.total_tokens == 3
                return Prediction(a=first.a)

        with context(lm=lm):
            pred = await Fan()(q="x")
            alone = await Predict("q -> a")(q="y")
        assert pred.usage.total_tokens == 6
        assert alone.usage.total_tokens == 3
