"""`LabeledFewShot`: give every predictor up to `k` training examples as demos (no LM calls)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, final

from lmvisor.optimizers._checks import count
from lmvisor.optimizers.teleprompter import Teleprompter, as_examples
from lmvisor.programs.example import Example
from lmvisor.programs.module import Module

__all__ = ["LabeledFewShot", "label_demos"]


def label_demos(program: Module, trainset: Sequence[Example], *, k: int, sample: bool) -> Module:
    """Set each predictor's demos of `program` in place: `k` sampled with `Random(0)` as DSPy
    does (or the first `k`); returns `program`."""
    if not trainset:
        return program
    rng = random.Random(0)
    count = min(k, len(trainset))
    for predictor in program.predictors():
        predictor.demos = rng.sample(list(trainset), count) if sample else list(trainset[:count])
    return program


@final
class LabeledFewShot(Teleprompter):
    """Demos straight from the labeled trainset.

    Args:
        k: the most demos per predictor.

    Raises:
        TypeError: k is not an int.
        ValueError: k < 0.
    """

    def __init__(self, k: int = 16) -> None:
        self.k = count("LabeledFewShot", "k", k, minimum=0)

    async def compile(
        self, student: Module, *, trainset: Sequence[Example], sample: bool = True, **_: Any
    ) -> Module:
        """A reset copy of `student` with `k` training examples as each predictor's demos."""
        return label_demos(student.reset_copy(), as_examples(trainset), k=self.k, sample=sample)
