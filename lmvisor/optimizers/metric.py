"""Metrics: calling a sync or async `metric(example, prediction, trace)`, and finding one by
its import path ("package.module:function").

A metric returns a bool or a finite real number (numpy's scalars, bools included); True
counts as 1.0. As DSPy 3.4.1's Evaluate does, a `Prediction` with a `score` field (a
metric that also gives feedback) counts as its score. Anything else (None, a string, NaN,
an infinity, an int too large for a float) is a `MetricError` naming the metric, never a
silent 0 or NaN averaged in (BootstrapFewShot alone reads None as a failed attempt, as
DSPy's truthiness does). As in DSPy, a metric may take two arguments (example,
prediction) or three (example, prediction, trace): `trace` is None
during evaluation and the teacher's predictor calls while bootstrapping.
"""

from __future__ import annotations

import importlib
import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any

from lmvisor.optimizers.errors import MetricError
from lmvisor.programs.example import Prediction

__all__ = [
    "Metric",
    "call_metric",
    "load_metric",
    "metric_caller",
    "metric_name",
    "metric_score",
]

_SHOWN = 80

Metric = Callable[..., Any]
"""`metric(example, prediction[, trace])` returning a bool or number, or an awaitable of one."""


def metric_name(metric: Metric) -> str:
    """The name results and events show for `metric` (function or class name)."""
    name = getattr(metric, "__name__", None)
    return name if isinstance(name, str) else type(metric).__name__


def _takes_trace(metric: Metric) -> bool:
    try:
        params = list(inspect.signature(metric).parameters.values())
    except (TypeError, ValueError):
        return True
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return True
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 3


def metric_caller(metric: Metric) -> Callable[[Any, Any, Any], Any]:
    """`metric` as a call of (example, prediction, trace), its arity read once: for a caller
    that scores many examples. Its value is the metric's raw one (an awaitable for an async
    metric)."""
    if _takes_trace(metric):
        return metric
    return lambda example, prediction, trace: metric(example, prediction)


async def call_metric(metric: Metric, example: Any, prediction: Any, trace: Any = None) -> Any:
    """The metric's raw value for one example (awaited when the metric is async).

    Raises:
        Exception: whatever the metric raises.
    """
    value = metric_caller(metric)(example, prediction, trace)
    if inspect.isawaitable(value):
        value = await value
    return value


def metric_score(value: Any, *, metric: str) -> float:
    """A metric value as a float (see the module docstring for what is accepted).

    Raises:
        MetricError: the value is not a bool, a finite real number or a Prediction whose
            `score` is one.
    """
    scored = value.get("score") if isinstance(value, Prediction) else value
    if isinstance(scored, bool) or _numpy_bool(scored):
        return 1.0 if scored else 0.0
    if isinstance(scored, numbers.Real):
        try:
            score = float(scored)
        except (OverflowError, TypeError, ValueError):
            score = math.nan
        if math.isfinite(score):
            return score
    shown = repr(value)
    shown = shown if len(shown) <= _SHOWN else shown[:_SHOWN] + "..."
    kind = "a Prediction whose score is " if isinstance(value, Prediction) else ""
    raise MetricError(metric=metric, problem=f"returned {shown}, {kind}not a bool or finite number")


def _numpy_bool(value: Any) -> bool:
    # numpy's bool_ (what `np.isclose` returns) is no `numbers.Real`; numpy is not imported.
    dtype = getattr(value, "dtype", None)
    return getattr(dtype, "kind", None) == "b" and getattr(value, "shape", None) == ()


def load_metric(path: str) -> Metric:
    """The callable named by `path`: "package.module:function" or "package.module.function".

    Raises:
        MetricError: the path is malformed, the module cannot be imported, or the name is
            missing or not callable.
    """
    if not isinstance(path, str) or not path.strip():
        raise MetricError(metric=str(path), problem="must be an import path like 'pkg.mod:fn'")
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise MetricError(metric=path, problem="must be an import path like 'pkg.mod:fn'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise MetricError(metric=path, problem=f"cannot import {module_name!r}: {exc}") from None
    value: Any = module
    for part in attr.split("."):
        value = getattr(value, part, None)
        if value is None:
            raise MetricError(metric=path, problem=f"{module_name!r} has no attribute {attr!r}")
    if not callable(value):
        raise MetricError(metric=path, problem="is not callable")
    return value  # type: ignore[no-any-return]
