"""`MIPROv2`: instruction proposals, bootstrapped demo sets and a Bayesian search over both.

Steps, as in DSPy 3.4.1 (same RNG draws in the same order, so the same demo sets, tips and
minibatches for the same seed, and the same request count):

1. settings: `auto` ("light", "medium", "heavy") fixes the candidate count, the valset size
   and the number of trials (`max(2·vars·log2(n), 1.5·n)`); without `auto`, both
   `num_candidates` and `num_trials` are given;
2. propose demo sets: zero-shot, labeled only, BootstrapFewShot in order, then shuffled
   BootstrapFewShots of random size (built concurrently here);
3. propose instructions (`_mipro_instructions`): a dataset summary, then one grounded
   instruction per demo set up to the candidate count (concurrently); index 0 is the
   program's own instruction;
4. evaluate the default program on the valset, then select by `mipro_search.search`.

The summary and the default program's evaluation run alongside the bootstraps, since
neither depends on them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, final

from lmvisor.optimizers._checks import count, optional_count, optional_real, real
from lmvisor.optimizers._gather import gather_steps
from lmvisor.optimizers._mipro_instructions import InstructionProposer, ProposerFlags
from lmvisor.optimizers.bootstrap import BootstrapFewShot
from lmvisor.optimizers.errors import OptimizerSettingsError
from lmvisor.optimizers.labeled_few_shot import label_demos
from lmvisor.optimizers.metric import Metric
from lmvisor.optimizers.mipro_search import (
    SearchOutcome,
    SearchSpace,
    create_minibatch,
    import_optuna,
    planned_trials,
    search,
)
from lmvisor.optimizers.run import OptimizationRun
from lmvisor.optimizers.teleprompter import Teleprompter, as_examples, scored_trial
from lmvisor.programs.example import Example
from lmvisor.programs.lm import LM
from lmvisor.programs.module import Module
from lmvisor.programs.settings import context

__all__ = ["AUTO_RUN_SETTINGS", "MIPROv2"]

AUTO_RUN_SETTINGS: Mapping[str, Mapping[str, int]] = {
    "light": {"n": 6, "val_size": 100},
    "medium": {"n": 12, "val_size": 300},
    "heavy": {"n": 18, "val_size": 1000},
}
"""Per `auto` level: candidates `n` and the valset size sampled."""

_MIN_MINIBATCH = 50
_ZERO_SHOT_BOOTSTRAPS = 3


@final
@dataclass(frozen=True, slots=True)
class _Settings:
    trainset: list[Example]
    valset: list[Example]
    num_trials: int
    minibatch: bool
    instructions: int
    demo_sets: int
    zero_shot: bool
    max_bootstrapped: int
    max_labeled: int


@final
@dataclass(frozen=True, slots=True)
class _SearchOptions:
    minibatch_size: int
    full_eval_steps: int
    seed: int


@final
class MIPROv2(Teleprompter):
    """Multi-prompt instruction and demo optimization (see the module docstring).

    Args:
        metric: scores candidates and filters bootstrapped traces.
        prompt_model: writes summaries and instructions (default: the settings' LM).
        task_model: runs the program (default: the settings' LM).
        teacher_settings, metric_threshold, max_errors: as for `BootstrapFewShot`.
        max_bootstrapped_demos, max_labeled_demos: demo budget per predictor.
        auto: "light", "medium", "heavy" or None (then give `num_candidates` and `num_trials`).
        num_candidates: instruction and demo-set candidates when `auto` is None.
        seed: seeds the RNG and the TPE sampler.
        init_temperature: the proposals' temperature.
        concurrency: the local executor's bound when `compile` gets no run.

    Raises:
        TypeError: a count or the seed is not an int, or init_temperature / metric_threshold
            not a number.
        ValueError: an unknown `auto`, `num_candidates` given with `auto`, a negative demo
            count, no bootstrapped demos while labeled ones are asked for (each shuffled
            demo set draws 1..max_bootstrapped_demos), num_candidates, max_errors or
            concurrency < 1, a seed outside 0..2**32-1 (the TPE sampler's range), or a
            NaN or infinite number.
    """

    def __init__(
        self,
        metric: Metric,
        *,
        prompt_model: LM | None = None,
        task_model: LM | None = None,
        teacher_settings: Mapping[str, Any] | None = None,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 4,
        auto: Literal["light", "medium", "heavy"] | None = "light",
        num_candidates: int | None = None,
        max_errors: int | None = None,
        seed: int = 9,
        init_temperature: float = 1.0,
        metric_threshold: float | None = None,
        concurrency: int = 64,
    ) -> None:
        if auto not in (None, *AUTO_RUN_SETTINGS):
            raise ValueError(
                f"MIPROv2.auto must be 'light', 'medium', 'heavy' or None, got {auto!r}"
            )
        if auto is not None and num_candidates is not None:
            raise ValueError("MIPROv2: num_candidates cannot be set together with auto")
        _check_counts(max_bootstrapped_demos, max_labeled_demos, num_candidates, max_errors)
        count("MIPROv2", "concurrency", concurrency, minimum=1)
        _check_seed("seed", seed)
        real("MIPROv2", "init_temperature", init_temperature)
        optional_real("MIPROv2", "metric_threshold", metric_threshold)
        self.metric = metric
        self.prompt_model = prompt_model
        self.task_model = task_model
        self.teacher_settings = dict(teacher_settings or {})
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.auto = auto
        self.num_candidates = num_candidates
        self.max_errors = max_errors
        self.seed = seed
        self.init_temperature = init_temperature
        self.metric_threshold = metric_threshold
        self.concurrency = concurrency

    async def compile(
        self,
        student: Module,
        *,
        trainset: Sequence[Example],
        teacher: Module | None = None,
        valset: Sequence[Example] | None = None,
        num_trials: int | None = None,
        seed: int | None = None,
        minibatch: bool = True,
        minibatch_size: int = 35,
        minibatch_full_eval_steps: int = 5,
        program_aware_proposer: bool = True,
        data_aware_proposer: bool = True,
        view_data_batch_size: int = 10,
        tip_aware_proposer: bool = True,
        fewshot_aware_proposer: bool = True,
        run: OptimizationRun | None = None,
        **_: Any,
    ) -> Module:
        """The best program found (with `score` and `candidate_programs` attached).

        Raises:
            TypeError: seed, num_trials or a batch size is not an int.
            ValueError: seed outside 0..2**32-1, or num_trials / a batch size < 1.
            OptimizerSettingsError: the datasets or trial settings cannot work.
            ImportError: optuna is not installed.
            TooManyErrors: bootstrapping hit `max_errors`.
        """
        # None, not any falsy seed, means "the constructor's": seed=0 is a seed.
        seed = self.seed if seed is None else _check_seed("compile seed", seed)
        optional_count("MIPROv2", "num_trials", num_trials, minimum=1)
        count("MIPROv2", "minibatch_size", minibatch_size, minimum=1)
        count("MIPROv2", "minibatch_full_eval_steps", minibatch_full_eval_steps, minimum=1)
        count("MIPROv2", "view_data_batch_size", view_data_batch_size, minimum=1)
        optuna_import = _import_optuna_aside()
        run = await self._begin(run)
        rng = random.Random(seed)
        program = student.deepcopy()
        plan = self._settings(program, as_examples(trainset), valset, num_trials, minibatch, rng)
        search_options = _SearchOptions(minibatch_size, minibatch_full_eval_steps, seed)
        self._check_minibatch(plan, search_options)
        run.plan(planned_trials(plan.num_trials, plan.minibatch, minibatch_full_eval_steps))
        flags = ProposerFlags(
            program_aware=program_aware_proposer, data_aware=data_aware_proposer,
            tip_aware=tip_aware_proposer, fewshot_aware=fewshot_aware_proposer,
            view_data_batch_size=view_data_batch_size,
        )  # fmt: skip
        space, default_score = await self._propose(run, program, plan, rng, teacher, flags)
        await optuna_import
        outcome = await self._select(run, program, plan, space, default_score, search_options, rng)
        run.finish()
        return _annotated(outcome)

    async def _begin(self, run: OptimizationRun | None) -> OptimizationRun:
        from lmvisor.optimizers.executor import LocalExecutor

        run = run or OptimizationRun(executor=LocalExecutor(concurrency=self.concurrency))
        await run.begin(self.name)
        return run

    # --- steps 2 and 3: propose demo sets and instructions (with step 4's default score) ---

    async def _propose(
        self,
        run: OptimizationRun,
        program: Module,
        plan: _Settings,
        rng: random.Random,
        teacher: Module | None,
        flags: ProposerFlags,
    ) -> tuple[SearchSpace, float]:
        """The search space and the default program's score.

        The summary and the default program's evaluation run alongside the bootstraps; the
        RNG is drawn for the demo sets first, then for the instruction proposals.
        """
        proposer = InstructionProposer(
            run, prompt_model=self.prompt_model, temperature=self.init_temperature, flags=flags
        )
        demo_plans = self._bootstrap_plan(plan, rng)
        summary_task = asyncio.ensure_future(proposer.summary(plan.trainset))
        default_task = asyncio.ensure_future(self._default_score(run, program, plan.valset))
        try:
            demos = await self._demo_sets(run, program, plan, demo_plans, teacher)
            summary = await summary_task
            instructions = await proposer.instructions(
                program, demos, summary, rng, wanted=plan.instructions
            )
            default_score = await default_task
        finally:
            for task in (summary_task, default_task):
                task.cancel()
        return SearchSpace(instructions, None if plan.zero_shot else demos), default_score

    # --- step 4: select ---------------------------------------------------------------------

    async def _select(
        self,
        run: OptimizationRun,
        program: Module,
        plan: _Settings,
        space: SearchSpace,
        default_score: float,
        options: _SearchOptions,
        rng: random.Random,
    ) -> SearchOutcome:
        with context(**self._task_lm()):
            return await search(
                run, program, space, plan.valset, self.metric,
                default_score=default_score, num_trials=plan.num_trials,
                minibatch=plan.minibatch, minibatch_size=options.minibatch_size,
                full_eval_steps=options.full_eval_steps, seed=options.seed, rng=rng,
            )  # fmt: skip

    # --- settings ---------------------------------------------------------------------

    def _settings(
        self,
        program: Module,
        trainset: list[Example],
        valset: Sequence[Example] | None,
        num_trials: int | None,
        minibatch: bool,
        rng: random.Random,
    ) -> _Settings:
        train, val = self._split(trainset, valset)
        zero_shot = self.max_bootstrapped_demos == 0 and self.max_labeled_demos == 0
        variables = len(program.predictors()) * (1 if zero_shot else 2)
        if self.auto is None:
            if self.num_candidates is None or num_trials is None:
                raise OptimizerSettingsError(
                    optimizer=self.name,
                    setting="num_candidates",
                    problem="and num_trials are both required when auto is None",
                )
            return _Settings(
                train, val, num_trials, minibatch, self.num_candidates, self.num_candidates,
                zero_shot, self.max_bootstrapped_demos, self.max_labeled_demos,
            )  # fmt: skip
        if num_trials is not None:
            raise OptimizerSettingsError(
                optimizer=self.name,
                setting="num_trials",
                problem="cannot be set together with auto",
            )
        auto = AUTO_RUN_SETTINGS[self.auto]
        val = create_minibatch(val, auto["val_size"], rng)
        n = auto["n"]
        trials = int(max(2 * variables * math.log2(n), 1.5 * n))
        return _Settings(
            train, val, trials, len(val) > _MIN_MINIBATCH, n if zero_shot else int(n * 0.5), n,
            zero_shot, self.max_bootstrapped_demos, self.max_labeled_demos,
        )  # fmt: skip

    def _check_minibatch(self, plan: _Settings, options: _SearchOptions) -> None:
        if plan.minibatch and options.minibatch_size > len(plan.valset):
            raise OptimizerSettingsError(
                optimizer=self.name,
                setting="minibatch_size",
                problem=f"cannot exceed the valset size ({len(plan.valset)})",
            )

    def _split(
        self, trainset: list[Example], valset: Sequence[Example] | None
    ) -> tuple[list[Example], list[Example]]:
        if not trainset:
            raise OptimizerSettingsError(
                optimizer=self.name, setting="trainset", problem="is empty"
            )
        if valset is not None:
            if not valset:
                raise OptimizerSettingsError(
                    optimizer=self.name, setting="valset", problem="is empty"
                )
            return trainset, as_examples(valset, "valset")
        if len(trainset) < 2:
            raise OptimizerSettingsError(
                optimizer=self.name,
                setting="trainset",
                problem="needs at least 2 examples when no valset is given",
            )
        size = min(1000, max(1, int(len(trainset) * 0.80)))
        cut = len(trainset) - size
        return trainset[:cut], trainset[cut:]

    def _task_lm(self) -> dict[str, Any]:
        return {} if self.task_model is None else {"lm": self.task_model}

    # --- step 2: demo sets -----------------------------------------------------------------

    def _bootstrap_plan(
        self, plan: _Settings, rng: random.Random
    ) -> list[tuple[int, list[Example], int]]:
        """(seed, trainset order, bootstrapped demos) per demo set, drawing `rng` as DSPy does."""
        max_boot = _ZERO_SHOT_BOOTSTRAPS if plan.zero_shot else plan.max_bootstrapped
        labeled = 0 if plan.zero_shot else plan.max_labeled
        plans = []
        for seed in range(-3, plan.demo_sets - 3):
            order = list(plan.trainset)
            if seed == -3 or (seed == -2 and labeled > 0) or seed == -1:
                plans.append((seed, order, max_boot))
                continue
            rng.shuffle(order)
            plans.append((seed, order, rng.randint(1, max_boot)))
        return plans

    async def _demo_sets(
        self,
        run: OptimizationRun,
        program: Module,
        plan: _Settings,
        plans: list[tuple[int, list[Example], int]],
        teacher: Module | None,
    ) -> list[list[list[Example]]]:
        labeled = 0 if plan.zero_shot else plan.max_labeled

        async def build(seed: int, order: list[Example], size: int) -> Module:
            if seed == -3:
                return program.reset_copy()
            if seed == -2 and labeled > 0:
                return label_demos(program.reset_copy(), order, k=labeled, sample=True)
            bootstrap = BootstrapFewShot(
                self.metric, metric_threshold=self.metric_threshold,
                teacher_settings=self.teacher_settings, max_bootstrapped_demos=size,
                max_labeled_demos=labeled, max_errors=self.max_errors,
            )  # fmt: skip
            with context(**self._task_lm()):
                return await bootstrap.compile_in(
                    run, program, order, teacher=teacher, prefix=f"mipro/demos:{seed}", trials=False
                )

        built = await gather_steps(*(build(*p) for p in plans))
        count = len(program.predictors())
        return [[list(b.predictors()[i].demos) for b in built] for i in range(count)]

    # --- step 4: the default program --------------------------------------------------------

    async def _default_score(
        self, run: OptimizationRun, program: Module, valset: list[Example]
    ) -> float:
        # A failing default program scores 0, as in DSPy; a refused checkpoint write does
        # not (it restarts the job's worker), nor does a damaged checkpoint.
        with context(**self._task_lm()):
            scored = await scored_trial(
                run, "mipro/default", program, valset, self.metric,
                iteration=1, candidate="default program", failed_score=0.0,
            )  # fmt: skip
        return scored.score


def _annotated(outcome: SearchOutcome) -> Module:
    """The best program, with its score and the ranked candidates attached as DSPy does."""
    best = outcome.best
    ranked = sorted(outcome.scored, key=lambda d: d["score"], reverse=True)
    best.score = outcome.best_score  # type: ignore[attr-defined]
    best.candidate_programs = [d for d in ranked if d["full_eval"]]  # type: ignore[attr-defined]
    best.mb_candidate_programs = [d for d in ranked if not d["full_eval"]]  # type: ignore[attr-defined]
    return best


def _import_optuna_aside() -> asyncio.Future[Any]:
    """optuna, imported on a worker thread while the propose step's LM rounds run.

    Importing optuna (and numpy) takes ~0.2 s of module bodies, a fifth of a light run;
    only the select step needs it. Whether it is installed is checked at once, before any
    LM call is paid for.

    Raises:
        ImportError: optuna is not installed (`pip install 'lmvisor[optuna]'`).
    """
    if importlib.util.find_spec("optuna") is None:
        import_optuna()  # raises the ImportError that names the extra
    future = asyncio.get_running_loop().run_in_executor(None, import_optuna)
    # A compile that fails before the select step never awaits it: retrieve its outcome.
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    return future


_MAX_SEED = 2**32 - 1


def _check_seed(name: str, seed: Any) -> int:
    """A seed both `random.Random` and optuna's TPE sampler (numpy) accept."""
    count("MIPROv2", name, seed, minimum=0)
    if seed > _MAX_SEED:
        raise ValueError(f"MIPROv2.{name} must be <= {_MAX_SEED}, got {seed!r}")
    return int(seed)


def _check_counts(bootstrapped: Any, labeled: Any, candidates: Any, max_errors: Any) -> None:
    count("MIPROv2", "max_bootstrapped_demos", bootstrapped, minimum=0)
    count("MIPROv2", "max_labeled_demos", labeled, minimum=0)
    optional_count("MIPROv2", "num_candidates", candidates, minimum=1)
    optional_count("MIPROv2", "max_errors", max_errors, minimum=1)
    if bootstrapped == 0 and labeled > 0:
        raise ValueError(
            "MIPROv2.max_bootstrapped_demos must be >= 1 when max_labeled_demos > 0 "
            "(each shuffled demo set draws 1..max_bootstrapped_demos demos), got 0"
        )
