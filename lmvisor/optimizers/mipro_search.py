"""MIPROv2's select step: Bayesian search (optuna's TPE) over instruction and demo-set choices.

As in DSPy 3.4.1: the default program's full score seeds the study; each trial picks, per
predictor, an instruction index and (unless zero-shot) a demo-set index, and scores the
candidate on the valset, or on a minibatch drawn from the run's RNG with full evaluations
of the best-averaging untried combination every `full_eval_steps` trials (and at the end).

The study lives only in memory: a resumed run replays the trial log into a fresh study.
TPE's sampler is seeded, so the same history asks the same parameters, and the journal
gives back each recorded score without evaluating it again. While TPE is still in its
random start-up phase, its suggestions do not depend on earlier scores, so those trials
are asked together and evaluated at once (the parameters are the same as one at a time).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, final

from lmvisor.optimizers._gather import gather_steps
from lmvisor.optimizers.errors import TooManyErrors
from lmvisor.optimizers.metric import Metric
from lmvisor.optimizers.run import OptimizationRun
from lmvisor.optimizers.teleprompter import scored_trial
from lmvisor.programs.example import Example
from lmvisor.programs.module import Module

__all__ = [
    "SearchOutcome",
    "SearchSpace",
    "create_minibatch",
    "import_optuna",
    "planned_trials",
    "search",
]

_STARTUP_TRIALS = 10  # optuna's TPESampler default, named here so batching can rely on it


def import_optuna() -> Any:
    """The optuna module.

    Raises:
        ImportError: optuna is not installed (`pip install 'lmvisor[optuna]'`).
    """
    try:
        import optuna
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "MIPROv2 needs optuna: install it with `pip install 'lmvisor[optuna]'`"
        ) from exc
    return optuna


def create_minibatch(items: Sequence[Example], size: int, rng: random.Random) -> list[Example]:
    """`size` items (at most all) sampled with `rng`, as DSPy's `create_minibatch`."""
    size = min(size, len(items))
    return [items[i] for i in rng.sample(range(len(items)), size)]


@final
@dataclass(frozen=True, slots=True)
class SearchSpace:
    """The candidates: instructions (and demo sets, None when zero-shot) per predictor."""

    instructions: Sequence[Sequence[str]]
    demos: Sequence[Sequence[Sequence[Example]]] | None

    def distributions(self) -> dict[str, Any]:
        optuna = import_optuna()
        categorical = optuna.distributions.CategoricalDistribution
        found: dict[str, Any] = {}
        for i, options in enumerate(self.instructions):
            found[f"{i}_predictor_instruction"] = categorical(tuple(range(len(options))))
            if self.demos:
                found[f"{i}_predictor_demos"] = categorical(tuple(range(len(self.demos[i]))))
        return found


@final
@dataclass(slots=True)
class SearchOutcome:
    """The best fully scored program, its score, and every scored candidate."""

    best: Module
    best_score: float
    scored: list[dict[str, Any]] = field(default_factory=list)


@final
@dataclass(frozen=True, slots=True)
class _Pick:
    trial: Any
    program: Module
    labels: tuple[str, ...]
    params: dict[str, int]
    devset: list[Example]

    @property
    def key(self) -> str:
        return ",".join(self.labels)


class _Search:
    """One search's state (the objective closure of DSPy, as an object)."""

    def __init__(
        self,
        run: OptimizationRun,
        program: Module,
        space: SearchSpace,
        valset: list[Example],
        metric: Metric,
        *,
        minibatch: bool,
        minibatch_size: int,
        full_eval_steps: int,
        rng: random.Random,
    ) -> None:
        self.run, self.program, self.space, self.valset = run, program, space, valset
        self.metric, self.minibatch, self.rng = metric, minibatch, rng
        self.minibatch_size, self.full_eval_steps = minibatch_size, full_eval_steps
        self.by_params: dict[str, list[tuple[float, Module, dict[str, int]]]] = {}
        self.fully_scored: dict[str, float] = {}

    def pick(self, trial: Any) -> _Pick:
        candidate = self.program.deepcopy()
        labels: list[str] = []
        params: dict[str, int] = {}
        for i, predictor in enumerate(candidate.predictors()):
            name = f"{i}_predictor_instruction"
            index = trial.suggest_categorical(name, tuple(range(len(self.space.instructions[i]))))
            predictor.signature = predictor.signature.with_instructions(
                self.space.instructions[i][index]
            )
            labels.append(f"Predictor {i}: Instruction {index}")
            params[name] = index
            if self.space.demos:
                name = f"{i}_predictor_demos"
                index = trial.suggest_categorical(name, tuple(range(len(self.space.demos[i]))))
                predictor.demos = list(self.space.demos[i][index])
                labels.append(f"Predictor {i}: Few-Shot Set {index}")
                params[name] = index
        devset = (
            create_minibatch(self.valset, self.minibatch_size, self.rng)
            if self.minibatch
            else self.valset
        )
        return _Pick(trial, candidate, tuple(labels), params, devset)

    async def score(
        self, key: str, program: Module, devset: list[Example], iteration: int
    ) -> float:
        kind = "full" if len(devset) >= len(self.valset) else "minibatch"
        try:
            scored = await scored_trial(
                self.run, key, program, devset, self.metric,
                iteration=iteration, candidate=f"trial {iteration} ({kind})",
            )  # fmt: skip
        except TooManyErrors:
            return 0.0  # DSPy scores a candidate whose evaluation fails at zero
        return scored.score

    async def score_pick(self, pick: _Pick) -> float:
        """A trial's score on its devset (journaled under its number and choices)."""
        number = pick.trial.number + 1
        key = f"mipro/trial:{number}/{pick.key}"
        return await self.score(key, pick.program, pick.devset, number)

    async def full_evaluation(self, study: Any, trial_num: int) -> tuple[float, Module] | None:
        ranked = sorted(
            (
                (sum(s for s, _, _ in v) / len(v), k, v[0][1], v[0][2])
                for k, v in self.by_params.items()
            ),
            key=lambda item: item[0],
            reverse=True,
        )
        for _, key, program, params in ranked:
            if key in self.fully_scored:
                continue
            score = await self.score(
                f"mipro/full:{trial_num + 1}/{key}", program, self.valset, trial_num + 1
            )
            self.fully_scored[key] = score
            optuna = import_optuna()
            study.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions=self.space.distributions(), value=score
                )
            )
            return score, program
        return None


async def search(
    run: OptimizationRun,
    program: Module,
    space: SearchSpace,
    valset: list[Example],
    metric: Metric,
    *,
    default_score: float,
    num_trials: int,
    minibatch: bool,
    minibatch_size: int,
    full_eval_steps: int,
    seed: int,
    rng: random.Random,
) -> SearchOutcome:
    """Run the search (see the module docstring); `default_score` is the default program's."""
    study = _study(space, seed, default_score)
    state = _Search(
        run, program, space, valset, metric, minibatch=minibatch, minibatch_size=minibatch_size,
        full_eval_steps=full_eval_steps, rng=rng,
    )  # fmt: skip
    outcome = SearchOutcome(best=program.deepcopy(), best_score=default_score)
    outcome.scored.append(
        {"score": default_score, "program": program.deepcopy(), "full_eval": True}
    )
    adjusted = _adjusted_trials(num_trials, minibatch, full_eval_steps)
    done = 0
    while done < num_trials:
        batch = (
            1 if minibatch else max(1, min(num_trials - done, _STARTUP_TRIALS - len(study.trials)))
        )
        picks = [state.pick(study.ask()) for _ in range(batch)]
        scores = await gather_steps(*(state.score_pick(p) for p in picks))
        for pick, score in zip(picks, scores, strict=True):
            await _record(state, study, outcome, pick, score, adjusted)
        done += batch
    return outcome


def _study(space: SearchSpace, seed: int, default_score: float) -> Any:
    """A seeded TPE study holding the default program (every index 0) at `default_score`."""
    optuna = import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=seed, multivariate=True, n_startup_trials=_STARTUP_TRIALS
        )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    default_params = {name: 0 for name in space.distributions()}
    study.add_trial(
        optuna.trial.create_trial(
            params=default_params, distributions=space.distributions(), value=default_score
        )
    )
    return study


async def _record(
    state: _Search, study: Any, outcome: SearchOutcome, pick: _Pick, score: float, adjusted: int
) -> None:
    study.tell(pick.trial, score)
    full = len(pick.devset) >= len(state.valset)
    if not state.minibatch and score > outcome.best_score:
        outcome.best_score, outcome.best = score, pick.program.deepcopy()
    outcome.scored.append({"score": score, "program": pick.program, "full_eval": full})
    state.by_params.setdefault(pick.key, []).append((score, pick.program, pick.params))
    trial_num = pick.trial.number + 1
    due = trial_num % (state.full_eval_steps + 1) == 0 or trial_num == adjusted - 1
    if state.minibatch and due:
        found = await state.full_evaluation(study, trial_num)
        if found is not None:
            score, program = found
            outcome.scored.append({"score": score, "program": program, "full_eval": True})
            if score > outcome.best_score:
                outcome.best_score, outcome.best = score, program.deepcopy()


def _adjusted_trials(num_trials: int, minibatch: bool, steps: int) -> int:
    if not minibatch:
        return num_trials
    extra_at_end = 1 if num_trials % steps != 0 else 0
    return num_trials + num_trials // steps + 1 + extra_at_end


def planned_trials(num_trials: int, minibatch: bool, steps: int) -> int:
    """Trials a search will score, the default program's included."""
    return _adjusted_trials(num_trials, minibatch, steps) if minibatch else num_trials + 1
