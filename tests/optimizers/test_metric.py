"""Metric values: what counts as a score, and the typed error for everything else."""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Any

import pytest

from lmvisor.optimizers import MetricError, metric_score
from lmvisor.programs import Prediction


class _Scalar:
    """A numpy-like scalar: no float subclass, registered as a real number, with __float__."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __float__(self) -> float:
        return self.value


numbers.Real.register(_Scalar)


class TestMetricScore:
    @pytest.mark.parametrize(
        ("value", "score"),
        [
            (True, 1.0),
            (False, 0.0),
            (3, 3.0),
            (0.25, 0.25),
            (Fraction(1, 4), 0.25),
            (_Scalar(0.5), 0.5),
            (Prediction(score=0.75, feedback="close"), 0.75),
            (Prediction(score=True, feedback="right"), 1.0),
        ],
    )
    def test_numbers_bools_and_scored_predictions(self, value: Any, score: float) -> None:
        """Bools, real numbers (numpy-like ones too) and a Prediction's score (as DSPy's
        Evaluate sums them) are scores."""
        assert metric_score(value, metric="m") == score

    def test_numpy_bools_are_bools(self) -> None:
        """numpy's bool_ (what `np.isclose` returns; no `numbers.Real`) counts as a bool, as
        DSPy's truthiness does; a numpy array is still refused."""
        import numpy  # a dev dependency (optuna needs it)

        assert metric_score(numpy.bool_(True), metric="m") == 1.0
        assert metric_score(numpy.isclose(1.0, 2.0), metric="m") == 0.0
        with pytest.raises(MetricError, match=r"^metric 'm': returned array\("):
            metric_score(numpy.array([True, False]), metric="m")

    @pytest.mark.parametrize(
        ("value", "shown"),
        [
            (math.nan, "nan"),
            (math.inf, "inf"),
            (-math.inf, "-inf"),
            (None, "None"),
            ("yes", "'yes'"),
            ({"score": 0.5}, r"\{'score': 0\.5\}"),
        ],
    )
    def test_anything_else_is_a_metric_error(self, value: Any, shown: str) -> None:
        """NaN, infinities, None, text and a dict are refused, naming the metric."""
        with pytest.raises(
            MetricError, match=rf"^metric 'm': returned {shown}, not a bool or finite number$"
        ):
            metric_score(value, metric="m")

    def test_an_int_too_large_for_a_float_is_a_metric_error(self) -> None:
        """10**400 is a MetricError (shown cut short), not an OverflowError."""
        with pytest.raises(
            MetricError, match=r"^metric 'm': returned 1000+\.\.\., not a bool or finite number$"
        ):
            metric_score(10**400, metric="m")

    @pytest.mark.parametrize("value", [Prediction(feedback="no score"), Prediction(score=math.nan)])
    def test_a_prediction_without_a_finite_score_is_a_metric_error(self, value: Any) -> None:
        """A Prediction counts only through a finite `score` field."""
        with pytest.raises(
            MetricError, match=r"^metric 'm': returned Prediction\(.*\), a Prediction whose score"
        ):
            metric_score(value, metric="m")
