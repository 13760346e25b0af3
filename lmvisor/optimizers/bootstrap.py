"""`BootstrapFewShot`: demos from the teacher's own successful runs on the trainset.

Steps, as in DSPy 3.4.1: prepare a reset student and a teacher (the student's copy with
`max_labeled_demos` labeled demos unless a compiled teacher is given); propose, by running
the teacher on training examples in order (each without itself among the demos; rounds
after the first at temperature 1.0) until `max_bootstrapped_demos` examples passed the
metric; evaluate each attempt with `metric(example, prediction, trace)`; select each
predictor's demos: its traces, then labeled examples sampled from the rest with
`Random(0)` up to `max_labeled_demos`.

Attempts run concurrently in waves no larger than the number of demos still missing, so
exactly the examples DSPy would try are tried (the same requests) in far less time. Each
attempt is a journaled step (and a trial when BootstrapFewShot runs alone).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

from lmvisor.optimizers import _step_values as step_values
from lmvisor.optimizers._checks import count, optional_count, optional_real
from lmvisor.optimizers._gather import gather_steps
from lmvisor.optimizers.errors import OptimizerSettingsError, TooManyErrors
from lmvisor.optimizers.evaluate import RowError, example_inputs
from lmvisor.optimizers.labeled_few_shot import label_demos
from lmvisor.optimizers.metric import Metric, call_metric, metric_name, metric_score
from lmvisor.optimizers.run import OptimizationRun
from lmvisor.optimizers.teleprompter import Teleprompter, as_examples, demo_dicts, demos_from
from lmvisor.programs.example import Example
from lmvisor.programs.module import Module
from lmvisor.programs.settings import context, current_settings
from lmvisor.programs.trace import TraceEntry, trace
from lmvisor.runtime.deadline import bound_timeout, deadline_expired
from lmvisor.runtime.errors import DeadlineExceeded

__all__ = ["BootstrapFewShot", "Bootstrapped"]

_DEFAULT_MAX_ERRORS = 10
_ROUND_TEMPERATURE = 1.0


@final
@dataclass(frozen=True, slots=True)
class Bootstrapped:
    """What bootstrapping found: demos per predictor name, and the examples left unused."""

    traces: Mapping[str, list[Example]]
    unused: list[Example]


@final
class BootstrapFewShot(Teleprompter):
    """Few-shot demos bootstrapped from a teacher.

    Args:
        metric: `metric(example, prediction, trace)`; None accepts every run.
        metric_threshold: a run passes when the metric is >= this (else when truthy).
        teacher_settings: program settings for the teacher's runs (`lm=...`, ...).
        max_bootstrapped_demos: the most bootstrapped demos per predictor.
        max_labeled_demos: the most demos per predictor in all (labeled fill the rest).
        max_rounds: attempts per example (later rounds at temperature 1.0).
        max_errors: failed runs after which compiling stops with `TooManyErrors`.
        teacher: the teacher program, or a pool of them used in turn (default: the student).
        concurrency: the local executor's bound when `compile` gets no run.

    Raises:
        TypeError: a count that is not an int, or a metric_threshold that is not a number.
        ValueError: a negative demo count, max_rounds / max_errors / concurrency < 1, or a
            metric_threshold that is NaN or infinite.
    """

    def __init__(
        self,
        metric: Metric | None = None,
        *,
        metric_threshold: float | None = None,
        teacher_settings: Mapping[str, Any] | None = None,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        max_rounds: int = 1,
        max_errors: int | None = None,
        teacher: Module | Sequence[Module] | None = None,
        concurrency: int = 64,
    ) -> None:
        owner = "BootstrapFewShot"
        self.metric = metric
        self.metric_threshold = optional_real(owner, "metric_threshold", metric_threshold)
        self.teacher_settings = dict(teacher_settings or {})
        self.max_bootstrapped_demos = count(
            owner, "max_bootstrapped_demos", max_bootstrapped_demos, minimum=0
        )
        self.max_labeled_demos = count(owner, "max_labeled_demos", max_labeled_demos, minimum=0)
        self.max_rounds = count(owner, "max_rounds", max_rounds, minimum=1)
        errors = optional_count(owner, "max_errors", max_errors, minimum=1)
        self.max_errors = errors if errors is not None else _DEFAULT_MAX_ERRORS
        self.teacher = teacher
        self.concurrency = count(owner, "concurrency", concurrency, minimum=1)

    async def compile(
        self,
        student: Module,
        *,
        trainset: Sequence[Example],
        teacher: Module | Sequence[Module] | None = None,
        run: OptimizationRun | None = None,
        **_: Any,
    ) -> Module:
        """A reset copy of `student` with bootstrapped and labeled demos.

        Raises:
            OptimizerSettingsError: the teacher's predictors do not match the student's.
            TooManyErrors: `max_errors` teacher runs (or metric calls) failed.
            DeadlineExceeded: the caller's deadline passed (the metric's calls included).
        """
        run = run or _local_run(self.concurrency)
        await run.begin(self.name)
        program = await self.compile_in(
            run, student, as_examples(trainset), teacher=teacher, prefix="bootstrap", trials=True
        )
        run.finish()
        return program

    async def compile_in(
        self,
        run: OptimizationRun,
        student: Module,
        trainset: list[Example],
        *,
        teacher: Module | Sequence[Module] | None,
        prefix: str,
        trials: bool,
    ) -> Module:
        """Compile inside an already begun run; steps are journaled under `prefix`."""
        program = student.reset_copy()
        teachers = self._teachers(student, teacher, trainset)
        names = [name for name, _ in program.named_predictors()]
        for pool_teacher in teachers:
            if [name for name, _ in pool_teacher.named_predictors()] != names:
                raise OptimizerSettingsError(
                    optimizer=self.name,
                    setting="teacher",
                    problem="must have the same predictors (by name) as the student",
                )
        if trials:
            run.plan(min(self.max_bootstrapped_demos, len(trainset)))
        found = await self._propose(run, trainset, teachers, names, prefix, trials)
        return self._select(program, found)

    def _teachers(
        self, student: Module, teacher: Module | Sequence[Module] | None, trainset: list[Example]
    ) -> list[Module]:
        chosen = teacher if teacher is not None else self.teacher
        pool = (
            [student]
            if chosen is None
            else [chosen]
            if isinstance(chosen, Module)
            else list(chosen)
        )
        if not pool:
            raise OptimizerSettingsError(
                optimizer=self.name, setting="teacher", problem="pool must not be empty"
            )
        ready = []
        for member in pool:
            copy = member.deepcopy()
            if self.max_labeled_demos and not getattr(copy, "_compiled", False):
                copy = label_demos(
                    copy.reset_copy(), trainset, k=self.max_labeled_demos, sample=True
                )
            ready.append(copy)
        return ready

    async def _propose(
        self,
        run: OptimizationRun,
        trainset: list[Example],
        teachers: list[Module],
        names: list[str],
        prefix: str,
        trials: bool,
    ) -> Bootstrapped:
        traces: dict[str, list[Example]] = {name: [] for name in names}
        passed: set[int] = set()
        errors: list[str] = []
        position = 0
        goal = self.max_bootstrapped_demos
        while position < len(trainset) and len(passed) < goal:
            wave = range(position, min(len(trainset), position + goal - len(passed)))
            outcomes = await gather_steps(
                *(
                    self._example(run, prefix, i, trainset[i], teachers[i % len(teachers)], trials)
                    for i in wave
                )
            )
            for index, outcome in zip(wave, outcomes, strict=True):
                errors.extend(f"example {index}: {e}" for e in outcome.get("errors", []))
                if outcome["success"]:
                    passed.add(index)
                    for name, demos in outcome["demos"].items():
                        traces[name].extend(demos_from(demos))
            if len(errors) >= self.max_errors:
                raise TooManyErrors(errors=len(errors), max_errors=self.max_errors, causes=errors)
            position = wave.stop
        unused = [ex for i, ex in enumerate(trainset) if i not in passed]
        random.Random(0).shuffle(unused)
        return Bootstrapped(traces=traces, unused=unused)

    async def _example(
        self,
        run: OptimizationRun,
        prefix: str,
        index: int,
        example: Example,
        teacher: Module,
        trials: bool,
    ) -> dict[str, Any]:
        """Try one example for up to `max_rounds` rounds; the merged outcome."""
        errors: list[str] = []
        for round_index in range(self.max_rounds):
            key = f"{prefix}/example:{index}/round:{round_index}"
            replayed = run.replaying(key)
            started = time.monotonic()
            outcome = await run.step(
                key,
                functools.partial(self._attempt, run, example, teacher, round_index),
                step_values.attempt,
            )
            if trials:
                run.report(
                    iteration=index * self.max_rounds + round_index,
                    candidate=f"example {index} round {round_index}",
                    score=float(outcome["score"]),
                    metric=metric_name(self.metric) if self.metric else "none",
                    duration=time.monotonic() - started,
                    replayed=replayed,
                )
            if outcome["error"] is not None:
                errors.append(outcome["error"])
            if outcome["success"]:
                return {**outcome, "errors": errors}
        return {"success": False, "demos": {}, "errors": errors}

    async def _attempt(
        self, run: OptimizationRun, example: Example, teacher: Module, round_index: int
    ) -> dict[str, Any]:
        """One teacher run on `example` (JSON-ready: success, score, demos, error)."""
        copy = teacher.deepcopy()
        named = copy.named_predictors()
        for _, predictor in named:
            predictor.demos = [d for d in predictor.demos if d != example]
        names = {id(predictor): name for name, predictor in named}
        overrides = dict(self.teacher_settings)
        if round_index > 0:
            params = dict(overrides.get("lm_params") or current_settings().lm_params)
            overrides["lm_params"] = {**params, "temperature": _ROUND_TEMPERATURE}
        try:
            # The caller's deadline bounds the metric too: an async metric that never
            # returns would otherwise hold the compile past it forever.
            async with asyncio.timeout(bound_timeout(None)):
                with context(**overrides), trace() as entries:
                    prediction = await run.executor.run(lambda: copy(**example_inputs(example)))
                steps = [(e.predictor, e.inputs, e.prediction) for e in entries]
                metric, score = self.metric, 1.0
                if metric is not None:
                    value = await call_metric(metric, example, prediction, steps)
                    # None fails the attempt, as in DSPy (a metric that returns nothing on a
                    # wrong answer is common); NaN, text and huge ints raise instead.
                    if value is None:
                        score = 0.0
                    else:
                        score = metric_score(value, metric=metric_name(metric))
            # As DSPy: the threshold when one is set (0 and None alike mean none), else
            # truthiness; a value that is no number (NaN, text) failed above instead.
            success = score >= self.metric_threshold if self.metric_threshold else score != 0.0
            demos = _demos_by_predictor(entries, names) if success else {}
        except Exception as exc:
            if deadline_expired():  # the caller's time is up: the compile ends, not the example
                raise DeadlineExceeded(operation=f"{self.name} compile") from None
            return {"success": False, "score": 0.0, "demos": {}, "error": str(RowError.of(exc))}
        return {"success": success, "score": score, "demos": demos, "error": None}

    def _select(self, program: Module, found: Bootstrapped) -> Module:
        rng = random.Random(0)
        for name, predictor in program.named_predictors():
            augmented = found.traces.get(name, [])[: self.max_bootstrapped_demos]
            size = max(0, min(self.max_labeled_demos - len(augmented), len(found.unused)))
            predictor.demos = [*augmented, *rng.sample(found.unused, size)]
        program._compiled = True  # type: ignore[attr-defined]
        return program


def _demos_by_predictor(
    entries: Sequence[TraceEntry], names: Mapping[int, str]
) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[Example]] = {}
    for entry in entries:
        name = names.get(id(entry.predictor))
        if name is None:
            continue
        # A dict, not keywords: an unmarked example passes its label as an input too, and
        # the prediction's field of that name is the demo's.
        demo = Example({**entry.inputs, **entry.prediction.to_dict(), "augmented": True})
        grouped.setdefault(name, []).append(demo)
    chosen: dict[str, list[dict[str, Any]]] = {}
    for name, demos in grouped.items():
        if len(demos) > 1:
            # One call per predictor per example, as DSPy: an earlier one or the last, by coin.
            digest = hashlib.blake2b(
                json.dumps(demo_dicts(demos), sort_keys=True, default=str).encode(), digest_size=8
            ).hexdigest()
            rng = random.Random(int(digest, 16))
            demos = [rng.choice(demos[:-1]) if rng.random() < 0.5 else demos[-1]]
        chosen[name] = demo_dicts(demos)
    return chosen


def _local_run(concurrency: int) -> OptimizationRun:
    from lmvisor.optimizers.executor import LocalExecutor

    return OptimizationRun(executor=LocalExecutor(concurrency=concurrency))
