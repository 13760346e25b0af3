"""`BestOfN` and `Refine`: run a module several times and keep the best-rewarded result;
Refine also asks the LM for feedback on each failed attempt and hands it to the next.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from lmvisor.programs._hints import hint_var
from lmvisor.programs.adapters._values import serialize_for_json
from lmvisor.programs.callbacks import Callback
from lmvisor.programs.example import Prediction
from lmvisor.programs.module import Module
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context, current_settings

__all__ = ["BestOfN", "Refine", "RewardFn"]

RewardFn = Callable[[dict[str, Any], Prediction], float | Awaitable[float]]
"""Scores a prediction given the inputs; sync or async."""

_FEEDBACK_INSTRUCTIONS = (
    "A program was run on some inputs and its outputs scored below the target reward. "
    "Give short, concrete advice the program can follow on its next attempt to score "
    "higher."
)


class BestOfN(Module):
    """Run `module` up to `n` times (temperature 1.0); stop at the first reward >= threshold.

    Returns the best-rewarded prediction. Failed attempts are counted; at `fail_count`
    failures the last error is raised.

    Args:
        module: the program to sample.
        n: attempts at most.
        reward_fn: `(inputs, prediction) -> float`, sync or async.
        threshold: a reward that ends the search.
        fail_count: the number of failed attempts at which the last error is raised
            (default n).

    Raises:
        ValueError: n < 1 or fail_count < 1.
    """

    def __init__(
        self,
        module: Module,
        n: int,
        reward_fn: RewardFn,
        threshold: float,
        *,
        fail_count: int | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        super().__init__(callbacks=callbacks)
        if n < 1:
            raise ValueError("n must be >= 1")
        if fail_count is not None and fail_count < 1:
            raise ValueError("fail_count must be >= 1")
        self.module = module
        self.n = n
        self.reward_fn = reward_fn
        self.threshold = threshold
        self.fail_count = n if fail_count is None else fail_count

    async def forward(self, **inputs: Any) -> Prediction:
        """Sample until the threshold is met or attempts run out; return the best.

        Raises:
            Exception: the last attempt's error once `fail_count` attempts failed, or
                when no attempt succeeded.
        """
        best: Prediction | None = None
        best_reward = float("-inf")
        failures = 0
        last_error: Exception | None = None
        for attempt in range(self.n):
            try:
                pred, reward = await self._attempt(attempt, inputs)
            except Exception as exc:
                failures, last_error = failures + 1, exc
                if failures >= self.fail_count:
                    raise
                continue
            if best is None or reward > best_reward:
                best, best_reward = pred, reward
            if reward >= self.threshold:
                break
            await self._after_miss(inputs, pred, reward)
        if best is None:
            assert last_error is not None
            raise last_error
        return best

    async def _attempt(self, attempt: int, inputs: dict[str, Any]) -> tuple[Prediction, float]:
        params = {**current_settings().lm_params, "temperature": 1.0}
        with context(lm_params=params):
            pred = await self.module(**inputs)
        # Refine's hint is for the sampled module only, never for an LM judge in reward_fn.
        token = hint_var.set(None)
        try:
            reward = self.reward_fn(dict(inputs), pred)
            if inspect.isawaitable(reward):
                reward = await reward
        finally:
            hint_var.reset(token)
        return pred, float(reward)

    async def _after_miss(self, inputs: dict[str, Any], pred: Prediction, reward: float) -> None:
        """Called after an attempt below the threshold (Refine asks for feedback here)."""


class Refine(BestOfN):
    """BestOfN with feedback: after a miss, the LM advises, and the next attempt's
    predictors see that advice as a `hint_` input.
    """

    def __init__(
        self,
        module: Module,
        n: int,
        reward_fn: RewardFn,
        threshold: float,
        *,
        fail_count: int | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        super().__init__(
            module, n, reward_fn, threshold, fail_count=fail_count, callbacks=callbacks
        )
        self.feedback = Predict(
            "program_inputs, program_outputs, reward_value: float, target_threshold: float "
            "-> feedback"
        )
        self.feedback.signature = self.feedback.signature.with_instructions(_FEEDBACK_INSTRUCTIONS)

    async def forward(self, **inputs: Any) -> Prediction:
        """As BestOfN, each attempt after a miss carrying the last feedback."""
        token = hint_var.set(None)
        try:
            return await super().forward(**inputs)
        finally:
            hint_var.reset(token)

    async def _after_miss(self, inputs: dict[str, Any], pred: Prediction, reward: float) -> None:
        hint_var.set(None)
        advice = await self.feedback(
            program_inputs=_as_json(inputs),
            program_outputs=_as_json(dict(pred.items())),
            reward_value=reward,
            target_threshold=self.threshold,
        )
        hint_var.set(str(advice.feedback))


def _as_json(values: Mapping[str, Any]) -> str:
    return json.dumps(serialize_for_json(dict(values)), ensure_ascii=False)
