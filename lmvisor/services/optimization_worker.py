"""One optimization job at work: the transient worker actor that runs it to the end.

The worker builds everything from the stored spec (metric, datasets, program, optimizer),
then compiles inside an `OptimizationRun` whose checkpoint is the job's step journal in
the `OptimizationStore`. A worker that is killed and restarted (or a process reopened on
the same data directory) starts over from the spec and the journal replays every recorded
step, so it resumes where it stopped. On success it deploys the result when asked, writes
the job's final record, emits `optimization.completed` and stops normally; on failure it
writes the error, emits `optimization.failed` and stops normally too (a bad job is not a
crash, so it is not restarted). Either way it tells the coordinator, handing it the final
record when the file refused it (`StoreUnavailable`), for the coordinator to keep and write.
A checkpoint row that cannot be decoded fails the job with `CorruptRecord` naming the step.

A retryable failure of the jobs file during the run (`StoreBusy`: a checkpoint write or
journal read refused because another process held the file past the busy timeout, the disk
was full, an I/O error) does not fail the job: the worker crashes, and its supervisor's
restart resumes from the journal, so no recorded step is computed again (only the one
whose write was refused) and the result is the one an undisturbed run ends with. At most
`BUSY_RESTARTS` such restarts per job (counted in its `JobContext`, across incarnations);
the next `StoreBusy` fails the job with it (`store_busy`). Any other store failure
(`StoreUnavailable`) fails the job at once, typed.

A program spec is built with the app's `lm_for`, as the ModuleManager builds one.
`job_supervisor_spec(context)` is the job's own subtree: a supervisor restarting the
worker after a crash, at most 3 times a minute.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Final, final

from lmvisor.config.schema import OptimizationConfig
from lmvisor.optimizers import (
    LocalExecutor,
    OptimizationRun,
    RunProgress,
    TrialReport,
    load_metric,
)
from lmvisor.programs.lm import LM
from lmvisor.programs.module import Module
from lmvisor.programs.settings import context
from lmvisor.programs.spec import ProgramSpecError, build_program
from lmvisor.runtime.actor import Actor
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.errors import LmvisorError
from lmvisor.runtime.messages import Cast
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.runtime.observe.names import (
    OPTIMIZATION_COMPLETED,
    OPTIMIZATION_FAILED,
    OPTIMIZATION_STARTED,
)
from lmvisor.runtime.supervisor import Supervisor
from lmvisor.services.errors import (
    CorruptRecord,
    OptimizationSpecError,
    StoreBusy,
    StoreUnavailable,
)
from lmvisor.services.optimization_job import JobSpec, build_optimizer, read_examples
from lmvisor.services.optimization_store import JobRecord, OptimizationStore

__all__ = [
    "BUSY_RESTARTS",
    "WORKER_NAME",
    "JobContext",
    "JobFinished",
    "JobProgress",
    "OptimizationWorker",
    "error_data",
    "job_supervisor_spec",
    "rebuild_student",
]

WORKER_NAME: Final = "optimization_worker"
"""A job's worker is registered as `(WORKER_NAME, job_id)`."""
BUSY_RESTARTS: Final = 2
"""Restarts one job's worker takes for `StoreBusy` before failing the job with it (below
the job supervisor's 3 restarts a minute, so the job fails typed, not as `crashed`)."""

ResolveProgram = Callable[[str], Awaitable[Module]]
DeployProgram = Callable[[str, Module], Awaitable[int]]
LMFor = Callable[[str], LM]
"""A model name ("vendor/model") -> the LM to call it through (in the app: `App.lm`)."""

_log = get_logger(__name__)


@final
class _BusyRestarts:
    """How many times the job's worker crashed to retry a `StoreBusy` (see the docstring)."""

    __slots__ = ("used",)

    def __init__(self) -> None:
        self.used = 0


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class JobContext:
    """Everything a worker needs, shared by its incarnations."""

    job_id: str
    spec: JobSpec
    lm: LM
    config: OptimizationConfig
    executor: LocalExecutor
    store: OptimizationStore
    resolve_program: ResolveProgram | None
    deploy: DeployProgram | None
    coordinator: Hashable
    lm_for: LMFor | None = None
    busy: _BusyRestarts = field(default_factory=_BusyRestarts)
    """The job's `StoreBusy` restarts so far (kept across its worker's incarnations)."""


@final
@dataclass(frozen=True, slots=True)
class JobProgress(Cast):
    """Worker -> coordinator: the job's progress after a new trial."""

    job_id: str
    progress: RunProgress


@final
@dataclass(frozen=True, slots=True)
class JobFinished(Cast):
    """Worker -> coordinator: the job's final record (completed or failed), and whether it
    is stored (when not, the coordinator keeps it and retries the write)."""

    job_id: str
    record: JobRecord
    module: Module | None
    stored: bool = True


def error_data(exc: BaseException) -> dict[str, Any]:
    """A JSON-ready, redacted description of `exc`."""
    if isinstance(exc, LmvisorError):
        return exc.to_dict()
    return {"type": type(exc).__name__, "code": "error", "message": str(exc)}


async def rebuild_student(
    spec: JobSpec, resolve: ResolveProgram | None, lm_for: LMFor | None = None
) -> Module:
    """A fresh copy of the job's program (registered, or built from its spec).

    A spec is built as the ModuleManager builds one: `lm_for` turns the model names it
    holds (a two_step adapter's `extraction_lm`) into LMs.

    Raises:
        LookupError: the job names a program id and nothing resolves program ids.
        OptimizationSpecError: the spec cannot be built (at `program.<field>`), as a
            two_step adapter without `lm_for`.
        UnknownProvider: `lm_for` knows no provider for a model the spec names.
    """
    if spec.program_id is None:
        assert not isinstance(spec.program, str)
        try:
            return build_program(spec.program, lm_for=lm_for)
        except ProgramSpecError as exc:
            raise OptimizationSpecError(field=f"program.{exc.field}", problem=exc.problem) from None
    if resolve is None:
        raise LookupError(f"no program registry to resolve program id {spec.program_id!r}")
    return await resolve(spec.program_id)


class OptimizationWorker(Actor):
    """Runs one job (see the module docstring); restarted (to resume) only after a crash."""

    def __init__(self, job: JobContext) -> None:
        self._job = job
        self._run: OptimizationRun | None = None

    def format_status(self) -> object:
        return {"job_id": self._job.job_id, "optimizer": self._job.spec.optimizer}

    async def started(self) -> None:
        self.spawn_task(self._work())

    async def _work(self) -> None:
        started = time.monotonic()
        try:
            await self._announce()
            module, version = await self._compile()
        except StoreBusy as exc:
            if self._retry(exc):
                raise  # a crash: the restart resumes from the journal
            await self._finish(None, None, error_data(exc), time.monotonic() - started)
        except Exception as exc:
            await self._finish(None, None, error_data(exc), time.monotonic() - started)
        else:
            await self._finish(module, version, None, time.monotonic() - started)
        self.stop("normal")

    async def _announce(self) -> None:
        job = self._job
        resumed = await job.store.count_steps(job.job_id) > 0
        self._emit(OPTIMIZATION_STARTED, {
            "program": job.spec.program_id or "<spec>", "trainset": _size(job.spec.trainset),
            "valset": _size(job.spec.valset), "resumed": resumed,
        })  # fmt: skip

    def _retry(self, exc: StoreBusy) -> bool:
        """Whether the job's busy restarts allow one more (counted), with a warning."""
        busy = self._job.busy
        if busy.used >= BUSY_RESTARTS:
            return False
        busy.used += 1
        _log.warning("optimization.store_busy_restart", optimization_id=self._job.job_id,
                     restart=busy.used, error=str(exc))  # fmt: skip
        return True

    async def _compile(self) -> tuple[Module, int | None]:
        job = self._job
        spec = job.spec
        metric = load_metric(spec.metric)
        trainset = await read_examples(spec.trainset, spec.input_keys, field="trainset")
        valset = (
            None
            if spec.valset is None
            else await read_examples(spec.valset, spec.input_keys, field="valset")
        )
        student = await rebuild_student(spec, job.resolve_program, job.lm_for)
        optimizer, compile_args = build_optimizer(spec, metric, job.config)
        self._run = OptimizationRun(
            executor=job.executor,
            checkpoint=job.store.checkpoint(job.job_id),
            optimization_id=job.job_id,
            on_trial=self._trial,
        )
        with context(lm=job.lm):
            module = await optimizer.compile(
                student, trainset=trainset, valset=valset, run=self._run, **compile_args
            )
        version = None
        if spec.deploy and spec.program_id is not None and job.deploy is not None:
            version = await job.deploy(spec.program_id, module)
        return module, version

    def _trial(self, report: TrialReport) -> None:
        if self._run is not None:
            self._notify(JobProgress(self._job.job_id, self._run.progress()))

    async def _finish(
        self, module: Module | None, version: int | None, error: dict[str, Any] | None, took: float
    ) -> None:
        job = self._job
        progress = self._run.progress() if self._run is not None else None
        try:
            stored = await job.store.job(job.job_id)
        except (CorruptRecord, StoreUnavailable):
            stored = None  # rewritten whole just below (the coordinator keeps `created`)
        record = JobRecord(
            id=job.job_id, spec=job.spec.to_dict(), status="failed" if error else "completed",
            created=stored.created if stored else time.time(), updated=time.time(),
            trials_done=progress.trials_done if progress else 0,
            trials_total=progress.trials_total if progress else 0,
            best_score=progress.best_score if progress else None,
            result=None if module is None else module.dump_state(), version=version, error=error,
        )  # fmt: skip
        saved = await self._save(record)
        if error is None:
            self._emit(OPTIMIZATION_COMPLETED, {
                "best_score": record.best_score, "trials": record.trials_done,
                "duration": took, "version": version,
            })  # fmt: skip
        else:
            self._emit(OPTIMIZATION_FAILED, {"error": error["message"], "code": error["code"]})
        self._notify(JobFinished(job.job_id, record, module, saved))

    async def _save(self, record: JobRecord) -> bool:
        """Write the final record; False (and a warning) when the file refuses it: the
        coordinator keeps it instead (a crash here would rerun the whole job)."""
        try:
            await self._job.store.save_job(record)
        except StoreUnavailable as exc:
            _log.warning("optimization.record_unsaved", optimization_id=record.id,
                         status=record.status, error=str(exc))  # fmt: skip
            return False
        return True

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        job = self._job
        fields = {"optimization_id": job.job_id, "optimizer": job.spec.optimizer, **data}
        self.runtime.events.ring.emit(kind, fields)

    def _notify(self, message: Cast) -> None:
        coordinator = self.runtime.whereis(self._job.coordinator)
        if coordinator is None:
            return  # the coordinator is restarting; it rereads the store when it starts
        try:
            coordinator.cast_nowait(message)
        except LmvisorError:
            return


def _size(value: object) -> int | str | None:
    if value is None or isinstance(value, str):
        return value
    return len(value) if isinstance(value, list | tuple) else None


def job_supervisor_spec(context: JobContext) -> ChildSpec:
    """One job's subtree, as a temporary child of the jobs' DynamicSupervisor: a supervisor
    whose one transient worker is restarted after a crash (resuming from its checkpoint) at
    most 3 times a minute; past that the supervisor gives up and the job fails alone."""
    worker = ChildSpec(
        "worker",
        lambda: OptimizationWorker(context),
        restart="transient",
        name=(WORKER_NAME, context.job_id),
    )
    return ChildSpec(
        f"job:{context.job_id}",
        lambda: Supervisor([worker], max_restarts=3, max_seconds=60.0),
        restart="temporary",
        type="supervisor",
    )
