"""The optimizers' named steps, each alone: MIPROv2's proposal step, COPRO's select step,
MIPROv2's search study."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from lmvisor.optimizers import (
    COPRO,
    BootstrapFewShot,
    CheckpointError,
    MemoryCheckpoint,
    MIPROv2,
    OptimizationRun,
    SearchSpace,
    planned_trials,
)
from lmvisor.optimizers._mipro_instructions import InstructionProposer, ProposerFlags
from lmvisor.optimizers.copro import _annotated, _Candidate, _select, _with_candidate
from lmvisor.optimizers.mipro_search import _study
from lmvisor.programs import Example, Predict, context
from lmvisor.testing import ScriptedLM


async def _proposer(flags: ProposerFlags, checkpoint: MemoryCheckpoint) -> InstructionProposer:
    run = OptimizationRun(checkpoint=checkpoint)
    await run.begin("MIPROv2")
    return InstructionProposer(run, prompt_model=None, temperature=1.0, flags=flags)


def _demo(i: int) -> Example:
    return Example(question=f"q{i}", answer=f"a{i}", augmented=True)


class TestInstructionProposer:
    async def test_index_zero_keeps_the_programs_own_instruction(self) -> None:
        """Each predictor gets `wanted` candidates; the first is its current instruction."""
        program = Predict("question -> answer")
        demos = [[[], [_demo(1)], [_demo(2)]]]
        lm = ScriptedLM()
        proposer = await _proposer(ProposerFlags(program_aware=False), MemoryCheckpoint())
        with context(lm=lm):
            found = await proposer.instructions(program, demos, None, random.Random(0), wanted=3)
        assert len(found) == 1 and len(found[0]) == 3
        assert found[0][0] == program.signature.instructions
        assert len(lm.requests) == 3  # one per demo set; not program-aware, so no descriptions

    async def test_same_seed_same_tips_and_same_prompts(self) -> None:
        """The RNG draws (tips, rollouts) decide the prompts; the same seed sends the same."""
        program = Predict("question -> answer")
        demos = [[[], [_demo(1)], [_demo(2)]]]
        sent: list[list[str]] = []
        for _ in range(2):
            lm = ScriptedLM()
            proposer = await _proposer(ProposerFlags(program_aware=False), MemoryCheckpoint())
            with context(lm=lm):
                await proposer.instructions(program, demos, "a summary", random.Random(7), wanted=3)
            sent.append(sorted(str(r.messages) for r in lm.requests))
        assert sent[0] == sent[1]

    async def test_summary_is_journaled_and_skipped_when_not_data_aware(self) -> None:
        """A recorded summary is not asked for again; data_aware=False asks nothing."""
        checkpoint = MemoryCheckpoint()
        trainset = [_demo(i) for i in range(25)]
        lm = ScriptedLM()
        with context(lm=lm):
            first = await (await _proposer(ProposerFlags(), checkpoint)).summary(trainset)
            asked = len(lm.requests)
            again = await (await _proposer(ProposerFlags(), checkpoint)).summary(trainset)
            off = await (await _proposer(ProposerFlags(data_aware=False), checkpoint)).summary(
                trainset
            )
        assert first is not None and again == first and off is None
        assert asked == 4  # first batch, two more batches of 10, then the summarizer
        assert len(lm.requests) == asked


def _candidate(score: float, instruction: str, depth: int = 0) -> _Candidate:
    program = _with_candidate(Predict("question -> answer"), 0, instruction, "Answer:")
    return _Candidate(score, program, instruction, "Answer:", depth)


class TestCoproSelect:
    def test_best_first_and_equal_repeats_dropped(self) -> None:
        """Candidates rank by score (stable); an equal score with the same prompt is dropped."""
        ranked = _select(
            [
                {
                    ("a", "Answer:"): _candidate(50.0, "a"),
                    ("b", "Answer:"): _candidate(80.0, "b"),
                },
                {("a2", "Answer:"): _candidate(80.0, "b", depth=1)},
            ]
        )
        assert [(c.score, c.instruction, c.depth) for c in ranked] == [
            (80.0, "b", 0),
            (50.0, "a", 0),
        ]

    def test_result_carries_candidates_and_calls(self) -> None:
        """The result is the best program, with DSPy's candidate_programs and total_calls."""
        ranked = [_candidate(80.0, "b"), _candidate(50.0, "a")]
        program = _annotated(ranked, 12)
        assert program.predictors()[0].signature.instructions == "b"
        assert [c["score"] for c in program.candidate_programs] == [80.0, 50.0]  # type: ignore[attr-defined]
        assert program.total_calls == 12  # type: ignore[attr-defined]


class TestMiproStudy:
    def test_study_is_seeded_with_the_default_program(self) -> None:
        """The study starts with one trial: every index 0, at the default score."""
        space = SearchSpace([["own", "new"]], [[[], [_demo(1)]]])
        study = _study(space, seed=9, default_score=42.0)
        (trial,) = study.trials
        assert trial.params == {"0_predictor_instruction": 0, "0_predictor_demos": 0}
        assert trial.value == 42.0

    def test_planned_trials_count_full_evaluations(self) -> None:
        """Minibatch runs add a full evaluation every `steps` trials and at the end."""
        assert planned_trials(10, False, 5) == 11
        assert planned_trials(10, True, 5) == 10 + 2 + 1
        assert planned_trials(11, True, 5) == 11 + 2 + 1 + 1


def _hashed(example: Example, prediction: object, trace: object = None) -> bool:
    return sum(map(ord, str(getattr(prediction, "answer", "")))) % 2 == 0


_TRAIN = [
    Example(question=f"What is {i} plus {i}?", answer=str(2 * i)).with_inputs("question")
    for i in range(12)
]


class TestDamagedCheckpoint:
    @pytest.mark.parametrize(
        ("optimizer", "prefix", "damage"),
        [
            ("bootstrap", "bootstrap/example:", {"success": "yes", "score": 1, "demos": {}}),
            ("bootstrap", "bootstrap/example:", {"success": True, "score": 1.0, "demos": []}),
            ("copro", "copro/propose/", {"instructions": "ab", "prefixes": "cd"}),
            ("copro", "copro/propose/", {"instructions": ["a"], "prefixes": []}),
            ("copro", "copro/eval/", {"score": True, "scores": []}),
            ("mipro", "mipro/summary", {"summary": 5}),
            ("mipro", "mipro/propose/", {"instruction": ["x"]}),
            ("mipro", "mipro/default", "75"),
        ],
    )
    async def test_a_step_of_the_wrong_shape_is_a_checkpoint_error(
        self, optimizer: str, prefix: str, damage: object
    ) -> None:
        """A recorded step value an older or damaged run wrote (wrong types, a list for an
        object, unequal lists) stops the resumed run with a CheckpointError naming the
        step, not a KeyError or TypeError from inside the optimizer."""
        make = {
            "bootstrap": lambda: BootstrapFewShot(metric=_hashed, max_bootstrapped_demos=2),
            "copro": lambda: COPRO(metric=_hashed, breadth=2, depth=1),
            "mipro": lambda: MIPROv2(_hashed, auto="light"),
        }[optimizer]
        checkpoint = MemoryCheckpoint()
        with context(lm=ScriptedLM()):
            await make().compile(
                Predict("question -> answer"),
                trainset=_TRAIN,
                run=OptimizationRun(checkpoint=checkpoint),
            )
        key = next(k for k in checkpoint.values if k.startswith(prefix))
        checkpoint.values[key] = damage
        with (
            context(lm=ScriptedLM()),
            pytest.raises(
                CheckpointError,
                match=rf"^checkpoint step {re.escape(repr(key))} cannot be replayed: ",
            ),
        ):
            await make().compile(
                Predict("question -> answer"),
                trainset=_TRAIN,
                run=OptimizationRun(checkpoint=checkpoint),
            )


class _RefusingCheckpoint(MemoryCheckpoint):
    """Refuses to record the first key starting with `prefix` (a journal that is busy)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    async def record(self, key: str, value: Any) -> None:
        if key.startswith(self.prefix):
            raise ConnectionResetError("journal busy")
        await super().record(key, value)


class TestJournalFailures:
    async def test_a_refused_write_of_the_default_program_propagates(self) -> None:
        """MIPROv2 scores a failing default program 0, but a journal that refuses the
        default's score stops the run (it was taken for a failing program and scored 0,
        seeding the search with a wrong baseline)."""
        with (
            context(lm=ScriptedLM()),
            pytest.raises(ConnectionResetError, match=r"^journal busy$"),
        ):
            await MIPROv2(_hashed, auto="light").compile(
                Predict("question -> answer"),
                trainset=_TRAIN,
                run=OptimizationRun(checkpoint=_RefusingCheckpoint("mipro/default")),
            )
