"""`Evaluate`: score a program on a devset with bounded async concurrency.

Each example runs under the caller's deadline (and `timeout`, when given), at most
`concurrency` at once: that many worker tasks take the examples in devset order, so an
example costs no task and no limiter of its own. Under a shared `anyio.CapacityLimiter`
(which an optimization job uses to bound all its work with one setting) each example is
its own task and waits for the limiter instead. A failing example is
isolated: it becomes a row with a typed error and `failure_score`, and is counted; at
`max_errors` failures the run stops (the other examples are cancelled) with
`TooManyErrors` listing the first causes.

Rows keep the devset's order whatever order examples finish in, and the score is summed
in that order, so the same data on a deterministic LM always gives the same score. The
score is DSPy's: the mean metric value as a percentage, rounded to two decimals.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, final

import anyio

from lmvisor.optimizers._checks import count, example_list, real
from lmvisor.optimizers.errors import TooManyErrors
from lmvisor.optimizers.evaluate_report import (
    ProgressDisplay,
    print_table,
    result_records,
    save_records,
)
from lmvisor.optimizers.metric import Metric, metric_caller, metric_name, metric_score
from lmvisor.programs.example import Example, Prediction
from lmvisor.programs.module import Module
from lmvisor.runtime.deadline import bound_timeout, deadline_expired
from lmvisor.runtime.errors import DeadlineExceeded, LmvisorError
from lmvisor.runtime.observe.logs import get_logger

__all__ = ["Evaluate", "EvaluationResult", "EvaluationRow", "RowError", "example_inputs"]

_log = get_logger(__name__)

_DEFAULT_CONCURRENCY = 16
_DEFAULT_MAX_ERRORS = 10


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class RowError:
    """Why one example failed: the exception's type, lmvisor error code and message."""

    type: str
    code: str
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> RowError:
        """The record of `exc` (an `LmvisorError`'s code, else "error")."""
        code = exc.code if isinstance(exc, LmvisorError) else "error"
        return cls(type=type(exc).__name__, code=code, message=str(exc))

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationRow:
    """One example's outcome: its prediction (None when failed or not kept) and score."""

    index: int
    example: Example
    prediction: Prediction | None
    score: float
    error: RowError | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationResult:
    """What `Evaluate` returns.

    Attributes:
        score: the mean metric value as a percentage (DSPy's), rounded to two decimals.
        rows: one per devset example, in devset order.
        metric: the metric's name.
    """

    score: float
    rows: tuple[EvaluationRow, ...]
    metric: str

    @property
    def errors(self) -> int:
        """How many examples failed."""
        return sum(1 for row in self.rows if row.error is not None)

    @property
    def scores(self) -> list[float]:
        """Each example's score, in devset order."""
        return [row.score for row in self.rows]

    @property
    def results(self) -> list[tuple[Example, Prediction | None, float]]:
        """DSPy's view: (example, prediction, score) per example."""
        return [(row.example, row.prediction, row.score) for row in self.rows]

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per row: example fields, prediction fields, score, error.

        Raises:
            ValueError: a row holds a value nested too deeply to record.
        """
        return result_records(self.rows, self.metric)

    def save(self, path: str | Path) -> None:
        """Write the rows to `path` as JSON (`.json`) or CSV (`.csv`), replacing an existing
        file whole or not at all. CSV text cells that a spreadsheet would run as a formula
        get a leading `'` (see `evaluate_report`); JSON keeps every value as it is.

        Raises:
            ValueError: the suffix is neither `.json` nor `.csv`, or a value is nested too
                deeply to write.
            OSError: the file cannot be written (an existing one is left unchanged).
        """
        save_records(self.records(), Path(path))

    def print_table(self, limit: int | None = None) -> None:
        """Print the rows as a rich table (the first `limit` rows when given).

        Raises:
            ValueError: a row holds a value nested too deeply to record.
        """
        print_table(self.records(), self.metric, limit=limit)

    def __repr__(self) -> str:
        return f"EvaluationResult(score={self.score}, rows={len(self.rows)}, errors={self.errors})"


def example_inputs(example: Example | Mapping[str, Any]) -> dict[str, Any]:
    """The inputs a program is called with: the marked inputs, else every field."""
    if isinstance(example, Example):
        keys = example.input_keys
        if keys is not None:
            return {k: v for k, v in example.items() if k in keys}
        return dict(example.items())
    return dict(example)


class _Stopped(Exception):
    """Internal: `max_errors` reached; the task group cancels the remaining examples."""


class _OutOfTime(Exception):
    """Internal: the caller's deadline passed; the task group cancels the rest."""


@final
class Evaluate:
    """Score programs on `devset` with `metric`.

    Args:
        devset: the examples (Examples with inputs marked, or mappings).
        metric: `metric(example, prediction[, trace])`, sync or async, bool or number.
        concurrency: the most examples in flight at once.
        max_errors: stop with `TooManyErrors` once this many examples failed.
        display_progress: a progress bar on stderr; None shows it only on a terminal.
        display_table: print a result table after the run (an int limits its rows).
        return_outputs: keep each example's Prediction in the rows (False keeps scores only).
        failure_score: the score a failed example counts for.
        timeout: seconds each example may take (never past the caller's deadline).

    Raises:
        TypeError: concurrency, max_errors or display_table is not an int, or failure_score
            not a number.
        ValueError: concurrency or max_errors < 1, a negative display_table, a failure_score
            that is NaN or infinite, or a negative timeout.
    """

    def __init__(
        self,
        *,
        devset: Sequence[Example | Mapping[str, Any]],
        metric: Metric,
        concurrency: int = _DEFAULT_CONCURRENCY,
        max_errors: int = _DEFAULT_MAX_ERRORS,
        display_progress: bool | None = None,
        display_table: bool | int = False,
        return_outputs: bool = True,
        failure_score: float = 0.0,
        timeout: float | None = None,
    ) -> None:
        self.concurrency = count("Evaluate", "concurrency", concurrency, minimum=1)
        self.max_errors = count("Evaluate", "max_errors", max_errors, minimum=1)
        self.failure_score = real("Evaluate", "failure_score", failure_score)
        if not isinstance(display_table, bool):
            count("Evaluate", "display_table", display_table, minimum=0)
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"Evaluate.timeout must be >= 0 seconds, got {timeout!r}")
        self.devset = example_list(devset, "devset")
        self.metric = metric
        self.display_progress = display_progress
        self.display_table = display_table
        self.return_outputs = return_outputs
        self.timeout = timeout

    async def __call__(
        self,
        program: Module,
        *,
        metric: Metric | None = None,
        devset: Sequence[Example | Mapping[str, Any]] | None = None,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> EvaluationResult:
        """Run `program` on every example and score it.

        Args:
            program: the module to score.
            metric: overrides the metric given at construction.
            devset: overrides the devset given at construction.
            limiter: a shared bound on examples in flight (instead of `concurrency`).

        Raises:
            ValueError: the devset is empty.
            TooManyErrors: `max_errors` examples failed (the rest were cancelled).
            DeadlineExceeded: the caller's deadline passed (an example that fails then ends
                the run: its failure is the caller's time, not the example's).

        Cancelling the caller cancels every example in flight.
        """
        examples = self.devset if devset is None else example_list(devset, "devset")
        if not examples:
            raise ValueError("Evaluate needs at least one example, got an empty devset")
        chosen = metric if metric is not None else self.metric
        run = _Run(self, program, chosen, examples, limiter)
        rows = await run.execute()
        result = EvaluationResult(
            score=_percent(rows, len(examples)), rows=tuple(rows), metric=metric_name(chosen)
        )
        if self.display_table:
            limit = None if self.display_table is True else int(self.display_table)
            try:
                result.print_table(limit)
            except ValueError as exc:  # a value too deep to show: the scores still count
                _log.warning("evaluate.table_not_printed", problem=str(exc))
        return result


def _percent(rows: Sequence[EvaluationRow], total: int) -> float:
    summed = 0.0
    for row in rows:  # devset order: the same data always sums to the same float
        summed += row.score
    return round(100 * summed / total, 2)


class _Run:
    """One evaluation in progress: the rows so far, the error count, the progress bar."""

    def __init__(
        self,
        owner: Evaluate,
        program: Module,
        metric: Metric,
        examples: list[Example],
        limiter: anyio.CapacityLimiter | None,
    ) -> None:
        self._owner = owner
        self._program = program
        self._metric = metric_caller(metric)
        self._name = metric_name(metric)
        self._examples = examples
        self._limiter = limiter
        self._rows: list[EvaluationRow | None] = [None] * len(examples)
        self._failures: list[str] = []
        self._progress = ProgressDisplay.open(len(examples), owner.display_progress)

    async def execute(self) -> list[EvaluationRow]:
        pending = iter(enumerate(self._examples))
        # Under a shared limiter every example waits for it on its own, as before; else
        # `concurrency` workers take the examples in order.
        workers = len(self._examples)
        if self._limiter is None:
            workers = min(self._owner.concurrency, workers)
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(self._work(pending))
        except* _OutOfTime:
            raise DeadlineExceeded(operation="evaluation") from None
        except* _Stopped:
            raise TooManyErrors(
                errors=len(self._failures),
                max_errors=self._owner.max_errors,
                causes=self._failures,
            ) from None
        finally:
            self._progress.close()
        return [row for row in self._rows if row is not None]

    async def _work(self, pending: Iterator[tuple[int, Example]]) -> None:
        limiter = self._limiter
        for index, example in pending:
            if limiter is None:
                row = await self._score(index, example)
            else:
                async with limiter:
                    row = await self._score(index, example)
            self._finish(index, row)

    def _finish(self, index: int, row: EvaluationRow) -> None:
        self._rows[index] = row
        self._progress.advance(row.score, failed=row.error is not None)
        if row.error is not None:
            self._failures.append(f"example {index}: {row.error}")
            if len(self._failures) >= self._owner.max_errors:
                raise _Stopped

    async def _score(self, index: int, example: Example) -> EvaluationRow:
        owner = self._owner
        try:
            left = bound_timeout(owner.timeout)
            if left is not None and left <= 0:
                raise DeadlineExceeded(operation=f"evaluation of example {index}")
            try:
                if left is None:  # no bound: no timeout scope to enter and leave
                    prediction, value = await self._predict(example)
                else:
                    async with asyncio.timeout(left):
                        prediction, value = await self._predict(example)
            except TimeoutError as exc:
                if isinstance(exc, LmvisorError):
                    raise
                raise DeadlineExceeded(
                    operation=f"evaluation of example {index}", budget=owner.timeout
                ) from None
            score = metric_score(value, metric=self._name)
        except Exception as exc:
            if deadline_expired():  # the caller's time is up: the run ends, not the example
                raise _OutOfTime from None
            return EvaluationRow(
                index=index,
                example=example,
                prediction=None,
                score=owner.failure_score,
                error=RowError.of(exc),
            )
        kept = prediction if owner.return_outputs and isinstance(prediction, Prediction) else None
        return EvaluationRow(index=index, example=example, prediction=kept, score=score)

    async def _predict(self, example: Example) -> tuple[Any, Any]:
        """The program's prediction for `example` and the metric's raw value for it."""
        prediction = await self._program(**example_inputs(example))
        value = self._metric(example, prediction, None)
        if inspect.isawaitable(value):
            value = await value
        return prediction, value
