"""The OptimizationCoordinator: submits, tracks, cancels and resumes optimization jobs.

`optimization_spec(lm=..., lm_for=..., resolve_program=..., deploy=..., store_path=...)` is
the child the application tree puts in its `optimization` slot: a rest_for_one supervisor of

- `optimization_store`, which closes the jobs file and drops this app's claims on its jobs
  when the subtree stops (it starts first, so it stops after everything that writes there;
  the file was left open, its last writes only in the `-wal` file beside it);
- `optimization_jobs`, a DynamicSupervisor holding one small supervisor per job, whose one
  transient `OptimizationWorker` is restarted (and so resumes from its checkpoint) after a
  crash, at most 3 times a minute; a job that crashes more often fails alone;
- `optimization_coordinator`, registered as "optimization", serving the messages and
  client functions of `lmvisor.services.optimization`.

Jobs and checkpoints live in an `OptimizationStore` (SQLite under the app's data directory,
or memory when `store_path` is None) shared by the coordinator's incarnations. When the
coordinator starts it resumes every job the store shows as running with no live worker, so
a process killed mid-job picks the job up again when the app reopens on the same file. A job
runs only where it is claimed (`lmvisor.services._job_claims`): of two apps open on one data
directory, the second leaves the first one's running jobs to it (and reports their stored
progress) instead of running them again. When the first goes away (closed, killed, or
suspended by a drain) its jobs are free: the second resumes one at the next status, list or
result query that finds it unclaimed (an app's own suspended jobs stay suspended there).
A stored job whose row cannot be decoded is skipped (a `store.record_skipped` event and
a warning), never loaded and never a reason for the coordinator not to start.

A job claimed by another app is not cancelled here: `cancel` answers `JobRunsElsewhere`
(409 at the daemon), naming the jobs file. Marking it cancelled in the file would not stop
it (its runner keeps paying for LM calls and may write its result over the cancellation),
so the caller is told to cancel it where it runs. A job no app runs (suspended, or its app
closed) is claimed for the cancel, so no app resumes it while its cancellation is written.

After start-up a failure of the jobs file (`StoreUnavailable`: locked by another process
past the busy timeout, disk full) never stops the coordinator. A caller's request (submit,
status and list of jobs run elsewhere, cancel, suspend) answers it. A write that fails keeps
the job's new record in memory, marked unsaved, and reports it as the job's status: it is
retried by every later write of a job, by a repeated cancel, and when the subtree stops.
A worker whose final record cannot be written hands it to the coordinator, which keeps it
the same way, as it keeps a crashed worker's end (an `optimization.record_unsaved` warning
names the job). A record still unsaved when the subtree stops is logged as an error and
lost: the file shows the job as running, so the next start resumes it from its checkpoint
(a cancelled job runs again; a finished one replays its journal to the same result).

The coordinator subscribes to `optimization.*` config: new jobs take the settings in force
when submitted; a `concurrency` change also resizes the executor of every running job.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, final

from lmvisor.config.schema import OptimizationConfig
from lmvisor.optimizers import LocalExecutor, RunProgress, load_metric
from lmvisor.programs.lm import LM
from lmvisor.programs.module import Module
from lmvisor.runtime.actor import Actor, ActorRef, ErrorReply, handler
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.config_service import CONFIG_SERVICE_NAME, ConfigChanged, subscribe_config
from lmvisor.runtime.dynamic_supervisor import DynamicSupervisor
from lmvisor.runtime.errors import LmvisorError
from lmvisor.runtime.messages import Down, is_shutdown_exit
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.runtime.observe.names import OPTIMIZATION_FAILED, OPTIMIZATION_SUSPENDED
from lmvisor.runtime.supervisor import Supervisor, start_child, terminate_child
from lmvisor.services._job_claims import JobClaims
from lmvisor.services._sqlite import report_skipped
from lmvisor.services.errors import (
    CorruptRecord,
    JobNotFinished,
    JobRunsElsewhere,
    OptimizationSpecError,
    StoreUnavailable,
    UnknownJob,
)
from lmvisor.services.optimization import (
    COORDINATOR_NAME,
    CancelJob,
    GetJob,
    GetResult,
    ListJobs,
    OptimizationStatus,
    SubmitJob,
    SuspendJobs,
)
from lmvisor.services.optimization_job import JobSpec, load_examples, parse_job_spec
from lmvisor.services.optimization_store import JobRecord, OptimizationStore
from lmvisor.services.optimization_worker import (
    WORKER_NAME,
    DeployProgram,
    JobContext,
    JobFinished,
    JobProgress,
    LMFor,
    ResolveProgram,
    job_supervisor_spec,
    rebuild_student,
)

__all__ = ["OptimizationCoordinator", "optimization_spec"]

_JOBS_NAME: Final = "optimization_jobs"
_ACTIVE: Final = frozenset({"running"})

_log = get_logger(__name__)


@dataclass(slots=True)
class _Job:
    record: JobRecord
    spec: JobSpec
    executor: LocalExecutor | None = None
    supervisor: ActorRef | None = None
    progress: RunProgress | None = None
    module: Module | None = None
    unsaved: bool = False
    """`record` is newer than the file: its write failed (see the module docstring)."""
    suspended: bool = False
    """Stopped here by `suspend_optimizations` (a drain): not taken over again here."""


@final
@dataclass(slots=True)
class _Shared:
    """What outlives a coordinator incarnation: the store and the jobs it knows."""

    store: OptimizationStore
    claims: JobClaims
    jobs: dict[str, _Job] = field(default_factory=dict)
    loaded: bool = False
    draining: bool = False
    """`suspend_optimizations` ran: the app is stopping, it takes no job over."""


class OptimizationCoordinator(Actor):
    """Serves the optimization jobs of one application (see the module docstring)."""

    def __init__(
        self,
        shared: _Shared,
        *,
        lm: LM,
        lm_for: LMFor | None,
        resolve_program: ResolveProgram | None,
        deploy: DeployProgram | None,
    ) -> None:
        self._shared = shared
        self._lm = lm
        self._lm_for = lm_for
        self._resolve = resolve_program
        self._deploy = deploy
        self._config = OptimizationConfig()

    def format_status(self) -> object:
        return {"jobs": len(self._shared.jobs), "store": repr(self._shared.store)}

    async def started(self) -> None:
        self._config = self.runtime.config.optimization
        config = self.runtime.whereis(CONFIG_SERVICE_NAME)
        if config is not None:
            await subscribe_config(config, self.ref, "optimization")
        shared = self._shared
        await shared.store.open()
        restarted = shared.loaded
        if not restarted:
            await self._load_jobs()
            shared.loaded = True
        for job in shared.jobs.values():
            if job.suspended:
                continue  # stopped by a drain: the next app on the file resumes it
            if restarted and job.record.status in _ACTIVE:
                await self._catch_up(job)
            if job.record.status in _ACTIVE:
                await self._ensure_running(job)

    async def _catch_up(self, job: _Job) -> None:
        """After a restart: a job whose worker ended while no coordinator ran (its
        `JobFinished` went with the predecessor) takes its end from the file, not a rerun."""
        supervisor = job.supervisor
        if job.unsaved or (
            supervisor is not None
            and supervisor.alive
            and self.runtime.whereis((WORKER_NAME, job.record.id)) is not None
        ):
            return  # its end is in memory, or its worker still runs
        try:
            stored = await _stored(self._shared.store, job.record.id)
        except StoreUnavailable as exc:  # cannot tell: resumed, as before
            _log.warning("optimization.record_unread", optimization_id=job.record.id,
                         error=str(exc))  # fmt: skip
            return
        if stored is not None and stored.status not in _ACTIVE:
            await self._stop_job(job)  # its supervisor outlives the worker that ended
            job.record, job.progress = stored, None

    async def _load_jobs(self) -> None:
        """Every stored job; a row that cannot be decoded is skipped and reported."""
        for record in await self._shared.store.jobs(on_corrupt=self._skipped):
            try:
                spec = parse_job_spec(record.spec)
            except OptimizationSpecError as exc:
                self._skipped(CorruptRecord(store="jobs", record=record.id, problem=str(exc)))
                continue
            self._shared.jobs[record.id] = _Job(record, spec)

    def _skipped(self, exc: CorruptRecord) -> None:
        report_skipped(self.runtime.events.ring, exc)

    # --- client requests -----------------------------------------------------------------

    @handler
    async def _submit(self, msg: SubmitJob) -> str | ErrorReply:
        try:
            spec = parse_job_spec(msg.spec)
            load_metric(spec.metric)
            load_examples(spec.trainset, spec.input_keys, field="trainset")
            if spec.valset is not None:
                load_examples(spec.valset, spec.input_keys, field="valset")
            if spec.program_id is None:  # a spec that cannot be built fails here, not later
                await rebuild_student(spec, None, self._lm_for)
        except LmvisorError as exc:
            return ErrorReply(exc)
        now = time.time()
        record = JobRecord(
            id=uuid.uuid4().hex[:12], spec=spec.to_dict(), status="running",
            created=now, updated=now,
        )  # fmt: skip
        try:
            await self._shared.store.save_job(record)
        except StoreUnavailable as exc:  # the caller's answer, not this actor's crash
            return ErrorReply(exc)
        job = _Job(record, spec)
        self._shared.jobs[record.id] = job
        await self._ensure_running(job)
        await self._flush()
        return record.id

    @handler
    async def _get(self, msg: GetJob) -> OptimizationStatus | ErrorReply:
        job = self._shared.jobs.get(msg.job_id)
        if job is None:
            return ErrorReply(UnknownJob(job_id=msg.job_id))
        try:
            await self._refresh([job])
        except StoreUnavailable as exc:
            return ErrorReply(exc)
        return _status(job)

    @handler
    async def _list(self, msg: ListJobs) -> list[OptimizationStatus] | ErrorReply:
        jobs = list(self._shared.jobs.values())
        try:
            await self._refresh(jobs)
        except StoreUnavailable as exc:
            return ErrorReply(exc)
        return [_status(job) for job in jobs]

    @handler
    async def _cancel(self, msg: CancelJob) -> OptimizationStatus | ErrorReply:
        job = self._shared.jobs.get(msg.job_id)
        if job is None:
            return ErrorReply(UnknownJob(job_id=msg.job_id))
        try:
            if job.unsaved:  # a cancel (or an end) whose record is not yet in the file
                await self._write(job)
            elif _unrun(job):  # another app may have finished it meanwhile
                stored = await _stored(self._shared.store, job.record.id)
                job.record = stored if stored is not None else job.record
        except StoreUnavailable as exc:
            return ErrorReply(exc)
        if job.record.status not in _ACTIVE:
            return _status(job)
        if job.supervisor is None and not self._claim(job.record.id):
            path = str(self._shared.store.path)
            return ErrorReply(JobRunsElsewhere(job_id=job.record.id, path=path))
        await self._stop_job(job, release=False)
        error = {"type": "Cancelled", "code": "cancelled", "message": "cancelled by request"}
        job.record = job.record.evolve(status="cancelled", error=error, updated=time.time())
        job.progress = None
        self.runtime.events.ring.emit(OPTIMIZATION_FAILED, {
            "optimization_id": job.record.id, "optimizer": job.spec.optimizer,
            "error": error["message"], "code": "cancelled",
        })  # fmt: skip
        try:
            await self._write(job)
        except StoreUnavailable as exc:
            return ErrorReply(exc)  # the claim is held until it is written (see `_flush`)
        self._shared.claims.release(job.record.id)
        return _status(job)

    @handler
    async def _result(self, msg: GetResult) -> Module | ErrorReply:
        job = self._shared.jobs.get(msg.job_id)
        if job is None:
            return ErrorReply(UnknownJob(job_id=msg.job_id))
        try:
            await self._refresh([job])  # another app may have finished it
        except StoreUnavailable as exc:
            return ErrorReply(exc)
        if job.record.status != "completed" or job.record.result is None:
            return ErrorReply(JobNotFinished(job_id=msg.job_id, status=job.record.status))
        if job.module is None:
            try:
                student = await rebuild_student(job.spec, self._resolve, self._lm_for)
                job.module = student.reset_copy().load_state(job.record.result)
            except Exception as exc:
                return ErrorReply(exc)
        return job.module.deepcopy()

    @handler
    async def _suspend(self, msg: SuspendJobs) -> list[str] | ErrorReply:
        """Every running job is stopped even when the file fails; then the failure answers."""
        suspended, failure = [], None
        self._shared.draining = True
        for job in list(self._shared.jobs.values()):
            if job.record.status not in _ACTIVE or job.supervisor is None:
                continue  # finished, or already suspended
            await self._stop_job(job)
            job.suspended = True  # stays stopped here, even if its record cannot be written
            try:
                await self._suspended(job)
            except StoreUnavailable as exc:
                # Progress only: the file's `running` row and the checkpoints resume it. Kept
                # unsaved, it would later be written over whatever another app stored since.
                job.unsaved = False
                failure = exc
                continue
            if job.record.status in _ACTIVE:
                suspended.append(job.record.id)
        return suspended if failure is None else ErrorReply(failure)

    async def _suspended(self, job: _Job) -> None:
        """Store a stopped job's progress, unless its worker stored its end just before."""
        stored = await _stored(self._shared.store, job.record.id)
        if stored is not None and stored.status not in _ACTIVE:
            job.record, job.progress = stored, None
            return
        progress = job.progress
        if progress is not None:
            job.record = job.record.evolve(
                trials_done=progress.trials_done, trials_total=progress.trials_total,
                best_score=progress.best_score,
            )  # fmt: skip
        job.record = job.record.evolve(updated=time.time())
        self.runtime.events.ring.emit(OPTIMIZATION_SUSPENDED, {
            "optimization_id": job.record.id, "optimizer": job.spec.optimizer,
            "trials_done": job.record.trials_done,
        })  # fmt: skip
        await self._write(job)

    # --- worker and system messages -----------------------------------------------------------

    @handler
    def _progress(self, msg: JobProgress) -> None:
        job = self._shared.jobs.get(msg.job_id)
        if job is not None:
            job.progress = msg.progress

    @handler
    async def _finished(self, msg: JobFinished) -> None:
        job = self._shared.jobs.get(msg.job_id)
        if job is None or job.record.status not in _ACTIVE:
            return
        created = job.record.created
        job.record, job.module, job.progress = msg.record, msg.module, None
        await self._stop_job(job, release=msg.stored)  # unsaved: held until written
        if not msg.stored:  # the worker could not write it: keep it until a write succeeds
            job.record, job.unsaved = msg.record.evolve(created=created), True
            await self._flush()

    @handler
    async def _down(self, msg: Down) -> None:
        for job in self._shared.jobs.values():
            if job.supervisor is not msg.ref:
                continue
            job.supervisor = None
            if job.record.status in _ACTIVE and not is_shutdown_exit(msg.reason):
                error = {"type": "Crashed", "code": "crashed",
                         "message": f"the job's worker kept crashing: {msg.reason!r}"}  # fmt: skip
                await self._settle(job, job.record.evolve(status="failed", error=error))
            elif job.record.status in _ACTIVE:
                await self._gave_up(job, msg.reason)
            if not job.unsaved:  # an end only in memory keeps the job claimed until written
                self._shared.claims.release(job.record.id)

    async def _gave_up(self, job: _Job, reason: object) -> None:
        """The job's supervisor gave up after its restarts (a Shutdown reason): the end its
        worker stored, if any, else failed."""
        try:
            stored = await _stored(self._shared.store, job.record.id)
        except StoreUnavailable as exc:  # its end may be stored: never overwrite it
            _log.warning("optimization.record_unread", optimization_id=job.record.id,
                         error=str(exc))  # fmt: skip
            return
        if stored is not None and stored.status not in _ACTIVE:
            job.record = stored
            return
        error = {"type": "Crashed", "code": "crashed",
                 "message": f"the job's worker stopped: {reason!r}"}  # fmt: skip
        await self._settle(job, job.record.evolve(status="failed", error=error))

    @handler
    def _config_changed(self, msg: ConfigChanged) -> None:
        self._config = msg.config.optimization
        for job in self._shared.jobs.values():
            if job.executor is not None and job.record.status in _ACTIVE:
                job.executor.resize(self._config.concurrency)

    # --- helpers ------------------------------------------------------------------------------

    async def _ensure_running(self, job: _Job) -> None:
        if job.supervisor is not None and job.supervisor.alive:
            # a new incarnation: the monitor its predecessor held died with it
            self.monitor(job.supervisor)
            return
        job.supervisor = None
        if not self._claim(job.record.id):
            return
        config = self._config
        if job.executor is None:
            job.executor = LocalExecutor(
                concurrency=config.concurrency,
                max_errors=config.max_errors,
                timeout=config.example_timeout,
            )
        context = JobContext(
            job_id=job.record.id, spec=job.spec, lm=self._lm, config=config,
            executor=job.executor, store=self._shared.store, resolve_program=self._resolve,
            deploy=self._deploy, coordinator=COORDINATOR_NAME, lm_for=self._lm_for,
        )  # fmt: skip
        jobs = self.runtime.whereis(_JOBS_NAME)
        if jobs is None:
            raise RuntimeError("optimization_jobs supervisor is not running")
        job.supervisor = await start_child(jobs, job_supervisor_spec(context))
        self.monitor(job.supervisor)

    async def _refresh(self, jobs: list[_Job]) -> None:
        """Bring the unrun among `jobs` up to date: the stored record is the news of a job
        another app runs; one the file shows running that no app holds any more (its app
        was killed, or suspended it and stopped) is resumed here. This app's own
        suspended jobs stay suspended.

        Raises:
            StoreUnavailable: the file cannot be read.
        """
        unrun = [job for job in jobs if _unrun(job)]
        if not unrun:
            return
        stored = await self._shared.store.some_jobs([job.record.id for job in unrun])
        for job in unrun:  # one read for all: a list of many jobs run elsewhere stays cheap
            job.record = stored.get(job.record.id, job.record)
            if job.record.status in _ACTIVE and not job.suspended and self._may_take(job):
                await self._take_over(job)

    async def _take_over(self, job: _Job) -> None:
        """Run `job`, just claimed here, unless it ended since it was read (its runner
        stored its end and let go of it meanwhile).

        Raises:
            StoreUnavailable: the file cannot be read (the claim is dropped).
        """
        try:
            stored = await _stored(self._shared.store, job.record.id)
        except StoreUnavailable:
            self._shared.claims.release(job.record.id)
            raise
        job.record = stored if stored is not None else job.record
        if job.record.status in _ACTIVE:
            await self._ensure_running(job)
        else:
            self._shared.claims.release(job.record.id)

    def _may_take(self, job: _Job) -> bool:
        """Whether no app holds `job` any more (claimed here now), quietly: status polls ask."""
        if self._shared.draining or self.runtime.whereis(_JOBS_NAME) is None:
            return False  # the app or the subtree is stopping
        try:
            return self._shared.claims.claim(job.record.id)
        except OSError:
            return False  # cannot tell: left to whoever runs it

    def _claim(self, job_id: str) -> bool:
        """Whether this app may run `job_id` (see the module docstring)."""
        try:
            if self._shared.claims.claim(job_id):
                return True
        except OSError as exc:  # no claim can be kept: run it, as without claims
            _log.warning("optimization.claim_failed", optimization_id=job_id, error=str(exc))
            return True
        _log.info("optimization.claimed_elsewhere", optimization_id=job_id)
        return False

    async def _stop_job(self, job: _Job, *, release: bool = True) -> None:
        supervisor, job.supervisor = job.supervisor, None
        jobs = self.runtime.whereis(_JOBS_NAME)
        if supervisor is not None and supervisor.alive and jobs is not None:
            self.demonitor(supervisor)
            with contextlib.suppress(ValueError):  # it exited meanwhile
                await terminate_child(jobs, supervisor)
        if release:
            self._shared.claims.release(job.record.id)

    async def _settle(self, job: _Job, record: JobRecord) -> None:
        """An internal end (a crash): kept unsaved, with a warning, when the write fails."""
        job.record = record.evolve(updated=time.time())
        job.progress = None
        job.unsaved = True
        await self._flush()

    async def _write(self, job: _Job) -> None:
        """Write `job.record`, then every other unsaved record.

        Raises:
            StoreUnavailable: `job`'s own write failed; it stays unsaved.
        """
        job.unsaved = True
        await self._shared.store.save_job(job.record)
        job.unsaved = False
        await self._flush()

    async def _flush(self) -> None:
        """Retry every unsaved record; one that fails again stays unsaved, with a warning."""
        await _flush(self._shared, _log.warning)


def _unrun(job: _Job) -> bool:
    """Running with no worker here: run by another app on the file (or suspended), so the
    stored record is the news (unless this app's own is newer, not yet written)."""
    return job.record.status in _ACTIVE and job.supervisor is None and not job.unsaved


async def _flush(shared: _Shared, log: Callable[..., object]) -> None:
    """Write every unsaved record; stop at the first failure (the file is out), logging it."""
    for job in [job for job in shared.jobs.values() if job.unsaved]:
        try:
            await shared.store.save_job(job.record)
        except StoreUnavailable as exc:
            log("optimization.record_unsaved", optimization_id=job.record.id,
                status=job.record.status, error=str(exc))  # fmt: skip
            return
        job.unsaved = False
        if job.supervisor is None and job.record.status not in _ACTIVE:
            shared.claims.release(job.record.id)  # held while its end was only in memory


async def _stored(store: OptimizationStore, job_id: str) -> JobRecord | None:
    """The job as stored, or None when it is missing or its row cannot be decoded."""
    try:
        return await store.job(job_id)
    except CorruptRecord:
        return None


@final
class _StoreKeeper(Actor):
    """Closes the jobs file and drops the claims when the optimization subtree stops."""

    def __init__(self, shared: _Shared) -> None:
        self._shared = shared

    async def terminate(self, reason: object) -> None:
        await _flush(self._shared, _log.error)  # the last chance: lost when this fails too
        self._shared.claims.release_all()
        await self._shared.store.close()


def _status(job: _Job) -> OptimizationStatus:
    record, progress = job.record, job.progress
    return OptimizationStatus(
        id=record.id,
        optimizer=job.spec.optimizer,
        program=job.spec.program_id or str(job.spec.to_dict()["program"].get("module")),
        status=record.status,
        trials_done=progress.trials_done if progress else record.trials_done,
        trials_total=progress.trials_total if progress else record.trials_total,
        best_score=progress.best_score if progress else record.best_score,
        eta=progress.eta if progress else None,
        created=record.created,
        updated=record.updated,
        version=record.version,
        error=record.error,
    )


def optimization_spec(
    *,
    lm: LM,
    lm_for: LMFor | None = None,
    resolve_program: ResolveProgram | None = None,
    deploy: DeployProgram | None = None,
    store_path: str | Path | None = None,
    id: str = "optimization",
) -> ChildSpec:
    """The optimization subtree as one child spec (see the module docstring).

    Args:
        lm: the LM jobs run through (in the app: the cache-fronted router).
        lm_for: model name -> LM, for the models a job's program spec names (a two_step
            adapter's extraction model); without it such a spec is refused at submit.
        resolve_program: program id -> a fresh copy of the registered program.
        deploy: hot-swaps a result into a program id, returning the new version number.
        store_path: the SQLite file for jobs and checkpoints; None keeps them in memory.
        id: the child's id in its parent.
    """
    store = OptimizationStore(store_path)
    shared = _Shared(store, JobClaims(store.path))

    def start() -> Supervisor:
        return Supervisor(
            [
                ChildSpec("optimization_store", lambda: _StoreKeeper(shared)),
                ChildSpec(
                    _JOBS_NAME,
                    lambda: DynamicSupervisor(max_restarts=100, max_seconds=1.0),
                    type="supervisor",
                    name=_JOBS_NAME,
                ),
                ChildSpec(
                    "optimization_coordinator",
                    lambda: OptimizationCoordinator(
                        shared,
                        lm=lm,
                        lm_for=lm_for,
                        resolve_program=resolve_program,
                        deploy=deploy,
                    ),
                    name=COORDINATOR_NAME,
                ),
            ],
            strategy="rest_for_one",
        )

    return ChildSpec(id, start, type="supervisor")
