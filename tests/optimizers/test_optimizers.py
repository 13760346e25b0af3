"""The optimizers against a deterministic LM: demos, instructions, request counts, resume."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lmvisor.config import load_config
from lmvisor.optimizers import (
    COPRO,
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    LabeledFewShot,
    LocalExecutor,
    MemoryCheckpoint,
    MIPROv2,
    OptimizationRun,
    OptimizerSettingsError,
    TooManyErrors,
    import_optuna,
)
from lmvisor.programs import ChainOfThought, Example, Predict, context
from lmvisor.runtime import Runtime
from lmvisor.runtime.observe.names import OPTIMIZATION_ITERATION
from lmvisor.services import start_lm_providers
from lmvisor.testing import LMServer, ScriptedLM

FIXTURES = Path(__file__).parent / "fixtures"


def passes(example: Example, prediction: Any, trace: Any = None) -> bool:
    return True


def fails(example: Example, prediction: Any, trace: Any = None) -> bool:
    return False


def hashed(example: Example, prediction: Any, trace: Any = None) -> bool:
    return sum(map(ord, str(prediction.answer))) % 2 == 0


@pytest.fixture
async def server() -> AsyncIterator[LMServer]:
    async with LMServer() as srv:
        yield srv


async def _router(runtime: Runtime, server: LMServer) -> Any:
    config = load_config(
        env={},
        providers={
            "openai": {"base_url": server.url + "/v1", "api_key": "sk-test", "max_retries": 0}
        },
    )
    return (await start_lm_providers(runtime, config)).router("openai/gpt-4o-mini")


class TestLabeledFewShot:
    async def test_samples_k_demos_without_lm_calls(self, trainset: list[Example]) -> None:
        """k demos sampled with Random(0), as DSPy; the student is untouched."""
        student = Predict("question -> answer")
        program = await LabeledFewShot(k=3).compile(student, trainset=trainset)
        assert program.demos == random.Random(0).sample(trainset, 3)
        assert student.demos == []


class TestBootstrapFewShot:
    async def test_passing_metric_bootstraps_in_four_requests(
        self, trainset: list[Example]
    ) -> None:
        """4 bootstrapped demos from 4 teacher runs, then 12 labeled ones."""
        lm = ScriptedLM()
        with context(lm=lm):
            program = await BootstrapFewShot(passes, max_bootstrapped_demos=4).compile(
                Predict("question -> answer"), trainset=trainset
            )
        assert len(lm.requests) == 4
        assert len(program.demos) == 16
        assert [d.get("augmented") for d in program.demos[:5]] == [True] * 4 + [None]

    async def test_failing_metric_tries_every_example(self, trainset: list[Example]) -> None:
        """A metric that never passes runs the teacher on all 50 examples."""
        lm = ScriptedLM()
        with context(lm=lm):
            program = await BootstrapFewShot(fails).compile(
                Predict("question -> answer"), trainset=trainset
            )
        assert len(lm.requests) == 50
        assert not any(d.get("augmented") for d in program.demos)

    async def test_errors_stop_at_max_errors(self, trainset: list[Example]) -> None:
        """Teacher failures count toward max_errors."""
        lm = ScriptedLM(lambda request: RuntimeError("vendor down"))
        with context(lm=lm), pytest.raises(TooManyErrors, match=r"^stopped after \d+ failing"):
            await BootstrapFewShot(passes, max_errors=3).compile(
                Predict("question -> answer"), trainset=trainset
            )

    async def test_teacher_must_match_the_student(self, trainset: list[Example]) -> None:
        """A teacher with other predictors is refused."""
        with pytest.raises(OptimizerSettingsError, match=r"^BootstrapFewShot: teacher must have"):
            await BootstrapFewShot(passes).compile(
                Predict("question -> answer"), trainset=trainset, teacher=_Two()
            )

    async def test_trials_are_reported(self, runtime: Runtime, trainset: list[Example]) -> None:
        """Each attempt emits an optimization.iteration event and counts in the metrics
        of the current runtime (the fixture's)."""
        with context(lm=ScriptedLM()):
            await BootstrapFewShot(passes, max_bootstrapped_demos=2).compile(
                Predict("question -> answer"), trainset=trainset
            )
        events = runtime.events.ring.query(type=OPTIMIZATION_ITERATION)
        assert [e.data["iteration"] for e in events] == [0, 1]
        assert set(events[0].data) == {
            "optimization_id", "optimizer", "iteration", "candidate", "score", "metric",
        }  # fmt: skip
        value = runtime.metrics.value(
            "lmvisor_optimization_iterations_total", optimizer="BootstrapFewShot"
        )
        assert value == 2

    async def test_same_demos_and_state_layout_as_dspy(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """On the loopback server, the saved state equals DSPy 3.4.1's (fixture saved by DSPy)."""
        router = await _router(runtime, server)
        train = [
            Example(question=f"What is {i} plus {i}?", answer=str(2 * i)).with_inputs("question")
            for i in range(10)
        ]
        with context(lm=router):
            program = await BootstrapFewShot(
                passes, max_bootstrapped_demos=2, max_labeled_demos=4
            ).compile(Predict("question -> answer"), trainset=train)
        dspy_state = json.loads((FIXTURES / "dspy_bootstrap.json").read_text())
        ours = program.dump_state()
        assert ours["demos"] == dspy_state["demos"]
        assert ours["signature"] == dspy_state["signature"]
        again = Predict("question -> answer").load(FIXTURES / "dspy_bootstrap.json")
        assert again.dump_state()["demos"] == dspy_state["demos"]


class _Two(Predict):
    def __init__(self) -> None:
        super().__init__("question -> answer")
        self.other = Predict("question -> answer")


class TestRandomSearch:
    async def test_scores_every_candidate_and_keeps_the_best(self, trainset: list[Example]) -> None:
        """Seeds -3..N-1 are each scored; the best (first among equals) is returned."""
        with context(lm=ScriptedLM()):
            program = await BootstrapFewShotWithRandomSearch(
                hashed, num_candidate_programs=2, max_labeled_demos=4
            ).compile(Predict("question -> answer"), trainset=trainset[:12])
        seeds = [c["seed"] for c in program.candidate_programs]
        assert sorted(seeds) == [-3, -2, -1, 0, 1]
        best = program.candidate_programs[0]["score"]
        assert all(c["score"] <= best for c in program.candidate_programs)


class TestCOPRO:
    async def test_request_count_and_first_best_instruction(self, trainset: list[Example]) -> None:
        """breadth 3, depth 2, 20 examples: 2 proposals + 6 candidates x 20 = 122 requests."""
        lm = ScriptedLM()
        with context(lm=lm):
            program = await COPRO(metric=passes, breadth=3, depth=2).compile(
                Predict("question -> answer"), trainset=trainset[:20]
            )
        assert len(lm.requests) == 122
        assert program.total_calls == 6
        # equal scores: the first candidate evaluated (the first completion) wins
        assert program.signature.instructions.startswith("proposed_instruction ")
        assert len({c["instruction"] for c in program.candidate_programs}) == 6

    async def test_multi_predictor_programs(self, trainset: list[Example]) -> None:
        """Each predictor of a program gets its own search."""
        lm = ScriptedLM()
        with context(lm=lm):
            program = await COPRO(metric=hashed, breadth=2, depth=1).compile(
                ChainOfThought("question -> answer"), trainset=trainset[:5]
            )
        assert program.predict.signature.instructions
        assert len(lm.requests) == 1 + 2 * 5

    def test_breadth_must_exceed_one(self) -> None:
        """breadth 1 cannot search."""
        with pytest.raises(ValueError, match=r"^COPRO.breadth must be greater than 1$"):
            COPRO(metric=passes, breadth=1)


class TestMIPROv2:
    async def test_light_request_count(self, trainset: list[Example]) -> None:
        """auto=light on 50 examples: 12 bootstrap + 11 proposal + 11 x 40 evaluation requests."""
        lm = ScriptedLM()
        with context(lm=lm):
            program = await MIPROv2(passes, auto="light").compile(
                Predict("question -> answer"), trainset=trainset
            )
        assert len(lm.requests) == 463
        assert program.score == 100.0
        assert len(program.candidate_programs) == 11

    async def test_same_seed_same_result(self, trainset: list[Example]) -> None:
        """Two runs with the same seed choose the same program."""
        states = []
        for _ in range(2):
            with context(lm=ScriptedLM()):
                program = await MIPROv2(hashed, auto="light", seed=3).compile(
                    Predict("question -> answer"), trainset=trainset[:20]
                )
            states.append(program.dump_state())
        assert states[0] == states[1]

    async def test_resume_evaluates_no_trial_twice(self, trainset: list[Example]) -> None:
        """Interrupted and rerun on the same checkpoint: same result, same total requests."""
        train = trainset[:20]
        lm = ScriptedLM()
        with context(lm=lm):
            whole = await MIPROv2(hashed, auto="light").compile(
                Predict("question -> answer"), trainset=train
            )
        total = len(lm.requests)
        checkpoint = MemoryCheckpoint()
        first = ScriptedLM()

        async def interrupted() -> None:
            with context(lm=first):
                await MIPROv2(hashed, auto="light").compile(
                    Predict("question -> answer"),
                    trainset=train,
                    run=OptimizationRun(
                        executor=LocalExecutor(concurrency=4), checkpoint=checkpoint
                    ),
                )

        task = asyncio.ensure_future(interrupted())
        while len(checkpoint.values) < 12:  # noqa: ASYNC110 (polling a plain dict)
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        second = ScriptedLM()
        with context(lm=second):
            resumed = await MIPROv2(hashed, auto="light").compile(
                Predict("question -> answer"),
                trainset=train,
                run=OptimizationRun(checkpoint=checkpoint),
            )
        assert resumed.dump_state() == whole.dump_state()
        assert len(second.requests) < total
        # the requests of recorded steps are not sent again; only the interrupted ones repeat
        assert len(first.requests) + len(second.requests) - total < 4 * 20

    async def test_missing_optuna_fails_before_any_request(
        self, trainset: list[Example], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without optuna, compile raises an ImportError naming the extra and sends nothing."""
        found = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *args: None if name == "optuna" else found(name, *args),
        )
        monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now fails too
        lm = ScriptedLM()
        with context(lm=lm), pytest.raises(ImportError, match=r"^MIPROv2 needs optuna: install"):
            await MIPROv2(passes, auto="light").compile(
                Predict("question -> answer"), trainset=trainset
            )
        assert lm.requests == []

    async def test_optuna_is_imported_off_the_loop_thread(
        self, trainset: list[Example], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """optuna is imported on a worker thread, so the import overlaps the LM rounds."""
        threads: list[threading.Thread] = []

        def recording() -> Any:
            threads.append(threading.current_thread())
            return import_optuna()

        monkeypatch.setattr("lmvisor.optimizers.mipro.import_optuna", recording)
        with context(lm=ScriptedLM()):
            await MIPROv2(passes, auto="light").compile(
                Predict("question -> answer"), trainset=trainset[:20]
            )
        assert threads and threading.main_thread() not in threads

    def test_auto_and_num_candidates_conflict(self) -> None:
        """auto and num_candidates cannot both be given."""
        with pytest.raises(ValueError, match=r"^MIPROv2: num_candidates cannot be set together"):
            MIPROv2(passes, auto="light", num_candidates=3)


class TestLoopbackRequestCounts:
    """Request counts through the real LM path, against DSPy 3.4.1's measured figures."""

    async def _count(self, server: LMServer, router: Any, optimizer: Any, train: Any) -> int:
        server.reset_stats()
        with context(lm=router):
            await optimizer.compile(Predict("question -> answer"), trainset=train)
        return server.stats().requests

    async def test_bootstrap(
        self, runtime: Runtime, server: LMServer, trainset: list[Example]
    ) -> None:
        """BootstrapFewShot(4): 4 requests (DSPy: 4); failing metric: 50 (DSPy: 50)."""
        router = await _router(runtime, server)
        assert await self._count(server, router, BootstrapFewShot(passes), trainset) == 4
        assert await self._count(server, router, BootstrapFewShot(fails), trainset) == 50

    async def test_copro_within_ten_percent(
        self, runtime: Runtime, server: LMServer, trainset: list[Example]
    ) -> None:
        """COPRO(3, 2) on 20 examples: within 10% of DSPy's 125."""
        router = await _router(runtime, server)
        copro = COPRO(metric=passes, breadth=3, depth=2)
        count = await self._count(server, router, copro, trainset[:20])
        assert abs(count - 125) <= 12.5

    async def test_mipro_light_within_ten_percent(
        self, runtime: Runtime, server: LMServer, trainset: list[Example]
    ) -> None:
        """MIPROv2 light on 50 examples: within 10% of DSPy's 457."""
        router = await _router(runtime, server)
        count = await self._count(server, router, MIPROv2(passes, auto="light"), trainset)
        assert abs(count - 457) <= 45.7


class TestMIPROv2Seed:
    async def test_seed_zero_at_compile_is_seed_zero(self, trainset: list[Example]) -> None:
        """compile(seed=0) uses seed 0 (not the constructor's seed, as `seed or` did)."""

        def hashed(example: Example, prediction: Any, trace: Any = None) -> bool:
            return sum(map(ord, str(prediction.answer))) % 2 == 0

        async def requests(optimizer: MIPROv2, **kwargs: Any) -> list[str]:
            lm = ScriptedLM()
            with context(lm=lm):
                await optimizer.compile(
                    Predict("question -> answer"), trainset=trainset[:20], **kwargs
                )
            return sorted(str(request.messages) for request in lm.requests)

        zero = await requests(MIPROv2(hashed, auto="light", seed=0))
        assert await requests(MIPROv2(hashed, auto="light", seed=9), seed=0) == zero
        assert await requests(MIPROv2(hashed, auto="light", seed=9)) != zero
