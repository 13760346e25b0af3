"""`COPRO`: coordinate-ascent search over each predictor's instruction and output prefix.

Steps, as in DSPy 3.4.1 (same prompts, same request count):

- propose: the prompt model writes `breadth - 1` instructions (one request, `n` completions,
  at `init_temperature`); the current instruction joins them;
- evaluate: every candidate of a predictor is scored on the trainset — concurrently, each
  on its own copy of the program, where DSPy scores them one after another;
- select: the predictor keeps its best candidate, so the next predictor (and the next
  depth) is scored on top of it; after each depth but the last, the prompt model sees the
  attempts so far with their scores and proposes `breadth` more.

The result is the best candidate overall (the first evaluated among equal scores), with
`candidate_programs` (best first, duplicates dropped) and `total_calls` attached as in DSPy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, final

from lmvisor.optimizers import _step_values as step_values
from lmvisor.optimizers._checks import count, real
from lmvisor.optimizers._gather import gather_steps
from lmvisor.optimizers.errors import OptimizerSettingsError
from lmvisor.optimizers.metric import Metric
from lmvisor.optimizers.run import OptimizationRun
from lmvisor.optimizers.teleprompter import Teleprompter, as_examples, scored_trial
from lmvisor.programs.example import Example
from lmvisor.programs.fields import InputField, OutputField
from lmvisor.programs.lm import LM
from lmvisor.programs.module import Module
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.programs.signature import Signature

__all__ = ["COPRO", "BasicGenerateInstruction", "GenerateInstructionGivenAttempts"]


class BasicGenerateInstruction(Signature):
    """You are an instruction optimizer for large language models. I will give you a ``signature`` of fields (inputs and outputs) in English. Your task is to propose an instruction that will lead a good language model to perform the task well. Don't be afraid to be creative."""  # noqa: E501

    basic_instruction: str = InputField(desc="The initial instructions before optimization")
    proposed_instruction: str = OutputField(desc="The improved instructions for the language model")
    proposed_prefix_for_output_field: str = OutputField(
        desc="The string at the end of the prompt, which will help the model start solving the task"
    )


class GenerateInstructionGivenAttempts(Signature):
    """You are an instruction optimizer for large language models. I will give some task instructions I've tried, along with their corresponding validation scores. The instructions are arranged in increasing order based on their scores, where higher scores indicate better quality.

    Your task is to propose a new instruction that will lead a good language model to perform the task even better. Don't be afraid to be creative."""  # noqa: E501

    attempted_instructions: str = InputField()
    proposed_instruction: str = OutputField(desc="The improved instructions for the language model")
    proposed_prefix_for_output_field: str = OutputField(
        desc="The string at the end of the prompt, which will help the model start solving the task"
    )


@final
@dataclass(slots=True)
class _Candidate:
    score: float
    program: Module
    instruction: str
    prefix: str
    depth: int


_Proposal = list[tuple[str, str]]


@final
class COPRO(Teleprompter):
    """Instruction search by coordinate ascent.

    Args:
        prompt_model: the LM that writes instructions (default: the settings' LM).
        metric: scores the program on the trainset.
        breadth: candidates per predictor per depth (> 1).
        depth: rounds of proposal and evaluation.
        init_temperature: the proposals' temperature.
        concurrency: the local executor's bound when `compile` gets no run.

    Raises:
        TypeError: breadth, depth or concurrency is not an int, or init_temperature not a
            number.
        ValueError: breadth <= 1, depth < 1, concurrency < 1, a negative, NaN or infinite
            init_temperature, or no metric.
    """

    def __init__(
        self,
        prompt_model: LM | None = None,
        metric: Metric | None = None,
        *,
        breadth: int = 10,
        depth: int = 3,
        init_temperature: float = 1.4,
        concurrency: int = 64,
    ) -> None:
        if count("COPRO", "breadth", breadth, minimum=0) <= 1:
            raise ValueError("COPRO.breadth must be greater than 1")
        count("COPRO", "depth", depth, minimum=1)
        count("COPRO", "concurrency", concurrency, minimum=1)
        if real("COPRO", "init_temperature", init_temperature) < 0:
            raise ValueError(f"COPRO.init_temperature must be >= 0, got {init_temperature!r}")
        if metric is None:
            raise ValueError("COPRO needs a metric")
        self.prompt_model = prompt_model
        self.metric: Metric = metric
        self.breadth = breadth
        self.depth = depth
        self.init_temperature = init_temperature
        self.concurrency = concurrency

    async def compile(
        self,
        student: Module,
        *,
        trainset: Sequence[Example],
        run: OptimizationRun | None = None,
        **_: Any,
    ) -> Module:
        """The best instruction/prefix found for each predictor of a copy of `student`.

        Raises:
            OptimizerSettingsError: the trainset is empty (checked before any LM call).
        """
        from lmvisor.optimizers.executor import LocalExecutor

        examples = as_examples(trainset)
        if not examples:
            raise OptimizerSettingsError(
                optimizer=self.name, setting="trainset", problem="is empty"
            )

        run = run or OptimizationRun(executor=LocalExecutor(concurrency=self.concurrency))
        await run.begin(self.name)
        module = student.deepcopy()
        run.plan(len(module.predictors()) * self.breadth * self.depth)
        evaluated, calls = await self._search(run, module, examples)
        program = _annotated(_select(evaluated), calls)
        run.finish()
        return program

    async def _search(
        self, run: OptimizationRun, module: Module, examples: list[Example]
    ) -> tuple[list[dict[tuple[str, str], _Candidate]], int]:
        """Each depth: evaluate every predictor's pool in turn, then propose more.

        Returns every evaluated candidate per predictor and the number of evaluations.
        """
        count = len(module.predictors())
        latest = [
            await self._propose_basic(run, p_i, pred)
            for p_i, pred in enumerate(module.predictors())
        ]
        every = [list(p) for p in latest]
        evaluated: list[dict[tuple[str, str], _Candidate]] = [{} for _ in range(count)]
        clone = module.deepcopy()
        iteration = 0
        for depth in range(self.depth):
            for p_i in range(count):
                pool = latest[p_i] if count == 1 else every[p_i]
                clone = await self._evaluate(
                    run, clone, examples, p_i, pool, evaluated[p_i], depth, iteration
                )
                iteration += len(pool)
            if depth == self.depth - 1:
                break
            latest = [
                await self._propose_more(run, depth + 1, p_i, evaluated[p_i])
                for p_i in range(count)
            ]
            for p_i, proposal in enumerate(latest):
                every[p_i].extend(proposal)
        return evaluated, iteration

    # --- propose -------------------------------------------------------------------

    async def _ask(
        self, run: OptimizationRun, key: str, signature: type[Signature], n: int, **inputs: Any
    ) -> _Proposal:
        async def propose() -> dict[str, list[str]]:
            predict = Predict(signature, n=n, temperature=self.init_temperature)
            overrides = {} if self.prompt_model is None else {"lm": self.prompt_model}
            with context(**overrides):
                prediction = await run.executor.run(lambda: predict(**inputs))
            completions = prediction.completions
            return {
                "instructions": [str(c.get("proposed_instruction", "")) for c in completions],
                "prefixes": [
                    str(c.get("proposed_prefix_for_output_field", "")) for c in completions
                ],
            }

        found: list[tuple[str, str]] = await run.step(key, propose, step_values.proposals)
        return found

    async def _propose_basic(self, run: OptimizationRun, p_i: int, predictor: Any) -> _Proposal:
        """Depth 0: `breadth - 1` proposals, then the predictor's own instruction and prefix."""
        signature = predictor.signature
        last = list(signature.fields.values())[-1]
        proposal = await self._ask(
            run,
            f"copro/propose/d0/p{p_i}",
            BasicGenerateInstruction,
            self.breadth - 1,
            basic_instruction=signature.instructions,
        )
        return [*proposal, (signature.instructions, last.prefix)]

    async def _propose_more(
        self,
        run: OptimizationRun,
        depth: int,
        p_i: int,
        evaluated: dict[tuple[str, str], _Candidate],
    ) -> _Proposal:
        """Later depths: `breadth` proposals given the attempts so far, worst first."""
        ranked = sorted(evaluated.values(), key=lambda c: c.score, reverse=True)
        shown = min(len(ranked), self.breadth)
        attempts: list[str] = []
        for i in range(shown - 1, -1, -1):
            attempts.append(f"Instruction #{shown - i}: {ranked[i].instruction}")
            attempts.append(f"Prefix #{shown - i}: {ranked[i].prefix}")
            attempts.append(f"Resulting Score #{shown - i}: {ranked[i].score}")
        return await self._ask(
            run,
            f"copro/propose/d{depth}/p{p_i}",
            GenerateInstructionGivenAttempts,
            self.breadth,
            attempted_instructions=attempts,
        )

    # --- evaluate and select ----------------------------------------------------------

    async def _evaluate(
        self,
        run: OptimizationRun,
        clone: Module,
        examples: list[Example],
        p_i: int,
        pool: _Proposal,
        evaluated: dict[tuple[str, str], _Candidate],
        depth: int,
        iteration: int,
    ) -> Module:
        """Score every candidate of predictor `p_i` at once; return the clone with the best."""
        programs = [_with_candidate(clone, p_i, *_clean(c)) for c in pool]
        scored = await gather_steps(
            *(
                scored_trial(
                    run,
                    f"copro/eval/d{depth}/p{p_i}/c{c_i}/{_digest(_clean(c))}",
                    program,
                    examples,
                    self.metric,
                    iteration=iteration + c_i,
                    candidate=f"depth {depth} predictor {p_i} candidate {c_i}",
                )
                for c_i, (c, program) in enumerate(zip(pool, programs, strict=True))
            )
        )
        for c, program, result in zip(pool, programs, scored, strict=True):
            instruction, prefix = _clean(c)
            known = evaluated.get((instruction, prefix))
            if known is None or known.score < result.score:
                evaluated[(instruction, prefix)] = _Candidate(
                    result.score, program, instruction, prefix, depth
                )
        best = max(evaluated.values(), key=lambda c: c.score)
        return _with_candidate(clone, p_i, best.instruction, best.prefix)


def _clean(candidate: tuple[str, str]) -> tuple[str, str]:
    instruction, prefix = candidate
    return instruction.strip('"').strip(), prefix.strip('"').strip()


def _digest(candidate: tuple[str, str]) -> str:
    return hashlib.blake2b("\x00".join(candidate).encode(), digest_size=4).hexdigest()


def _with_candidate(program: Module, p_i: int, instruction: str, prefix: str) -> Module:
    copy = program.deepcopy()
    predictor = copy.predictors()[p_i]
    signature = predictor.signature
    last = list(signature.fields)[-1]
    predictor.signature = signature.with_instructions(instruction).with_updated_fields(
        last, prefix=prefix
    )
    return copy


def _same(one: _Candidate, other: _Candidate) -> bool:
    for p1, p2 in zip(one.program.predictors(), other.program.predictors(), strict=False):
        if p1.signature.instructions != p2.signature.instructions:
            return False
        if list(p1.signature.fields.values())[-1] != list(p2.signature.fields.values())[-1]:
            return False
    return True


def _annotated(ranked: list[_Candidate], calls: int) -> Module:
    """The best candidate's program, with `candidate_programs` and `total_calls` as DSPy's."""
    program = ranked[0].program
    program.candidate_programs = [  # type: ignore[attr-defined]
        {"score": c.score, "program": c.program, "instruction": c.instruction,
         "prefix": c.prefix, "depth": c.depth}
        for c in ranked
    ]  # fmt: skip
    program.total_calls = calls  # type: ignore[attr-defined]
    return program


def _select(evaluated: list[dict[tuple[str, str], _Candidate]]) -> list[_Candidate]:
    """Every evaluated candidate, best first (stable), repeats of an equal score dropped."""
    ranked = sorted(
        (c for per_predictor in evaluated for c in per_predictor.values()),
        key=lambda c: c.score,
        reverse=True,
    )
    kept: list[_Candidate] = []
    batch: list[_Candidate] = []
    batch_score: float | None = None
    for candidate in ranked:
        if candidate.score == batch_score:
            if any(_same(candidate, other) for other in batch):
                continue
            batch.append(candidate)
        else:
            batch, batch_score = [candidate], candidate.score
        kept.append(candidate)
    return kept
