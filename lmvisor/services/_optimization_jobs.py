"""The optimization jobs one app knows, kept consistent with a jobs file other apps share.

`JobTable` is what outlives an `OptimizationCoordinator` incarnation: the store, this app's
claims (`lmvisor.services._job_claims`) and one `Job` per stored job. It holds the rules
that keep two apps on one data directory from running a job twice or losing its end:

- a job runs only where it is claimed; one another app runs is reported from the file,
  and the file is read once per query for all such jobs (`news`), not once per job;
- a job its runner left (closed, killed, suspended by a drain) is taken over only once
  claimed here and read again (`still_running`): its end may have been stored meanwhile;
- a record the file refuses (`StoreUnavailable`: locked past the busy timeout, disk full)
  is kept in memory, marked unsaved, reported as the job's status and retried by every
  later write (`flush`), a repeated cancel and the subtree's stop; so is a worker's final
  record the file refused, and a crashed worker's end (an `optimization.record_unsaved`
  warning names the job). The job stays claimed until its end is written, so no other app
  runs it again meanwhile. `StoreKeeper` makes the last attempt and drops the claims when
  the subtree stops; a record still unsaved then is logged as an error and lost: the file
  shows the job running, so the next start resumes it from its checkpoint (a cancelled job
  runs again; a finished one replays its journal to the same result).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import final

from lmvisor.optimizers import LocalExecutor, RunProgress
from lmvisor.programs.module import Module
from lmvisor.runtime.actor import Actor, ActorRef
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.runtime.observe.names import OPTIMIZATION_FAILED, OPTIMIZATION_SUSPENDED
from lmvisor.services._job_claims import JobClaims
from lmvisor.services.errors import CorruptRecord, OptimizationSpecError, StoreUnavailable
from lmvisor.services.optimization import OptimizationStatus
from lmvisor.services.optimization_job import JobSpec, parse_job_spec
from lmvisor.services.optimization_store import ACTIVE_STATUSES, JobRecord, OptimizationStore

__all__ = ["Job", "JobTable", "StoreKeeper", "job_status"]


_log = get_logger("lmvisor.services.optimization_coordinator")  # the coordinator's events


@final
@dataclass(slots=True)
class Job:
    """One job as this app knows it: its record, and what runs it here (if anything).

    An ended job is held without its inline datasets (`record` drops them when it is set
    to an end; the file keeps them): a daemon that ran jobs for weeks held every one's
    trainset and valset for good.
    """

    _record: JobRecord
    spec: JobSpec
    executor: LocalExecutor | None = None
    supervisor: ActorRef | None = None
    progress: RunProgress | None = None
    module: Module | None = None
    unsaved: bool = False
    """`record` is newer than the file: its write failed (see the module docstring)."""
    suspended: bool = False
    """Stopped here by `suspend_optimizations` (a drain): not taken over again here."""

    def __post_init__(self) -> None:
        self.record = self._record

    @property
    def record(self) -> JobRecord:
        """The job's record (an ended one without its inline datasets)."""
        return self._record

    @record.setter
    def record(self, record: JobRecord) -> None:
        if record.status not in ACTIVE_STATUSES:
            record, self.spec = _without_rows(record, self.spec)
        self._record = record

    @property
    def unrun(self) -> bool:
        """Running with no worker here: run by another app on the file (or suspended), so
        the stored record is the news (unless this app's own is newer, not yet written)."""
        return (
            self.record.status in ACTIVE_STATUSES and self.supervisor is None and not self.unsaved
        )


@final
@dataclass(slots=True)
class JobTable:
    """The store, the claims and the jobs of one app (see the module docstring)."""

    store: OptimizationStore
    claims: JobClaims
    jobs: dict[str, Job] = field(default_factory=dict)
    loaded: bool = False
    draining: bool = False
    """`suspend_optimizations` ran: the app is stopping, it takes no job over."""

    async def add(self, spec: JobSpec) -> Job:
        """A new running job for `spec`, stored.

        Raises:
            StoreUnavailable: the file refused it (nothing is kept).
        """
        now = time.time()
        record = JobRecord(
            id=uuid.uuid4().hex[:12], spec=spec.to_dict(), status="running",
            created=now, updated=now,
        )  # fmt: skip
        await self.store.save_job(record)
        job = self.jobs[record.id] = Job(record, spec)
        return job

    async def current(self, job: Job) -> None:
        """Bring `job` up to date before acting on it: write its record if unsaved (an end
        not yet in the file), else read it when another app may run it (and have ended it).

        Raises:
            StoreUnavailable: the file cannot be written or read.
        """
        if job.unsaved:
            await self.write(job)
        elif job.unrun:
            stored = await self.stored(job.record.id)
            job.record = stored if stored is not None else job.record

    async def cancel(self, job: Job, ring: EventRing) -> None:
        """Mark `job` (stopped, claimed here) cancelled, with an `optimization.failed` event,
        and store it; its claim drops once stored.

        Raises:
            StoreUnavailable: the file refused it: kept unsaved, and the job claimed.
        """
        error = {"type": "Cancelled", "code": "cancelled", "message": "cancelled by request"}
        job.record = job.record.evolve(status="cancelled", error=error, updated=time.time())
        job.progress = None
        ring.emit(OPTIMIZATION_FAILED, {
            "optimization_id": job.record.id, "optimizer": job.spec.optimizer,
            "error": error["message"], "code": "cancelled",
        })  # fmt: skip
        await self.write(job)
        self.claims.release(job.record.id)

    async def stored(self, job_id: str) -> JobRecord | None:
        """The job as stored, or None when it is missing or its row cannot be decoded.

        Raises:
            StoreUnavailable: the file cannot be read.
        """
        try:
            return await self.store.job(job_id)
        except CorruptRecord:
            return None

    async def stored_end(self, job: Job) -> JobRecord | None:
        """The end the file holds for `job` (its worker stored it), or None (still running).

        Raises:
            StoreUnavailable: the file cannot be read (with a warning): its end may be
                stored, so the caller must not write over it.
        """
        try:
            stored = await self.stored(job.record.id)
        except StoreUnavailable as exc:
            _log.warning("optimization.record_unread", optimization_id=job.record.id,
                         error=str(exc))  # fmt: skip
            raise
        return None if stored is None or stored.status in ACTIVE_STATUSES else stored

    async def load(self, on_corrupt: Callable[[CorruptRecord], None]) -> None:
        """Every stored job (once per app), an ended one read without its inline datasets
        (as `Job` holds it); a row that cannot be decoded is skipped and handed to
        `on_corrupt`.

        Raises:
            StoreUnavailable: the file cannot be read.
        """
        for record in await self.store.jobs(on_corrupt=on_corrupt, ended_rows=False):
            try:
                spec = parse_job_spec(record.spec, ended=record.status not in ACTIVE_STATUSES)
            except OptimizationSpecError as exc:
                on_corrupt(CorruptRecord(store="jobs", record=record.id, problem=str(exc)))
                continue
            self.jobs[record.id] = Job(record, spec)
        self.loaded = True

    async def suspended(self, job: Job, ring: EventRing) -> None:
        """Store a job stopped by a drain with its progress (an `optimization.suspended`
        event), unless its worker stored its end just before.

        Raises:
            StoreUnavailable: the file cannot be read or written (nothing is kept unsaved).
        """
        stored = await self.stored(job.record.id)
        if stored is not None and stored.status not in ACTIVE_STATUSES:
            job.record, job.progress = stored, None
            return
        progress = job.progress
        if progress is not None:
            job.record = job.record.evolve(
                trials_done=progress.trials_done, trials_total=progress.trials_total,
                best_score=progress.best_score,
            )  # fmt: skip
        job.record = job.record.evolve(updated=time.time())
        ring.emit(OPTIMIZATION_SUSPENDED, {
            "optimization_id": job.record.id, "optimizer": job.spec.optimizer,
            "trials_done": job.record.trials_done,
        })  # fmt: skip
        try:
            await self.write(job)
        except StoreUnavailable:
            # Progress only: the file's `running` row and the checkpoints resume it. Kept
            # unsaved, it would later be written over whatever another app stored since.
            job.unsaved = False
            raise

    async def news(self, jobs: list[Job]) -> list[Job]:
        """Bring the unrun among `jobs` up to date from one read of the file; the ones it
        shows still running (and not suspended here) are returned, for `may_take`.

        Raises:
            StoreUnavailable: the file cannot be read.
        """
        unrun = [job for job in jobs if job.unrun]
        if not unrun:
            return []
        stored = await self.store.some_jobs([job.record.id for job in unrun])
        for job in unrun:
            job.record = stored.get(job.record.id, job.record)
        return [job for job in unrun if job.record.status in ACTIVE_STATUSES and not job.suspended]

    def may_take(self, job: Job) -> bool:
        """Whether no app holds `job` any more (claimed here now), quietly: status polls ask."""
        try:
            return self.claims.claim(job.record.id)
        except OSError:
            return False  # cannot tell: left to whoever runs it

    async def still_running(self, job: Job) -> bool:
        """Whether `job`, just claimed here, is still running in the file (read again: its
        runner may have stored its end and let go of it meanwhile); else its claim drops.

        Raises:
            StoreUnavailable: the file cannot be read (the claim is dropped).
        """
        try:
            stored = await self.stored(job.record.id)
        except StoreUnavailable:
            self.claims.release(job.record.id)
            raise
        job.record = stored if stored is not None else job.record
        if job.record.status not in ACTIVE_STATUSES:
            self.claims.release(job.record.id)
        return job.record.status in ACTIVE_STATUSES

    def claim(self, job_id: str) -> bool:
        """Whether this app may run `job_id` (see the module docstring)."""
        try:
            if self.claims.claim(job_id):
                return True
        except OSError as exc:  # no claim can be kept: run it, as without claims
            _log.warning("optimization.claim_failed", optimization_id=job_id, error=str(exc))
            return True
        _log.info("optimization.claimed_elsewhere", optimization_id=job_id)
        return False

    async def crashed(self, job: Job, reason: object, *, gave_up: bool) -> None:
        """`job`'s supervisor died: failed as crashed. One that gave up after its restarts
        (a Shutdown reason) ends as its worker stored, if it did; when the file cannot be
        read it is left as it is (its end may be stored: never written over)."""
        if not gave_up:
            message = f"the job's worker kept crashing: {reason!r}"
        else:
            try:
                end = await self.stored_end(job)
            except StoreUnavailable:
                return
            if end is not None:
                job.record = end
                return
            message = f"the job's worker stopped: {reason!r}"
        error = {"type": "Crashed", "code": "crashed", "message": message}
        await self.settle(job, job.record.evolve(status="failed", error=error))

    async def settle(self, job: Job, record: JobRecord) -> None:
        """An internal end (a crash): kept unsaved, with a warning, when the write fails."""
        job.record = record.evolve(updated=time.time())
        job.progress = None
        job.unsaved = True
        await self.flush()

    async def write(self, job: Job) -> None:
        """Write `job.record`, then every other unsaved record.

        Raises:
            StoreUnavailable: `job`'s own write failed; it stays unsaved.
        """
        job.unsaved = True
        await self.store.save_job(job.record, keep_spec=True)
        job.unsaved = False
        await self.flush()

    async def flush(self, log: Callable[..., object] = _log.warning) -> None:
        """Write every unsaved record; stop at the first failure (the file is out), logging
        it. A written end drops the claim it held."""
        for job in [job for job in self.jobs.values() if job.unsaved]:
            try:
                await self.store.save_job(job.record, keep_spec=True)
            except StoreUnavailable as exc:
                log("optimization.record_unsaved", optimization_id=job.record.id,
                    status=job.record.status, error=str(exc))  # fmt: skip
                return
            job.unsaved = False
            if job.supervisor is None and job.record.status not in ACTIVE_STATUSES:
                self.claims.release(job.record.id)  # held while its end was only in memory


@final
class StoreKeeper(Actor):
    """Closes the jobs file and drops the claims when the optimization subtree stops."""

    def __init__(self, table: JobTable) -> None:
        self._table = table

    async def terminate(self, reason: object) -> None:
        await self._table.flush(_log.error)  # the last chance: lost when this fails too
        self._table.claims.release_all()
        await self._table.store.close()


def _without_rows(record: JobRecord, spec: JobSpec) -> tuple[JobRecord, JobSpec]:
    """`record` and `spec` without inline dataset rows (a dataset's path stays)."""
    stored = record.spec
    inline = [name for name in ("trainset", "valset") if isinstance(stored.get(name), list)]
    if inline:
        record = record.evolve(spec={**stored, **{name: [] for name in inline}})
    if not isinstance(spec.trainset, str) or not isinstance(spec.valset, str | None):
        light_valset = spec.valset if isinstance(spec.valset, str) else None
        trainset = spec.trainset if isinstance(spec.trainset, str) else ()
        spec = replace(spec, trainset=trainset, valset=light_valset)
    return record, spec


def job_status(job: Job) -> OptimizationStatus:
    """What `optimization_status` answers for `job`."""
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
