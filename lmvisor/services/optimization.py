"""The optimization service's interface: the messages the OptimizationCoordinator answers,
the status it reports, and the client functions over them.

`submit_optimization(spec) -> job_id`, `optimization_status(job_id)`,
`cancel_optimization(job_id)`, `list_optimizations()`, `optimization_result(job_id)` and
`suspend_optimizations()` (at shutdown: stop every running job, its progress stored, to
resume when the coordinator next starts on the same store), each one call to the
coordinator registered as `COORDINATOR_NAME`. The coordinator itself, and the subtree it
runs in, are in `lmvisor.services.optimization_coordinator`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, final

from lmvisor.programs.module import Module
from lmvisor.runtime.actor import ActorRef
from lmvisor.runtime.messages import Call
from lmvisor.runtime.registry import Via

__all__ = [
    "COORDINATOR_NAME",
    "SUBMIT_TIMEOUT",
    "CancelJob",
    "GetJob",
    "GetResult",
    "ListJobs",
    "OptimizationStatus",
    "SubmitJob",
    "SuspendJobs",
    "cancel_optimization",
    "list_optimizations",
    "optimization_result",
    "optimization_status",
    "submit_optimization",
    "suspend_optimizations",
]

COORDINATOR_NAME: Final = "optimization"
"""The registry name the coordinator runs under."""

SUBMIT_TIMEOUT: Final = 300.0
"""Seconds `submit_optimization` waits by default: a submit reads and checks its datasets
(a JSONL file of up to 1 GiB) before the job is added; one given up on adds no job."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class OptimizationStatus:
    """A job as `status` and `list` report it; `eta` is seconds, when it can be estimated."""

    id: str
    optimizer: str
    program: str
    status: str
    trials_done: int
    trials_total: int
    best_score: float | None
    eta: float | None
    created: float
    updated: float
    version: int | None = None
    error: Mapping[str, Any] | None = None


@final
@dataclass(frozen=True, slots=True)
class SubmitJob(Call[str]):
    """Validate and start a job; replies with its id."""

    spec: Mapping[str, Any]


@final
@dataclass(frozen=True, slots=True)
class GetJob(Call[OptimizationStatus]):
    """The status of one job."""

    job_id: str


@final
@dataclass(frozen=True, slots=True)
class ListJobs(Call[list[OptimizationStatus]]):
    """Every job, oldest first."""


@final
@dataclass(frozen=True, slots=True)
class CancelJob(Call[OptimizationStatus]):
    """Stop a running job (its checkpoint stays); replies with its status."""

    job_id: str


@final
@dataclass(frozen=True, slots=True)
class GetResult(Call[Module]):
    """The optimized program of a completed job."""

    job_id: str


@final
@dataclass(frozen=True, slots=True)
class SuspendJobs(Call[list[str]]):
    """Stop every running job's worker, keeping the job resumable; replies with their ids."""


_Target = ActorRef | Via


async def submit_optimization(
    coordinator: _Target,
    spec: Mapping[str, Any],
    *,
    timeout: float | None = SUBMIT_TIMEOUT,  # noqa: ASYNC109 (the call's, as `call` takes it)
) -> str:
    """Start a job; returns its id. Its datasets are read and checked first: `timeout`
    leaves room for a JSONL file at the 1 GiB bound (~45 s on a small machine).

    Raises:
        OptimizationSpecError: the spec is malformed (naming the field).
        MetricError: the metric cannot be imported.
        StoreUnavailable: the job cannot be written to the jobs file (nothing was started).
        CallTimeout, ActorExited, NameNotRegistered: as `call` does. A submit given up on
            (this timeout, or the caller cancelled) while its datasets are still read adds
            no job.
    """
    return await coordinator.call(SubmitJob(spec), timeout=timeout)


async def optimization_status(coordinator: _Target, job_id: str) -> OptimizationStatus:
    """One job's status and progress.

    Raises:
        UnknownJob: no job has this id.
        StoreUnavailable: the job runs in another app and the jobs file cannot be read.
    """
    return await coordinator.call(GetJob(job_id))


async def list_optimizations(coordinator: _Target) -> list[OptimizationStatus]:
    """Every job, oldest first.

    Raises:
        StoreUnavailable: a job runs in another app and the jobs file cannot be read.
    """
    return await coordinator.call(ListJobs())


async def cancel_optimization(coordinator: _Target, job_id: str) -> OptimizationStatus:
    """Stop a running job (a finished one is left as it is); returns its status.

    Raises:
        UnknownJob: no job has this id.
        JobRunsElsewhere: another app on the same jobs file runs the job; cancel it there.
        StoreUnavailable: the cancellation cannot be written to the jobs file. The job is
            stopped here and shows as cancelled; the write is retried by a repeated cancel,
            by the next write of any job, and when the app stops.
    """
    return await coordinator.call(CancelJob(job_id), timeout=30.0)


async def optimization_result(coordinator: _Target, job_id: str) -> Module:
    """A copy of the optimized program of a completed job.

    Raises:
        UnknownJob: no job has this id.
        JobNotFinished: the job is running, failed or was cancelled.
    """
    return await coordinator.call(GetResult(job_id), timeout=30.0)


async def suspend_optimizations(coordinator: _Target) -> list[str]:
    """Stop every running job, storing its progress; returns the ids of the jobs stopped.

    For shutdown: each job stays `running` in the store, and the coordinator that next starts
    on the same store resumes it from its checkpoint (no recorded trial runs twice). Jobs
    already finished are left as they are.

    Raises:
        StoreUnavailable: a job's progress cannot be written; every job is stopped anyway
            (the file still shows each as running, so each resumes when next started).
    """
    return await coordinator.call(SuspendJobs(), timeout=30.0)
