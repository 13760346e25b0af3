"""One optimization in progress: its executor, its checkpoint journal, and its trial reports.

Optimizers are written as deterministic sequences of named steps. Every step that spends
LM calls (a proposal, a bootstrap attempt, a candidate evaluation) goes through
`OptimizationRun.step(key, compute)`: if the checkpoint already holds `key`, its recorded
(JSON) value is returned without calling the LM; otherwise `compute()` runs and its value
is recorded before it is returned. Seeds, RNG draws and optuna studies are replayed from
the same inputs in the same order, so a run restarted on the same checkpoint rebuilds
exactly the state it had, evaluates no recorded trial again, and ends with the same result.

Each scored candidate is a trial: `report(...)` emits an `optimization.iteration` event and
updates the `lmvisor_optimization_*` metrics (the runtime's, when one is running), and tells
`on_trial`. Replayed trials count toward progress but are not reported again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, final, runtime_checkable

from lmvisor.optimizers.errors import CheckpointError
from lmvisor.optimizers.executor import Executor, LocalExecutor
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.metrics import Metrics
from lmvisor.runtime.observe.names import OPTIMIZATION_ITERATION
from lmvisor.runtime.runtime import current_runtime

__all__ = [
    "Checkpoint",
    "MemoryCheckpoint",
    "OptimizationRun",
    "RunProgress",
    "TrialReport",
]


@runtime_checkable
class Checkpoint(Protocol):
    """Where a run's step values are kept (JSON-ready values under string keys)."""

    async def load(self) -> Mapping[str, Any]:
        """Every value recorded so far."""
        ...

    async def record(self, key: str, value: Any) -> None:
        """Keep `value` under `key` durably before returning."""
        ...


@final
class MemoryCheckpoint:
    """A checkpoint in memory: resumable within the process only."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def load(self) -> Mapping[str, Any]:
        """Every value recorded so far."""
        return dict(self.values)

    async def record(self, key: str, value: Any) -> None:
        """Keep `value` under `key`."""
        self.values[key] = value


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class TrialReport:
    """One scored candidate, as events and `on_trial` see it."""

    optimization_id: str
    optimizer: str
    iteration: int
    candidate: str
    score: float
    metric: str
    duration: float
    replayed: bool = False

    def event_data(self) -> dict[str, Any]:
        """The `optimization.iteration` event's fields."""
        return {
            "optimization_id": self.optimization_id,
            "optimizer": self.optimizer,
            "iteration": self.iteration,
            "candidate": self.candidate,
            "score": self.score,
            "metric": self.metric,
        }


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class RunProgress:
    """Trials done out of the planned total, the best score so far and the time left."""

    trials_done: int
    trials_total: int
    best_score: float | None
    elapsed: float
    eta: float | None


@final
class OptimizationRun:
    """The context one `compile()` runs in (see the module docstring).

    Args:
        executor: runs the LM work (a `LocalExecutor()`, 64 in flight, by default).
        checkpoint: where step values are kept (in memory by default).
        optimization_id: names the run in events (a fresh id by default).
        on_trial: called with each new `TrialReport` (must not block).
        events: the ring events go to (the current runtime's, else none).
        metrics: the metrics updated (the current runtime's, else none).
    """

    def __init__(
        self,
        *,
        executor: Executor | None = None,
        checkpoint: Checkpoint | None = None,
        optimization_id: str | None = None,
        on_trial: Callable[[TrialReport], None] | None = None,
        events: EventRing | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        runtime = current_runtime()
        self.executor: Executor = executor if executor is not None else LocalExecutor()
        self.checkpoint: Checkpoint = checkpoint if checkpoint is not None else MemoryCheckpoint()
        self.optimization_id = optimization_id or uuid.uuid4().hex[:12]
        self.on_trial = on_trial
        self.events = events if events is not None else (runtime.events.ring if runtime else None)
        self.metrics = metrics if metrics is not None else (runtime.metrics if runtime else None)
        self.optimizer = ""
        self._journal: dict[str, Any] | None = None
        self._total = 0
        self._done = 0
        self._fresh = 0
        self._best: float | None = None
        self._started = time.monotonic()
        self._fresh_time = 0.0

    async def begin(self, optimizer: str) -> None:
        """Load the checkpoint (once) and name the optimizer in reports."""
        self.optimizer = optimizer
        if self._journal is None:
            self._journal = dict(await self.checkpoint.load())
            self._started = time.monotonic()

    def plan(self, trials: int) -> None:
        """Set how many trials the optimizer expects to run in all."""
        self._total = max(trials, 0)

    def replaying(self, key: str) -> bool:
        """Whether `key` already has a recorded value."""
        return self._journal is not None and key in self._journal

    async def step(
        self,
        key: str,
        compute: Callable[[], Awaitable[Any]],
        read: Callable[[Any], Any] | None = None,
    ) -> Any:
        """The recorded value of `key`, or `compute()`'s (recorded before it is returned),
        passed through `read` when given.

        `compute` must return JSON-ready data. `read` turns it into what the caller uses,
        raising KeyError, IndexError, TypeError or ValueError on a value of the wrong shape:
        a recorded value comes from a file an older or damaged run may have written.

        Raises:
            RuntimeError: `begin()` was not awaited.
            CheckpointError: `read` refused the recorded value of `key`.
        """
        journal = self._journal
        if journal is None:
            raise RuntimeError("OptimizationRun.step() before begin()")
        if key in journal:
            if read is None:
                return journal[key]
            try:
                return read(journal[key])
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                raise CheckpointError(key=key, problem=problem) from None
        value = await compute()
        journal[key] = value
        await self.checkpoint.record(key, value)
        return value if read is None else read(value)

    def report(
        self,
        *,
        iteration: int,
        candidate: str,
        score: float,
        metric: str,
        duration: float,
        replayed: bool,
    ) -> None:
        """Count one trial; a new one is also emitted as an event, metrics and `on_trial`."""
        self._done += 1
        self._best = score if self._best is None else max(self._best, score)
        if replayed:
            return
        self._fresh += 1
        self._fresh_time = time.monotonic() - self._started
        report = TrialReport(
            optimization_id=self.optimization_id,
            optimizer=self.optimizer,
            iteration=iteration,
            candidate=candidate,
            score=score,
            metric=metric,
            duration=duration,
        )
        if self.events is not None:
            self.events.emit(OPTIMIZATION_ITERATION, report.event_data())
        if self.metrics is not None:
            self.metrics.optimization_iterations.labels(optimizer=self.optimizer).inc()
            self.metrics.optimization_score.labels(optimizer=self.optimizer).set(score)
        if self.on_trial is not None:
            self.on_trial(report)

    def progress(self) -> RunProgress:
        """Trials done / planned, best score so far, elapsed seconds and an ETA."""
        elapsed = time.monotonic() - self._started
        eta = None
        remaining = max(self._total - self._done, 0)
        if self._fresh:
            eta = self._fresh_time / self._fresh * remaining
        return RunProgress(
            trials_done=self._done,
            trials_total=max(self._total, self._done),
            best_score=self._best,
            elapsed=elapsed,
            eta=eta,
        )

    def finish(self) -> None:
        """Record the run's duration in the optimization-duration metric."""
        if self.metrics is not None:
            self.metrics.optimization_duration.labels(optimizer=self.optimizer).observe(
                time.monotonic() - self._started
            )

    def __repr__(self) -> str:
        p = self.progress()
        return f"OptimizationRun({self.optimization_id!r}, {p.trials_done}/{p.trials_total})"
