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
runs only where it is claimed: of two apps open on one data directory, the second leaves the
first one's running jobs to it (and reports their stored progress, one read of the file per
query). When the first goes away (closed, killed, or suspended by a drain) its jobs are
free: the second resumes one at the next status, list or result query that finds it
unclaimed (an app's own suspended jobs stay suspended there). Those rules, and how a record
the file refuses is kept, live in `lmvisor.services._optimization_jobs`. A stored job whose
row cannot be decoded is skipped (a `store.record_skipped` event and a warning).

A job claimed by another app is not cancelled here: `cancel` answers `JobRunsElsewhere`
(409 at the daemon), naming the jobs file. Marking it cancelled in the file would not stop
it (its runner keeps paying for LM calls and may write its result over the cancellation),
so the caller is told to cancel it where it runs. A job no app runs (suspended, or its app
closed) is claimed for the cancel, so no app resumes it while its cancellation is written.

After start-up a failure of the jobs file (`StoreUnavailable`: locked by another process
past the busy timeout, disk full) never stops the coordinator: a caller's request (submit,
status and list of jobs run elsewhere, cancel, suspend) answers it, and a record the file
refuses is kept in memory and written later (see `lmvisor.services._optimization_jobs`).

The coordinator subscribes to `optimization.*` config: new jobs take the settings in force
when submitted; a `concurrency` change also resizes the executor of every running job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, final

import anyio.to_thread

from lmvisor.config.schema import OptimizationConfig
from lmvisor.optimizers import LocalExecutor, load_metric
from lmvisor.programs.lm import LM
from lmvisor.programs.module import Module
from lmvisor.runtime.actor import Actor, Deferred, ErrorReply, handler
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.config_service import CONFIG_SERVICE_NAME, ConfigChanged, subscribe_config
from lmvisor.runtime.dynamic_supervisor import DynamicSupervisor
from lmvisor.runtime.messages import Call, Down, is_shutdown_exit
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.runtime.supervisor import Supervisor, start_child, terminate_child
from lmvisor.services._job_claims import JobClaims
from lmvisor.services._optimization_jobs import Job, JobTable, StoreKeeper, job_status
from lmvisor.services._sqlite import report_skipped
from lmvisor.services.errors import (
    CorruptRecord,
    JobNotFinished,
    JobRunsElsewhere,
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
from lmvisor.services.optimization_job import (
    JobSpec,
    build_optimizer,
    parse_job_spec,
    read_examples,
)
from lmvisor.services.optimization_store import ACTIVE_STATUSES, OptimizationStore
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


@final
@dataclass(slots=True)
class _AddJob(Call[str]):
    """Store and start a job whose spec `SubmitJob` has checked; replies with its id.

    Not frozen: `abandoned` is set when the submit's caller gave up while this waited in
    the mailbox, so the job it would submit again is not added."""

    spec: JobSpec
    abandoned: bool = False


_log = get_logger(__name__)


class OptimizationCoordinator(Actor):
    """Serves the optimization jobs of one application (see the module docstring)."""

    def __init__(
        self,
        table: JobTable,
        *,
        lm: LM,
        lm_for: LMFor | None,
        resolve_program: ResolveProgram | None,
        deploy: DeployProgram | None,
    ) -> None:
        self._table = table
        self._lm = lm
        self._lm_for = lm_for
        self._resolve = resolve_program
        self._deploy = deploy
        self._config = OptimizationConfig()

    def format_status(self) -> object:
        return {"jobs": len(self._table.jobs), "store": repr(self._table.store)}

    async def started(self) -> None:
        self._config = self.runtime.config.optimization
        config = self.runtime.whereis(CONFIG_SERVICE_NAME)
        if config is not None:
            await subscribe_config(config, self.ref, "optimization")
        table = self._table
        await table.store.open()
        restarted = table.loaded
        if not restarted:
            await table.load(self._skipped)
        for job in table.jobs.values():
            if job.suspended:
                continue  # stopped by a drain: the next app on the file resumes it
            if restarted and job.record.status in ACTIVE_STATUSES:
                await self._catch_up(job)
            if job.record.status in ACTIVE_STATUSES:
                await self._ensure_running(job)

    async def _catch_up(self, job: Job) -> None:
        """After a restart: a job whose worker ended while no coordinator ran (its
        `JobFinished` went with the predecessor) takes its end from the file, not a rerun."""
        supervisor, worker = job.supervisor, self.runtime.whereis((WORKER_NAME, job.record.id))
        if job.unsaved or (supervisor is not None and supervisor.alive and worker is not None):
            return  # its end is in memory, or its worker still runs
        try:
            end = await self._table.stored_end(job)
        except StoreUnavailable:  # cannot tell: resumed, as before
            return
        if end is not None:
            await self._stop_job(job)  # its supervisor outlives the worker that ended
            job.record, job.progress = end, None

    def _skipped(self, exc: CorruptRecord) -> None:
        report_skipped(self.runtime.events.ring, exc)

    # --- client requests -----------------------------------------------------------------

    @handler
    def _submit(self, msg: SubmitJob) -> Deferred[str]:
        """Checked in a task of this actor's (its datasets read on a worker thread), so
        the coordinator answers other jobs' queries meanwhile; then added by `_AddJob`."""
        # With its caller: a submit given up on (its timeout while a large dataset is parsed,
        # a daemon client gone) must not add the job the caller will submit again.
        return self.defer(self._checked_submit(msg.spec), with_caller=True)

    async def _checked_submit(self, data: Mapping[str, Any]) -> str:
        # Worker threads that are never abandoned: a submit given up on waits out its own
        # bounded read, so the deferred tasks in flight (`max_in_flight`) bound the reads.
        spec = await anyio.to_thread.run_sync(parse_job_spec, data)
        # Built once here so a setting the optimizer refuses fails the submit, not the run.
        build_optimizer(spec, load_metric(spec.metric), self._config)
        await read_examples(spec.trainset, spec.input_keys, field="trainset")
        if spec.valset is not None:
            await read_examples(spec.valset, spec.input_keys, field="valset")
        if spec.program_id is None:  # a spec that cannot be built fails here, not later
            await rebuild_student(spec, None, self._lm_for)
        add = _AddJob(spec)
        try:
            return await self.ref.call(add, timeout=None)
        except asyncio.CancelledError:
            add.abandoned = True  # it may still wait in the mailbox: nothing to add
            raise

    @handler
    async def _add(self, msg: _AddJob) -> str | ErrorReply:
        if msg.abandoned:
            return ""  # nobody waits for this answer
        try:
            job = await self._table.add(msg.spec)
        except StoreUnavailable as exc:  # the caller's answer, not this actor's crash
            return ErrorReply(exc)
        if not self._table.draining:  # suspended meanwhile: stored, resumed at the next start
            await self._ensure_running(job)
        await self._table.flush()
        return job.record.id

    @handler
    async def _get(self, msg: GetJob) -> OptimizationStatus | ErrorReply:
        job = self._table.jobs.get(msg.job_id)
        if job is None:
            return ErrorReply(UnknownJob(job_id=msg.job_id))
        try:
            await self._refresh([job])
        except StoreUnavailable as exc:
            return ErrorReply(exc)
        return job_status(job)

    @handler
    async def _list(self, msg: ListJobs) -> list[OptimizationStatus] | ErrorReply:
        jobs = list(self._table.jobs.values())
        try:
            await self._refresh(jobs)
        except StoreUnavailable as exc:
            return ErrorReply(exc)
        return [job_status(job) for job in jobs]

    @handler
    async def _cancel(self, msg: CancelJob) -> OptimizationStatus | ErrorReply:
        job = self._table.jobs.get(msg.job_id)
        if job is None:
            return ErrorReply(UnknownJob(job_id=msg.job_id))
        try:
            await self._table.current(job)
        except StoreUnavailable as exc:
            return ErrorReply(exc)
        if job.record.status not in ACTIVE_STATUSES:
            return job_status(job)
        if job.supervisor is None and not self._table.claim(job.record.id):
            path = str(self._table.store.path)
            return ErrorReply(JobRunsElsewhere(job_id=job.record.id, path=path))
        await self._stop_job(job, release=False)
        try:
            await self._table.cancel(job, self.runtime.events.ring)
        except StoreUnavailable as exc:
            return ErrorReply(exc)  # the claim is held until it is written (see `flush`)
        return job_status(job)

    @handler
    async def _result(self, msg: GetResult) -> Module | ErrorReply:
        job = self._table.jobs.get(msg.job_id)
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
        self._table.draining = True
        for job in list(self._table.jobs.values()):
            if job.record.status not in ACTIVE_STATUSES or job.supervisor is None:
                continue  # finished, or already suspended
            await self._stop_job(job)
            job.suspended = True  # stays stopped here, even if its record cannot be written
            try:
                await self._table.suspended(job, self.runtime.events.ring)
            except StoreUnavailable as exc:
                failure = exc
                continue
            if job.record.status in ACTIVE_STATUSES:
                suspended.append(job.record.id)
        return suspended if failure is None else ErrorReply(failure)

    # --- worker and system messages -----------------------------------------------------------

    @handler
    def _progress(self, msg: JobProgress) -> None:
        job = self._table.jobs.get(msg.job_id)
        if job is not None:
            job.progress = msg.progress

    @handler
    async def _finished(self, msg: JobFinished) -> None:
        job = self._table.jobs.get(msg.job_id)
        if job is None or job.record.status not in ACTIVE_STATUSES:
            return
        created = job.record.created
        job.record, job.module, job.progress = msg.record, msg.module, None
        await self._stop_job(job, release=msg.stored)  # unsaved: held until written
        if not msg.stored:  # the worker could not write it: keep it until a write succeeds
            job.record, job.unsaved = msg.record.evolve(created=created), True
            await self._table.flush()

    @handler
    async def _down(self, msg: Down) -> None:
        for job in self._table.jobs.values():
            if job.supervisor is not msg.ref:
                continue
            job.supervisor = None
            if job.record.status in ACTIVE_STATUSES:
                await self._table.crashed(job, msg.reason, gave_up=is_shutdown_exit(msg.reason))
            if not job.unsaved:  # an end only in memory keeps the job claimed until written
                self._table.claims.release(job.record.id)

    @handler
    def _config_changed(self, msg: ConfigChanged) -> None:
        self._config = msg.config.optimization
        for job in self._table.jobs.values():
            if job.executor is not None and job.record.status in ACTIVE_STATUSES:
                job.executor.resize(self._config.concurrency)

    # --- helpers ------------------------------------------------------------------------------

    async def _ensure_running(self, job: Job) -> None:
        if job.supervisor is not None and job.supervisor.alive:
            # a new incarnation: the monitor its predecessor held died with it
            self.monitor(job.supervisor)
            return
        job.supervisor = None
        if not self._table.claim(job.record.id):
            return
        config = self._config
        if job.executor is None:
            job.executor = LocalExecutor(concurrency=config.concurrency,
                max_errors=config.max_errors, timeout=config.example_timeout)  # fmt: skip
        context = JobContext(
            job_id=job.record.id, spec=job.spec, lm=self._lm, config=config,
            executor=job.executor, store=self._table.store, resolve_program=self._resolve,
            deploy=self._deploy, coordinator=COORDINATOR_NAME, lm_for=self._lm_for,
        )  # fmt: skip
        jobs = self.runtime.whereis(_JOBS_NAME)
        if jobs is None:
            raise RuntimeError("optimization_jobs supervisor is not running")
        job.supervisor = await start_child(jobs, job_supervisor_spec(context))
        self.monitor(job.supervisor)

    async def _refresh(self, jobs: list[Job]) -> None:
        """Bring the unrun among `jobs` up to date (one read of the file): the stored record
        is the news of a job another app runs; one the file shows running that no app holds
        any more (its app was killed, or suspended it and stopped) is resumed here. This
        app's own suspended jobs stay suspended.

        Raises:
            StoreUnavailable: the file cannot be read.
        """
        table = self._table
        for job in await table.news(jobs):
            if self._taking() and table.may_take(job) and await table.still_running(job):
                await self._ensure_running(job)

    def _taking(self) -> bool:
        """Whether this app takes jobs over: not while it or the subtree is stopping."""
        return not self._table.draining and self.runtime.whereis(_JOBS_NAME) is not None

    async def _stop_job(self, job: Job, *, release: bool = True) -> None:
        supervisor, job.supervisor = job.supervisor, None
        jobs = self.runtime.whereis(_JOBS_NAME)
        if supervisor is not None and supervisor.alive and jobs is not None:
            self.demonitor(supervisor)
            with contextlib.suppress(ValueError):  # it exited meanwhile
                await terminate_child(jobs, supervisor)
        if release:
            self._table.claims.release(job.record.id)


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
    table = JobTable(store, JobClaims(store.path))

    def start() -> Supervisor:
        return Supervisor(
            [
                ChildSpec("optimization_store", lambda: StoreKeeper(table)),
                ChildSpec(
                    _JOBS_NAME,
                    lambda: DynamicSupervisor(max_restarts=100, max_seconds=1.0),
                    type="supervisor",
                    name=_JOBS_NAME,
                ),
                ChildSpec(
                    "optimization_coordinator",
                    lambda: OptimizationCoordinator(
                        table,
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
