"""The OptimizationCoordinator when its jobs file fails after start-up, and cancels across apps."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from lmvisor._files import read_regular_file
from lmvisor.runtime import Runtime
from lmvisor.runtime.observe.names import OPTIMIZATION_ITERATION, OPTIMIZATION_STARTED
from lmvisor.services import (
    BUSY_RESTARTS,
    COORDINATOR_NAME,
    JobRunsElsewhere,
    OptimizationSpecError,
    OptimizationStatus,
    OptimizationStore,
    StoreBusy,
    StoreUnavailable,
    cancel_optimization,
    list_optimizations,
    optimization_result,
    optimization_status,
    submit_optimization,
    suspend_optimizations,
)
from lmvisor.services._job_claims import JobClaims
from lmvisor.services.optimization_coordinator import _AddJob
from lmvisor.services.optimization_job import parse_job_spec
from lmvisor.services.optimization_store import JobRecord
from lmvisor.services.optimization_worker import WORKER_NAME
from tests.runtime.helpers import eventually
from tests.services._optimization_support import SlowLM, train_rows
from tests.services.test_optimization import (
    _copro,
    _crash_coordinator,
    _GatedLM,
    _start,
    _wait,
)

_REFUSE = "CREATE TRIGGER refuse BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'disk full'); END"


def _sql(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Run `sql` on the file behind the store's back, as another process would."""
    with sqlite3.connect(path) as db:
        rows = db.execute(sql).fetchall()
    db.close()
    return rows


def _stored_status(path: Path, job_id: str) -> str:
    ((status,),) = _sql(path, f"SELECT status FROM jobs WHERE id = '{job_id}'")
    return str(status)


def _refused(path: Path) -> str:
    return rf"^store {str(path)!r} cannot be used: disk full \(IntegrityError\)"


class TestStoreFailures:
    async def test_a_refused_cancel_answers_the_typed_error_and_is_retried(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A cancel the file refuses is the caller's StoreUnavailable, not a coordinator
        crash; the job stays stopped and cancelled here, and a repeated cancel stores it."""
        db = tmp_path / "optimization.sqlite"
        coordinator = await _start(runtime, _GatedLM(), db)
        incarnation = runtime.whereis(COORDINATOR_NAME)
        job_id = await submit_optimization(coordinator, _copro())
        _sql(db, _REFUSE)
        with pytest.raises(StoreUnavailable, match=_refused(db)):
            await cancel_optimization(coordinator, job_id)
        assert runtime.whereis(COORDINATOR_NAME) is incarnation and incarnation is not None
        assert runtime.whereis(("optimization_worker", job_id)) is None
        assert (await optimization_status(coordinator, job_id)).status == "cancelled"
        assert _stored_status(db, job_id) == "running"
        with pytest.raises(StoreUnavailable, match=_refused(db)):
            await cancel_optimization(coordinator, job_id)
        _sql(db, "DROP TRIGGER refuse")
        assert (await cancel_optimization(coordinator, job_id)).status == "cancelled"
        assert _stored_status(db, job_id) == "cancelled"
        assert runtime.whereis(COORDINATOR_NAME) is incarnation

    async def test_an_unsaved_record_is_written_by_the_next_write(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A cancellation the file refused is written with the next job's submit."""
        db = tmp_path / "optimization.sqlite"
        coordinator = await _start(runtime, _GatedLM(), db)
        job_id = await submit_optimization(coordinator, _copro())
        _sql(db, _REFUSE)
        with pytest.raises(StoreUnavailable):
            await cancel_optimization(coordinator, job_id)
        _sql(db, "DROP TRIGGER refuse")
        other = await submit_optimization(coordinator, _copro(rows=4))
        assert _stored_status(db, job_id) == "cancelled"
        assert _stored_status(db, other) == "running"

    async def test_an_unsaved_record_is_written_when_the_app_stops(self, tmp_path: Path) -> None:
        """A cancellation still unsaved when the subtree stops is written then, when it can."""
        db = tmp_path / "optimization.sqlite"
        async with Runtime.open() as runtime:
            coordinator = await _start(runtime, _GatedLM(), db)
            job_id = await submit_optimization(coordinator, _copro())
            _sql(db, _REFUSE)
            with pytest.raises(StoreUnavailable):
                await cancel_optimization(coordinator, job_id)
            _sql(db, "DROP TRIGGER refuse")
            assert _stored_status(db, job_id) == "running"
        assert _stored_status(db, job_id) == "cancelled"

    async def test_a_refused_final_record_is_kept_by_the_coordinator(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A worker whose final record the file refuses hands it over instead of crashing
        (a crash reran the whole job): the result is served, and written once it can be."""
        db = tmp_path / "optimization.sqlite"
        lm = _GatedLM()
        coordinator = await _start(runtime, lm, db)
        incarnation = runtime.whereis(COORDINATOR_NAME)
        job_id = await submit_optimization(coordinator, _copro(rows=4))
        _sql(db, _REFUSE)
        lm.gate.set()
        done = await _wait(coordinator, job_id)
        assert done.status == "completed"
        assert (await optimization_result(coordinator, job_id)).dump_state()
        assert _stored_status(db, job_id) == "running"
        assert len(runtime.events.ring.query(type=OPTIMIZATION_STARTED)) == 1
        assert runtime.whereis(COORDINATOR_NAME) is incarnation
        _sql(db, "DROP TRIGGER refuse")
        await submit_optimization(coordinator, _copro(rows=4))
        assert _stored_status(db, job_id) == "completed"
        store = OptimizationStore(db)
        stored = await store.job(job_id)
        await store.close()
        assert stored is not None
        assert (stored.created, stored.trials_done) == (done.created, done.trials_done)

    async def test_a_refused_suspend_stops_every_job_and_answers_the_typed_error(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """Suspend stops every job although the file refuses their progress, then answers
        StoreUnavailable; the file still shows them running, so they resume later."""
        db = tmp_path / "optimization.sqlite"
        coordinator = await _start(runtime, _GatedLM(), db)
        incarnation = runtime.whereis(COORDINATOR_NAME)
        jobs = [await submit_optimization(coordinator, _copro()) for _ in range(2)]
        _sql(db, _REFUSE)
        with pytest.raises(StoreUnavailable, match=_refused(db)):
            await suspend_optimizations(coordinator)
        assert [runtime.whereis(("optimization_worker", j)) for j in jobs] == [None, None]
        assert runtime.whereis(COORDINATOR_NAME) is incarnation
        assert [_stored_status(db, j) for j in jobs] == ["running", "running"]
        _sql(db, "DROP TRIGGER refuse")
        assert await suspend_optimizations(coordinator) == []
        assert [j.status for j in await list_optimizations(coordinator)] == ["running"] * 2

    async def test_an_unreadable_file_answers_status_of_a_job_run_elsewhere(
        self, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Status and list of a job another app runs read the file: a failed read is the
        caller's StoreUnavailable, and the coordinator answers again once the file is back."""
        db = tmp_path / "optimization.sqlite"
        first = await _start(runtime, _GatedLM(), db)
        job_id = await submit_optimization(first, _copro())
        async with Runtime.open() as other:
            second = await _start(other, _GatedLM(), db)
            incarnation = other.whereis(COORDINATOR_NAME)
            real = OptimizationStore._run

            async def locked(store: OptimizationStore, work: Any) -> Any:
                raise StoreUnavailable(path=str(store.path), problem="database is locked")

            monkeypatch.setattr(OptimizationStore, "_run", locked)
            with pytest.raises(StoreUnavailable, match=r"database is locked"):
                await optimization_status(second, job_id)
            with pytest.raises(StoreUnavailable, match=r"database is locked"):
                await list_optimizations(second)
            monkeypatch.setattr(OptimizationStore, "_run", real)
            assert (await optimization_status(second, job_id)).status == "running"
            assert other.whereis(COORDINATOR_NAME) is incarnation


class TestCancelAcrossApps:
    async def test_a_job_another_app_runs_is_refused_here(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """Cancelling a job another app runs answers JobRunsElsewhere and leaves it running
        (marking the file did not stop it); once it ends, cancel answers its real end."""
        db = tmp_path / "optimization.sqlite"
        lm = _GatedLM()
        first = await _start(runtime, lm, db)
        job_id = await submit_optimization(first, _copro(rows=4))
        async with Runtime.open() as other:
            second = await _start(other, _GatedLM(), db)
            elsewhere = (
                rf"^optimization job {job_id!r} runs in another process on the jobs file"
                rf" {str(db)!r}; cancel it in that process$"
            )
            with pytest.raises(JobRunsElsewhere, match=elsewhere):
                await cancel_optimization(second, job_id)
            assert _stored_status(db, job_id) == "running"
            lm.gate.set()
            assert (await _wait(first, job_id)).status == "completed"
            assert (await cancel_optimization(second, job_id)).status == "completed"
            assert _stored_status(db, job_id) == "completed"

    async def test_a_job_no_app_runs_is_cancelled_from_another(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A job its runner suspended is free: another app cancels it, and the runner's app
        then reports it cancelled too (and does not resume it)."""
        db = tmp_path / "optimization.sqlite"
        first = await _start(runtime, _GatedLM(), db)
        job_id = await submit_optimization(first, _copro())
        async with Runtime.open() as other:
            second = await _start(other, _GatedLM(), db)
            assert await suspend_optimizations(first) == [job_id]
            assert (await cancel_optimization(second, job_id)).status == "cancelled"
        assert _stored_status(db, job_id) == "cancelled"
        assert (await optimization_status(first, job_id)).status == "cancelled"


class TestClaimsWhileUnsaved:
    async def test_a_refused_final_record_keeps_the_job_claimed(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A job whose final record the file refused stays claimed by the app that holds
        its end: another app on the file does not run it again."""
        db = tmp_path / "optimization.sqlite"
        lm = _GatedLM()
        first = await _start(runtime, lm, db)
        job_id = await submit_optimization(first, _copro(rows=4))
        async with Runtime.open() as other:
            second = await _start(other, SlowLM(), db)
            _sql(db, _REFUSE)
            lm.gate.set()
            assert (await _wait(first, job_id)).status == "completed"
            assert (await optimization_status(second, job_id)).status == "running"
            assert other.whereis((WORKER_NAME, job_id)) is None
            assert other.events.ring.query(type=OPTIMIZATION_STARTED) == []

    async def test_a_refused_cancel_keeps_the_job_claimed(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A cancel the file refused keeps the job claimed until it is written: another
        app does not resume the job meanwhile."""
        db = tmp_path / "optimization.sqlite"
        first = await _start(runtime, _GatedLM(), db)
        job_id = await submit_optimization(first, _copro())
        async with Runtime.open() as other:
            second = await _start(other, _GatedLM(), db)
            _sql(db, _REFUSE)
            with pytest.raises(StoreUnavailable):
                await cancel_optimization(first, job_id)
            await optimization_status(second, job_id)
            assert other.whereis((WORKER_NAME, job_id)) is None

    async def test_a_refused_suspend_never_overwrites_a_later_end(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A suspend whose progress the file refused keeps nothing to write later: the end
        another app stores after taking the job over is not overwritten by it."""
        db = tmp_path / "optimization.sqlite"
        first = await _start(runtime, _GatedLM(), db)
        job_id = await submit_optimization(first, _copro(rows=4))
        _sql(db, _REFUSE)
        with pytest.raises(StoreUnavailable):
            await suspend_optimizations(first)
        _sql(db, "DROP TRIGGER refuse")
        async with Runtime.open() as other:
            second = await _start(other, SlowLM(), db)
            await optimization_status(second, job_id)  # free: taken over
            assert (await _wait(second, job_id)).status == "completed"
            await submit_optimization(first, _copro(rows=4))  # the first app writes again
            assert _stored_status(db, job_id) == "completed"

    async def test_a_restarted_coordinator_leaves_suspended_jobs_suspended(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """Jobs a drain suspended are not resumed by a coordinator restarted during it."""
        coordinator = await _start(runtime, _GatedLM(), tmp_path / "optimization.sqlite")
        job_id = await submit_optimization(coordinator, _copro())
        assert await suspend_optimizations(coordinator) == [job_id]
        await _crash_coordinator(runtime)
        await optimization_status(coordinator, job_id)
        assert runtime.whereis((WORKER_NAME, job_id)) is None


def _busy_steps(monkeypatch: pytest.MonkeyPatch, *, fail: set[int] | None) -> list[int]:
    """Make the store's step writes raise StoreBusy: the writes numbered in `fail` (1-based),
    or every one when `fail` is None. Returns the list of write numbers attempted."""
    real = OptimizationStore.record_step
    seen: list[int] = []

    async def record_step(store: OptimizationStore, job_id: str, key: str, value: Any) -> None:
        seen.append(len(seen) + 1)
        if fail is None or seen[-1] in fail:
            raise StoreBusy(path=str(store.path), problem="database is locked")
        await real(store, job_id, key, value)

    monkeypatch.setattr(OptimizationStore, "record_step", record_step)
    return seen


async def _undisturbed(db: Path) -> tuple[OptimizationStatus, dict[str, Any], int]:
    """The job run alone on a fresh file: its end, its result's state, its trials reported."""
    async with Runtime.open() as other:
        coordinator = await _start(other, SlowLM(), db)
        done = await _wait(coordinator, await submit_optimization(coordinator, _copro(rows=6)))
        state = (await optimization_result(coordinator, done.id)).dump_state()
        return done, state, len(other.events.ring.query(type=OPTIMIZATION_ITERATION))


class TestBusyCheckpoints:
    async def test_a_refused_checkpoint_write_is_retried_by_a_restart(
        self, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A checkpoint write the file refuses once (StoreBusy) restarts the worker, which
        resumes from the journal: the job completes with an undisturbed run's result, no
        trial reported twice, the coordinator the same incarnation."""
        expected, state, trials = await _undisturbed(tmp_path / "alone.sqlite")
        writes = _busy_steps(monkeypatch, fail={3})
        coordinator = await _start(runtime, SlowLM(), tmp_path / "optimization.sqlite")
        incarnation = runtime.whereis(COORDINATOR_NAME)
        done = await _wait(coordinator, await submit_optimization(coordinator, _copro(rows=6)))
        assert done.status == "completed" and len(writes) > 3
        assert (done.trials_done, done.best_score) == (expected.trials_done, expected.best_score)
        assert (await optimization_result(coordinator, done.id)).dump_state() == state
        assert len(runtime.events.ring.query(type=OPTIMIZATION_ITERATION)) == trials
        assert len(runtime.events.ring.query(type=OPTIMIZATION_STARTED)) == 2
        assert runtime.whereis(COORDINATOR_NAME) is incarnation

    async def test_a_file_busy_for_good_fails_the_job_typed_after_the_bound(
        self, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A checkpoint write refused every time fails the job with StoreBusy's code after
        BUSY_RESTARTS restarts, the coordinator the same incarnation."""
        _busy_steps(monkeypatch, fail=None)
        db = tmp_path / "optimization.sqlite"
        coordinator = await _start(runtime, SlowLM(), db)
        incarnation = runtime.whereis(COORDINATOR_NAME)
        done = await _wait(coordinator, await submit_optimization(coordinator, _copro(rows=6)))
        assert done.status == "failed" and done.error is not None
        assert done.error["code"] == "store_busy"
        assert done.error["message"].startswith(f"store {str(db)!r} cannot be used: database")
        started = runtime.events.ring.query(type=OPTIMIZATION_STARTED)
        assert len(started) == 1 + BUSY_RESTARTS
        assert _stored_status(db, done.id) == "failed"
        assert runtime.whereis(COORDINATOR_NAME) is incarnation

    async def test_a_store_failure_that_will_not_pass_fails_the_job_at_once(
        self, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A checkpoint write failing for good (StoreUnavailable, not busy) fails the job
        with it at the first refusal: no restart."""

        async def record_step(store: OptimizationStore, *args: Any) -> None:
            raise StoreUnavailable(path=str(store.path), problem="file is not a database")

        monkeypatch.setattr(OptimizationStore, "record_step", record_step)
        coordinator = await _start(runtime, SlowLM(), tmp_path / "optimization.sqlite")
        done = await _wait(coordinator, await submit_optimization(coordinator, _copro(rows=6)))
        assert done.status == "failed" and done.error is not None
        assert done.error["code"] == "store_unavailable"
        assert len(runtime.events.ring.query(type=OPTIMIZATION_STARTED)) == 1


class TestQueriesAcrossApps:
    async def test_list_reads_the_file_once_for_every_job_run_elsewhere(
        self, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Listing 20 jobs another app runs reads the jobs file once, not once per job,
        and still reports each one's stored progress."""
        db = tmp_path / "optimization.sqlite"
        store, elsewhere = OptimizationStore(db), JobClaims(db)
        spec = parse_job_spec(_copro()).to_dict()
        ids = [f"job{i:02d}" for i in range(20)]
        for i, job_id in enumerate(ids):
            record = JobRecord(id=job_id, spec=spec, status="running", created=i, updated=i)
            await store.save_job(record)
            assert elsewhere.claim(job_id)
        coordinator = await _start(runtime, SlowLM(), db)
        for job_id in ids:  # the other app's progress since this one loaded the file
            await store.save_job((await store.job(job_id) or record).evolve(trials_done=2))
        reads = 0
        real = OptimizationStore._run

        async def counted(self: OptimizationStore, work: Any) -> Any:
            nonlocal reads
            reads += 1
            return await real(self, work)

        monkeypatch.setattr(OptimizationStore, "_run", counted)
        listed = await list_optimizations(coordinator)
        assert reads == 1
        assert [(j.id, j.status, j.trials_done) for j in listed] == [
            (job_id, "running", 2) for job_id in ids
        ]
        assert (await optimization_status(coordinator, ids[0])).trials_done == 2
        assert reads == 2
        assert runtime.whereis((WORKER_NAME, ids[0])) is None
        elsewhere.release_all()
        await store.close()


def _gated_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: int
) -> tuple[Path, threading.Event, threading.Event]:
    """A JSONL dataset of `rows` whose read waits, on its worker thread, for `release`;
    `reading` is set once the read began."""
    dataset = tmp_path / "train.jsonl"
    dataset.write_text("".join(json.dumps(row) + "\n" for row in train_rows(rows)))
    reading, release = threading.Event(), threading.Event()
    real = read_regular_file

    def gated(path: Path, limit: int) -> bytes:
        reading.set()
        release.wait(timeout=10.0)  # a bound for the old code, which held the loop here
        return real(path, limit)

    monkeypatch.setattr("lmvisor.services.optimization_job.read_regular_file", gated)
    return dataset, reading, release


class TestSubmitReadsDatasetsOffTheLoop:
    async def test_status_of_another_job_answers_while_a_dataset_file_is_parsed(
        self, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """While a submitted job's JSONL dataset is still being read and parsed, the
        coordinator answers `status` and `list` of the jobs it already has; the submit then
        completes with the job's id."""
        coordinator = await _start(runtime, _GatedLM())
        first = await submit_optimization(coordinator, _copro())
        dataset, reading, release = _gated_dataset(tmp_path, monkeypatch, 2_000)
        submit = asyncio.create_task(
            submit_optimization(coordinator, {**_copro(), "trainset": str(dataset)})
        )
        await anyio.to_thread.run_sync(reading.wait)
        answered = await optimization_status(coordinator, first)
        listed = await list_optimizations(coordinator)
        parsing = not release.is_set()
        release.set()
        second = await submit
        assert parsing, "the coordinator answered only once the dataset was parsed"
        assert answered.status == "running" and [job.id for job in listed] == [first]
        assert (await optimization_status(coordinator, second)).status == "running"

    async def test_a_submit_given_up_while_its_dataset_is_read_adds_no_job(
        self, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A caller that stops waiting for its submit (here cancelled; a timeout alike) while
        the dataset is still read leaves no job behind: it would submit again and run it twice."""
        coordinator = await _start(runtime, SlowLM())
        dataset, reading, release = _gated_dataset(tmp_path, monkeypatch, 20)
        submit = asyncio.create_task(
            submit_optimization(coordinator, {**_copro(), "trainset": str(dataset)})
        )
        await anyio.to_thread.run_sync(reading.wait)
        submit.cancel()
        release.set()  # the read ends (a given-up read is waited out, not abandoned)
        with pytest.raises(asyncio.CancelledError):
            await submit
        ref = coordinator.resolve()
        await eventually(lambda: ref.statistics().in_flight == 0)
        assert await list_optimizations(coordinator) == []

    async def test_an_add_its_submitter_gave_up_on_adds_nothing(self, runtime: Runtime) -> None:
        """An `_AddJob` still queued when its submit's caller gave up (marked abandoned)
        adds no job: that caller would submit it again."""
        coordinator = await _start(runtime, SlowLM())
        spec = parse_job_spec(_copro())
        assert await coordinator.call(_AddJob(spec, abandoned=True)) == ""
        assert await list_optimizations(coordinator) == []

    async def test_a_submit_landing_after_suspend_is_kept_not_started(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A job added after `suspend_optimizations` (the app is stopping) is stored running
        but not started: the next start resumes it."""
        coordinator = await _start(runtime, SlowLM(), tmp_path / "optimization.sqlite")
        await suspend_optimizations(coordinator)
        job = await submit_optimization(coordinator, _copro())
        assert runtime.whereis((WORKER_NAME, job)) is None
        assert [(j.id, j.status) for j in await list_optimizations(coordinator)] == [
            (job, "running")
        ]

    async def test_a_bad_dataset_file_is_still_refused_typed(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A dataset file with a line that is not JSON is refused at submit, naming the
        line, and the coordinator keeps serving."""
        coordinator = await _start(runtime, SlowLM())
        dataset = tmp_path / "train.jsonl"
        dataset.write_text('{"question": "q", "answer": "a"}\nnot json\n')
        with pytest.raises(
            OptimizationSpecError,
            match=r"^invalid optimization job at trainset:2: not valid JSON: ",
        ):
            await submit_optimization(coordinator, {**_copro(), "trainset": str(dataset)})
        assert await list_optimizations(coordinator) == []


class TestStartUpLeavesEndedDatasets:
    async def test_start_up_never_loads_the_rows_of_ended_jobs(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A coordinator starting on a file of many finished jobs with large inline datasets
        allocates a small fraction of those datasets' size at its peak (it read every
        job's full spec before dropping the ended ones' rows); each job still reports its
        status, and the file keeps every row."""
        db = tmp_path / "optimization.sqlite"
        store = OptimizationStore(db)
        spec = {**_copro(), "trainset": train_rows(3_000), "valset": train_rows(1_000)}
        for i in range(8):
            record = JobRecord(id=f"job{i}", spec=spec, status="completed", created=i, updated=i)
            await store.save_job(record)
        await store.close()
        datasets = 8 * len(json.dumps(spec))
        tracemalloc.start()
        try:
            coordinator = await _start(runtime, SlowLM(), db)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < datasets / 4, f"start-up peaked at {peak} bytes for {datasets}"
        listed = await list_optimizations(coordinator)
        assert [(job.id, job.status) for job in listed] == [
            (f"job{i}", "completed") for i in range(8)
        ]
        ((stored,),) = _sql(db, "SELECT spec FROM jobs WHERE id = 'job7'")
        assert json.loads(stored) == spec
