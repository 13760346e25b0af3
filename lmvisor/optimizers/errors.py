"""Errors raised by Evaluate and the optimizers.

LmvisorError
└── OptimizerError
    ├── CheckpointError         a recorded step's value has not the shape its step wrote
    ├── TooManyErrors           an evaluation or bootstrap hit `max_errors` failing examples
    ├── MetricError             the metric could not be imported or returned a non-number
    └── OptimizerSettingsError  an optimizer was given settings that cannot work together
"""

from __future__ import annotations

from collections.abc import Sequence

from lmvisor.runtime.errors import LmvisorError

__all__ = [
    "CheckpointError",
    "MetricError",
    "OptimizerError",
    "OptimizerSettingsError",
    "TooManyErrors",
]

_CAUSES_SHOWN = 3
_PROBLEM_SHOWN = 200


class OptimizerError(LmvisorError):
    """An evaluation or an optimization could not run to the end."""

    code = "optimizer_error"


class CheckpointError(OptimizerError, ValueError):
    """A step value read back from a checkpoint cannot be replayed (a damaged or older row);
    `key` names the step. The run stops: its result would not be the one recorded."""

    code = "checkpoint_error"

    def __init__(self, *, key: str, problem: str) -> None:
        shown = problem if len(problem) <= _PROBLEM_SHOWN else problem[:_PROBLEM_SHOWN] + "..."
        super().__init__(
            f"checkpoint step {key!r} cannot be replayed: {shown}",
            context={"key": key, "problem": shown},
        )
        self.key = key
        self.problem = problem


class TooManyErrors(OptimizerError):
    """`max_errors` examples failed; `causes` lists the first failures (fix the program or data)."""

    code = "too_many_errors"

    def __init__(self, *, errors: int, max_errors: int, causes: Sequence[str]) -> None:
        shown = "; ".join(causes[:_CAUSES_SHOWN]) or "no cause recorded"
        super().__init__(
            f"stopped after {errors} failing examples (max_errors={max_errors}); "
            f"first causes: {shown}",
            context={"errors": errors, "max_errors": max_errors, "causes": list(causes)},
        )
        self.errors = errors
        self.max_errors = max_errors
        self.causes = list(causes)


class MetricError(OptimizerError, ValueError):
    """The metric named by the caller cannot be used; `metric` names it, `problem` says why."""

    code = "metric_error"

    def __init__(self, *, metric: str, problem: str) -> None:
        super().__init__(
            f"metric {metric!r}: {problem}", context={"metric": metric, "problem": problem}
        )
        self.metric = metric
        self.problem = problem


class OptimizerSettingsError(OptimizerError, ValueError):
    """The caller gave an optimizer settings that cannot work; `setting` names the bad one."""

    code = "optimizer_settings_error"

    def __init__(self, *, optimizer: str, setting: str, problem: str) -> None:
        super().__init__(
            f"{optimizer}: {setting} {problem}",
            context={"optimizer": optimizer, "setting": setting, "problem": problem},
        )
        self.optimizer = optimizer
        self.setting = setting
        self.problem = problem
