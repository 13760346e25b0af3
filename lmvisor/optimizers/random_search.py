"""`BootstrapFewShotWithRandomSearch`: several demo sets, each scored; the best one wins.

Candidates, as in DSPy 3.4.1 (seed -3..N-1): -3 the zero-shot student, -2 labeled demos
only, -1 BootstrapFewShot on the trainset in order, and for each seed >= 0 BootstrapFewShot
on the trainset shuffled with `Random(seed)` and `Random(seed).randint(1, max)` demos.
Each candidate is built (propose), scored on the valset (evaluate) and the first best one
kept (select). Candidates are built and scored concurrently unless `stop_at_score` asks to
stop early, which needs DSPy's order.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, final

from lmvisor.optimizers._checks import count, optional_real
from lmvisor.optimizers._gather import gather_steps
from lmvisor.optimizers.bootstrap import BootstrapFewShot
from lmvisor.optimizers.errors import OptimizerSettingsError
from lmvisor.optimizers.labeled_few_shot import label_demos
from lmvisor.optimizers.metric import Metric
from lmvisor.optimizers.run import OptimizationRun
from lmvisor.optimizers.teleprompter import Scored, Teleprompter, as_examples, scored_trial
from lmvisor.programs.example import Example
from lmvisor.programs.module import Module

__all__ = ["BootstrapFewShotWithRandomSearch"]


@final
class BootstrapFewShotWithRandomSearch(Teleprompter):
    """Random search over bootstrapped demo sets.

    Args:
        metric: scores candidates (and filters bootstrapped traces).
        teacher_settings, max_bootstrapped_demos, max_labeled_demos, max_rounds,
            metric_threshold, max_errors: as for `BootstrapFewShot`.
        num_candidate_programs: shuffled candidates beyond the three fixed ones.
        stop_at_score: stop once a candidate scores at least this (percentage).
        concurrency: the local executor's bound when `compile` gets no run.

    Raises:
        TypeError: a count that is not an int, or a stop_at_score that is not a number.
        ValueError: num_candidate_programs < 0, max_bootstrapped_demos < 1 while there are
            shuffled candidates (each draws 1..max_bootstrapped_demos demos), a
            stop_at_score that is NaN or infinite, or a bad BootstrapFewShot setting.
    """

    def __init__(
        self,
        metric: Metric,
        *,
        teacher_settings: Mapping[str, Any] | None = None,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        max_rounds: int = 1,
        num_candidate_programs: int = 16,
        max_errors: int | None = None,
        stop_at_score: float | None = None,
        metric_threshold: float | None = None,
        concurrency: int = 64,
    ) -> None:
        owner = "BootstrapFewShotWithRandomSearch"
        count(owner, "num_candidate_programs", num_candidate_programs, minimum=0)
        if num_candidate_programs > 0:
            count(owner, "max_bootstrapped_demos", max_bootstrapped_demos, minimum=1)
        self.metric = metric
        self.teacher_settings = dict(teacher_settings or {})
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.max_rounds = max_rounds
        self.num_candidate_programs = num_candidate_programs
        self.max_errors = max_errors
        self.stop_at_score = optional_real(owner, "stop_at_score", stop_at_score)
        self.metric_threshold = metric_threshold
        self.concurrency = concurrency
        self._bootstrap(max_bootstrapped_demos)  # validates the shared settings now
        count(owner, "concurrency", concurrency, minimum=1)

    def _bootstrap(self, demos: int) -> BootstrapFewShot:
        return BootstrapFewShot(
            self.metric,
            metric_threshold=self.metric_threshold,
            teacher_settings=self.teacher_settings,
            max_bootstrapped_demos=demos,
            max_labeled_demos=self.max_labeled_demos,
            max_rounds=self.max_rounds,
            max_errors=self.max_errors,
        )

    async def compile(
        self,
        student: Module,
        *,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        teacher: Module | None = None,
        labeled_sample: bool = True,
        run: OptimizationRun | None = None,
        **_: Any,
    ) -> Module:
        """The best of the candidate programs on `valset` (the trainset when None).

        Raises:
            OptimizerSettingsError: nothing to score on: no valset and an empty trainset
                (checked before any LM call).
        """
        from lmvisor.optimizers.executor import LocalExecutor

        train = as_examples(trainset)
        val = as_examples(valset, "valset") if valset else train
        if not val:
            raise OptimizerSettingsError(
                optimizer=self.name, setting="trainset", problem="is empty (and no valset given)"
            )
        run = run or OptimizationRun(executor=LocalExecutor(concurrency=self.concurrency))
        await run.begin(self.name)
        seeds = list(range(-3, self.num_candidate_programs))
        run.plan(len(seeds))

        async def one(seed: int) -> tuple[Module, Scored]:
            program = await self._candidate(run, seed, student, train, teacher, labeled_sample)
            scored = await scored_trial(
                run, f"random_search/eval/seed:{seed}", program, val, self.metric,
                iteration=seed + 3, candidate=f"seed {seed}",
            )  # fmt: skip
            return program, scored

        if self.stop_at_score is None:
            results = list(await gather_steps(*(one(seed) for seed in seeds)))
        else:
            results = []
            for seed in seeds:
                results.append(await one(seed))
                if results[-1][1].score >= self.stop_at_score:
                    break
        program = _select(seeds, results)
        run.finish()
        return program

    async def _candidate(
        self,
        run: OptimizationRun,
        seed: int,
        student: Module,
        trainset: list[Example],
        teacher: Module | None,
        labeled_sample: bool,
    ) -> Module:
        """Build the candidate of `seed` (see the module docstring)."""
        if seed == -3:
            return student.reset_copy()
        if seed == -2:
            return label_demos(
                student.reset_copy(), trainset, k=self.max_labeled_demos, sample=labeled_sample
            )
        shuffled = list(trainset)
        size = self.max_bootstrapped_demos
        if seed >= 0:
            random.Random(seed).shuffle(shuffled)
            size = random.Random(seed).randint(1, self.max_bootstrapped_demos)
        return await self._bootstrap(size).compile_in(
            run,
            student,
            shuffled,
            teacher=teacher,
            prefix=f"random_search/seed:{seed}",
            trials=False,
        )


def _select(seeds: list[int], results: list[tuple[Module, Scored]]) -> Module:
    best_index = 0
    for index, (_, scored) in enumerate(results):
        if scored.score > results[best_index][1].score:
            best_index = index
    best = results[best_index][0]
    data = [
        {"score": s.score, "subscores": list(s.scores), "seed": seeds[i], "program": p}
        for i, (p, s) in enumerate(results)
    ]
    best.candidate_programs = sorted(data, key=lambda d: d["score"], reverse=True)  # type: ignore[attr-defined]
    return best
