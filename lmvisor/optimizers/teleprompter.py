"""What every optimizer shares: the `Teleprompter` base, scored trials, and demo helpers.

An optimizer's `compile()` is split into named steps (propose, evaluate, select) that run
inside an `OptimizationRun`; `scored_trial` is the evaluate step: it journals a candidate's
score under a key and reports it as a trial, so a resumed run replays it instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

from lmvisor.optimizers._checks import example_list
from lmvisor.optimizers._step_values import number
from lmvisor.optimizers.metric import Metric, metric_name
from lmvisor.optimizers.run import OptimizationRun
from lmvisor.programs.example import Example
from lmvisor.programs.module import Module

__all__ = ["Scored", "Teleprompter", "as_examples", "demo_dicts", "demos_from", "scored_trial"]


class Teleprompter:
    """Base of the optimizers: `await optimizer.compile(student, trainset=...)`.

    Subclasses implement `compile`, returning a new Module (the student is not changed).
    """

    @property
    def name(self) -> str:
        """The optimizer's name in events and metrics (its class name)."""
        return type(self).__name__

    async def compile(
        self, student: Module, *, trainset: Sequence[Example], **kwargs: Any
    ) -> Module:
        """Optimize a copy of `student` on `trainset`; subclasses override this."""
        raise TypeError(f"{self.name} must implement async def compile(...)")


@final
@dataclass(frozen=True, slots=True)
class Scored:
    """A candidate's evaluation: the DSPy percentage score and each example's score."""

    score: float
    scores: tuple[float, ...]


async def scored_trial(
    run: OptimizationRun,
    key: str,
    program: Module,
    devset: Sequence[Example],
    metric: Metric,
    *,
    iteration: int,
    candidate: str,
    failed_score: float | None = None,
) -> Scored:
    """Evaluate `program` through the run's executor as one trial (journaled under `key`).

    With `failed_score`, an evaluation that raises scores that (recorded like any score,
    so a resumed run replays it); a failure of the journal itself (a refused write, a
    damaged row) still propagates.

    Raises:
        TooManyErrors: the evaluation hit the executor's `max_errors` (no `failed_score`).
    """
    replayed = run.replaying(key)
    started = time.monotonic()

    async def evaluate() -> dict[str, Any]:
        try:
            result = await run.executor.evaluate(program, devset, metric)
        except Exception:
            if failed_score is None:
                raise
            return {"score": failed_score, "scores": []}
        return {"score": result.score, "scores": result.scores}

    scored: Scored = await run.step(key, evaluate, _scored)
    run.report(
        iteration=iteration,
        candidate=candidate,
        score=scored.score,
        metric=metric_name(metric),
        duration=time.monotonic() - started,
        replayed=replayed,
    )
    return scored


def _scored(value: Any) -> Scored:
    """An evaluate step's `{"score", "scores"}`, checked (it may come from a checkpoint)."""
    if not isinstance(value, Mapping) or not isinstance(value["scores"], list):
        raise TypeError("expected {'score': number, 'scores': [number]}")
    return Scored(number(value["score"]), tuple(number(s) for s in value["scores"]))


def as_examples(
    items: Sequence[Example | Mapping[str, Any]], what: str = "trainset"
) -> list[Example]:
    """Examples from Examples or mappings (a mapping keeps no input marks).

    Raises:
        TypeError: `items` is not a sequence (a string is not one here), or an item is
            neither an Example nor a mapping; `what` names the data set in the message.
    """
    return example_list(items, what)


def demo_dicts(demos: Sequence[Any]) -> list[dict[str, Any]]:
    """Demos as JSON-ready dicts (what checkpoints hold)."""
    return [d.to_dict() if isinstance(d, Example) else Example(d).to_dict() for d in demos]


def demos_from(data: Sequence[Mapping[str, Any]]) -> list[Example]:
    """Demos rebuilt from `demo_dicts` output."""
    return [Example(d) for d in data]
