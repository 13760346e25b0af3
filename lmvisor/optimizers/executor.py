"""The executor seam: how optimizers spend LM calls, so a distributed engine can replace it.

Optimizers never run candidates themselves: they hand each candidate evaluation to
`Executor.evaluate` and each other piece of LM work (a bootstrap attempt, an instruction
proposal) to `Executor.run`. `LocalExecutor` does both on the running event loop under
one `anyio.CapacityLimiter`, so one `concurrency` setting bounds everything a job has in
flight; `resize()` changes it while the job runs (waiting work picks up the new bound).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, final, runtime_checkable

import anyio

from lmvisor.optimizers._checks import count, real
from lmvisor.optimizers.evaluate import Evaluate, EvaluationResult
from lmvisor.optimizers.metric import Metric
from lmvisor.programs.example import Example
from lmvisor.programs.module import Module

__all__ = ["Executor", "ExecutorStatistics", "LocalExecutor"]

T = TypeVar("T")


@runtime_checkable
class Executor(Protocol):
    """Runs the LM work of an optimization.

    `evaluate` scores one candidate program on a devset (keeping no predictions);
    `run` runs one other unit of LM work under the same bound. Both propagate the
    caller's cancellation and raise what the work raises.
    """

    async def evaluate(
        self, program: Module, devset: Sequence[Example], metric: Metric
    ) -> EvaluationResult:
        """Score `program` on `devset`."""
        ...

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work()` once under the executor's bound and return its result."""
        ...


@final
@dataclass(frozen=True, slots=True)
class ExecutorStatistics:
    """How much of the bound is in use."""

    concurrency: int
    in_flight: int
    waiting: int


@final
class LocalExecutor:
    """Runs everything on the event loop, at most `concurrency` units at once.

    Args:
        concurrency: examples and other LM work in flight at once, for the whole job.
        max_errors: failing examples after which an evaluation stops (`TooManyErrors`).
        failure_score: what a failed example scores.
        timeout: seconds per example (never past the caller's deadline); None: no bound.

    Raises:
        TypeError: concurrency or max_errors is not an int, or failure_score not a number.
        ValueError: concurrency or max_errors < 1, or failure_score NaN or infinite.
    """

    def __init__(
        self,
        *,
        concurrency: int = 64,
        max_errors: int = 10,
        failure_score: float = 0.0,
        timeout: float | None = None,
    ) -> None:
        concurrency = count("LocalExecutor", "concurrency", concurrency, minimum=1)
        self._limiter = anyio.CapacityLimiter(concurrency)
        self.max_errors = count("LocalExecutor", "max_errors", max_errors, minimum=1)
        self.failure_score = real("LocalExecutor", "failure_score", failure_score)
        self.timeout = timeout

    @property
    def concurrency(self) -> int:
        """The current bound."""
        return int(self._limiter.total_tokens)

    def resize(self, concurrency: int) -> None:
        """Change the bound now; work in flight finishes, waiting work sees the new bound.

        Raises:
            TypeError: concurrency is not an int.
            ValueError: concurrency < 1.
        """
        self._limiter.total_tokens = count("LocalExecutor", "concurrency", concurrency, minimum=1)

    async def evaluate(
        self, program: Module, devset: Sequence[Example], metric: Metric
    ) -> EvaluationResult:
        """Score `program` on `devset` (predictions are not kept).

        Raises:
            TooManyErrors: `max_errors` examples failed.
        """
        evaluate = Evaluate(
            devset=devset,
            metric=metric,
            max_errors=self.max_errors,
            display_progress=False,
            return_outputs=False,
            failure_score=self.failure_score,
            timeout=self.timeout,
        )
        return await evaluate(program, limiter=self._limiter)

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work()` holding one unit of the bound."""
        async with self._limiter:
            return await work()

    def statistics(self) -> ExecutorStatistics:
        """The bound, the units held and the tasks waiting for one."""
        stats = self._limiter.statistics()
        return ExecutorStatistics(
            concurrency=self.concurrency,
            in_flight=stats.borrowed_tokens,
            waiting=stats.tasks_waiting,
        )

    def __repr__(self) -> str:
        stats = self.statistics()
        return f"LocalExecutor(concurrency={stats.concurrency}, in_flight={stats.in_flight})"
