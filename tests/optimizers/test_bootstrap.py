"""BootstrapFewShot given careless metrics and data: counted failures, never a crash."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from lmvisor.optimizers import BootstrapFewShot, TooManyErrors
from lmvisor.programs import Example, Predict, Prediction, context
from lmvisor.runtime.deadline import deadline
from lmvisor.runtime.errors import DeadlineExceeded
from lmvisor.testing import ScriptedLM


def _returning(value: Any) -> Any:
    def metric(example: Example, prediction: Any, trace: Any = None) -> Any:
        return value

    return metric


async def _bootstrap(metric: Any, trainset: list[Example], **kwargs: Any) -> Any:
    lm = ScriptedLM()
    with context(lm=lm):
        program = await BootstrapFewShot(
            metric, max_bootstrapped_demos=2, max_labeled_demos=0, **kwargs
        ).compile(Predict("question -> answer"), trainset=trainset)
    return program, lm


class TestMetricValues:
    @pytest.mark.parametrize("threshold", [None, 0.5])
    @pytest.mark.parametrize(
        ("value", "shown"),
        [(math.nan, "nan"), ("yes", "'yes'"), (10**400, "1000+\\.\\.\\.")],
        ids=["nan", "text", "huge"],
    )
    async def test_a_value_that_is_no_score_is_a_counted_failure(
        self, trainset: list[Example], value: Any, shown: str, threshold: float | None
    ) -> None:
        """NaN (truthy), text or an int too large for a float fails the attempt with
        a MetricError counted toward max_errors, with or without a threshold: never a pass,
        never a TypeError or OverflowError ending the compile."""
        with pytest.raises(
            TooManyErrors, match=rf"first causes: example 0: MetricError: metric 'metric': "
            rf"returned {shown}, not a bool or finite number"
        ):  # fmt: skip
            await _bootstrap(_returning(value), trainset, metric_threshold=threshold, max_errors=3)

    @pytest.mark.parametrize("threshold", [None, 0.5])
    async def test_none_fails_the_attempt_as_in_dspy(
        self, trainset: list[Example], threshold: float | None
    ) -> None:
        """A metric returning None (nothing on a wrong answer) fails each attempt quietly, as
        DSPy's truthiness does: no error counted toward max_errors, no demo bootstrapped."""
        program, lm = await _bootstrap(
            _returning(None), trainset[:5], metric_threshold=threshold, max_errors=1
        )
        assert [d.get("augmented") for d in program.demos] == [None] * len(program.demos)
        assert len(lm.requests) == 5

    @pytest.mark.parametrize("threshold", [None, 0.5])
    async def test_a_scored_prediction_passes_by_its_score(
        self, trainset: list[Example], threshold: float | None
    ) -> None:
        """Prediction(score=0.0, feedback=...) fails (DSPy counts any non-empty Prediction
        as a pass) and Prediction(score=1.0) passes, with or without a threshold."""
        failing, lm = await _bootstrap(
            _returning(Prediction(score=0.0, feedback="wrong")),
            trainset[:5],
            metric_threshold=threshold,
        )
        assert (failing.demos, len(lm.requests)) == ([], 5)
        passing, lm = await _bootstrap(
            _returning(Prediction(score=1.0, feedback="right")),
            trainset[:5],
            metric_threshold=threshold,
        )
        assert [d.get("augmented") for d in passing.demos] == [True, True]
        assert len(lm.requests) == 2


class TestData:
    async def test_unmarked_rows_bootstrap(self) -> None:
        """Mappings (no input marks: the label reaches the program too) bootstrap demos
        whose answer is the prediction's, not a TypeError from the clashing name."""
        rows: Any = [{"question": f"q{i}", "answer": "gold"} for i in range(3)]
        program, lm = await _bootstrap(_returning(True), rows)
        assert len(program.demos) == 2 and len(lm.requests) == 2
        assert all(d["answer"] != "gold" and d["augmented"] for d in program.demos)


class TestDeadline:
    async def test_an_async_metric_that_never_returns_ends_at_the_callers_deadline(
        self, trainset: list[Example]
    ) -> None:
        """The caller's deadline bounds the metric as it does the LM: the compile raises
        DeadlineExceeded (not a hang, not max_errors of counted failures)."""

        async def stuck(example: Example, prediction: Any, trace: Any = None) -> bool:
            await asyncio.Event().wait()
            return True

        lm = ScriptedLM()
        # asyncio.timeout is a safety net only: were the deadline ignored, the test fails
        # (a TimeoutError that is no DeadlineExceeded) instead of hanging
        async with asyncio.timeout(30):
            with (
                context(lm=lm),
                deadline(0.05),
                pytest.raises(
                    DeadlineExceeded, match=r"^deadline exceeded during BootstrapFewShot compile$"
                ),
            ):
                await BootstrapFewShot(stuck).compile(
                    Predict("question -> answer"), trainset=trainset
                )
        assert len(lm.requests) == 4  # one wave of max_bootstrapped_demos attempts
