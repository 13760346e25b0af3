"""OptimizationStore: jobs and step journals in SQLite, durable, shared, and safe to misread."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lmvisor.optimizers import OptimizationRun
from lmvisor.programs.errors import StateError
from lmvisor.runtime import Runtime
from lmvisor.runtime import _sqlite as runtime_sqlite
from lmvisor.runtime.observe.names import STORE_RECORD_SKIPPED
from lmvisor.services import (
    COORDINATOR_NAME,
    CorruptRecord,
    JobRecord,
    OptimizationStore,
    StoreBusy,
    StoreUnavailable,
    list_optimizations,
    optimization_result,
    optimization_spec,
    optimization_status,
    submit_optimization,
)
from lmvisor.services._optimization_jobs import Job
from lmvisor.services.optimization_job import parse_job_spec
from tests.services._optimization_support import SlowLM, train_rows

PROGRAM = {"module": "Predict", "signature": "question -> answer"}
SPEC = {
    "optimizer": "COPRO",
    "params": {"breadth": 3, "depth": 2},
    "program": PROGRAM,
    "trainset": train_rows(20),
    "input_keys": ["question"],
    "metric": "tests.services._optimization_support:hashed_metric",
}


def _job(job_id: str = "job1", **changes: Any) -> JobRecord:
    record = JobRecord(id=job_id, spec=SPEC, status="running", created=1.0, updated=2.0)
    return record.evolve(**changes)


def _raw(path: Path, sql: str, *args: Any) -> None:
    """Write behind the store's back, as a damaged disk or a foreign writer would."""
    with sqlite3.connect(path) as db:
        db.execute(sql, args)
    db.close()


def _journal(path: Path) -> tuple[str, bool]:
    """The file's journal mode, and whether its -wal file exists."""
    with sqlite3.connect(path) as db:
        (mode,) = db.execute("PRAGMA journal_mode").fetchone()
    db.close()
    return mode, Path(f"{path}-wal").exists()


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    found = OptimizationStore(tmp_path / "jobs" / "optimization.sqlite")
    await found.open()
    yield found
    await found.close()


class TestRoundTrip:
    async def test_job_round_trips_with_every_field(self, store: OptimizationStore) -> None:
        """A saved job reads back equal, result, version and error included."""
        job = _job(
            trials_done=3, trials_total=6, best_score=66.5, result={"predict": {"demos": []}},
            version=2, error={"code": "x", "message": "y", "type": "Z"},
        )  # fmt: skip
        await store.save_job(job)
        assert await store.jobs() == [job]
        assert await store.job("job1") == job
        assert await store.job("missing") is None

    async def test_save_replaces_and_jobs_are_oldest_first(self, store: OptimizationStore) -> None:
        """Saving an id again replaces its row; jobs() orders by creation time."""
        await store.save_job(_job("late", created=5.0))
        await store.save_job(_job("early", created=1.0))
        await store.save_job(_job("late", created=5.0, status="completed"))
        assert [(j.id, j.status) for j in await store.jobs()] == [
            ("early", "running"),
            ("late", "completed"),
        ]

    async def test_steps_round_trip_per_job(self, store: OptimizationStore) -> None:
        """Step values come back as JSON data, per job; re-recording a key replaces it."""
        await store.record_step("a", "copro/eval/d0", {"score": 50.0, "scores": [1.0, 0.0]})
        await store.record_step("a", "copro/propose", {"instructions": ["é ✓"]})
        await store.record_step("a", "copro/eval/d0", {"score": 75.0, "scores": [1.0]})
        await store.record_step("b", "other", [1, 2])
        assert await store.steps("a") == {
            "copro/eval/d0": {"score": 75.0, "scores": [1.0]},
            "copro/propose": {"instructions": ["é ✓"]},
        }
        assert await store.count_steps("a") == 2
        assert await store.steps("nobody") == {}

    async def test_memory_store_keeps_nothing_after_close(self) -> None:
        """With no path the store works in memory and is not durable."""
        store = OptimizationStore(None)
        assert not store.durable
        await store.save_job(_job())
        assert [j.id for j in await store.jobs()] == ["job1"]
        await store.close()
        assert await store.jobs() == []
        await store.close()


class TestEndedJobsInMemory:
    async def test_an_ended_job_is_held_without_its_rows(self, store: OptimizationStore) -> None:
        """A job ended (or loaded ended) drops its inline datasets from memory, record and
        parsed spec alike; writing that record keeps the stored spec whole (a daemon held
        every job's datasets for good)."""
        running = Job(_job(), parse_job_spec(SPEC))
        assert len(running.record.spec["trainset"]) == 20 and len(running.spec.trainset) == 20
        await store.save_job(running.record)
        running.record = running.record.evolve(status="completed", updated=3.0)
        assert running.record.spec["trainset"] == [] and running.spec.trainset == ()
        assert running.spec == replace(parse_job_spec(SPEC), trainset=())
        await store.save_job(running.record, keep_spec=True)  # as the coordinator writes it
        stored = await store.job("job1")
        assert stored is not None and stored.status == "completed"
        assert stored.spec == SPEC  # the file keeps the rows
        loaded = Job(stored, parse_job_spec(stored.spec))
        assert loaded.record.spec["trainset"] == [] and loaded.spec.trainset == ()

    async def test_a_whole_write_repairs_a_damaged_spec(
        self, store: OptimizationStore, tmp_path: Path
    ) -> None:
        """A worker's whole record (its full spec in hand) replaces a row whose spec was
        damaged, so the job's end and result stay readable; a write keeping the spec does
        not touch it."""
        await store.save_job(_job())
        _raw(store.path, "UPDATE jobs SET spec = ? WHERE id = ?", '{"optimizer": ', "job1")
        await store.save_job(_job(status="completed"), keep_spec=True)
        with pytest.raises(CorruptRecord):
            await store.job("job1")
        await store.save_job(_job(status="completed"))
        stored = await store.job("job1")
        assert stored is not None and (stored.status, stored.spec) == ("completed", SPEC)

    async def test_a_dataset_path_stays(self) -> None:
        """A dataset given as a path is kept (it holds no rows)."""
        spec = {**SPEC, "trainset": "data/train.jsonl"}
        job = Job(_job(spec=spec, status="failed"), parse_job_spec(spec))
        assert job.record.spec["trainset"] == "data/train.jsonl"
        assert job.spec.trainset == "data/train.jsonl"


class TestEndedJobsLeftInTheFile:
    async def test_ended_jobs_come_without_their_inline_rows(
        self, store: OptimizationStore
    ) -> None:
        """jobs(ended_rows=False) empties the inline datasets of every job not running
        (a path stays), hands a running job's whole, and leaves the file untouched."""
        with_valset = {**SPEC, "valset": train_rows(5)}
        await store.save_job(_job("running", spec=with_valset))
        await store.save_job(_job("done", spec=with_valset, status="completed", created=2.0))
        by_path = {**SPEC, "trainset": "data/train.jsonl"}
        await store.save_job(_job("path", spec=by_path, status="failed", created=3.0))
        light = {job.id: job.spec for job in await store.jobs(ended_rows=False)}
        assert light == {
            "running": with_valset,
            "done": {**with_valset, "trainset": [], "valset": []},
            "path": by_path,
        }
        assert [job.spec for job in await store.jobs()] == [with_valset, with_valset, by_path]
        ended = parse_job_spec(light["done"], ended=True)
        assert (ended.trainset, ended.valset) == ([], [])

    async def test_a_damaged_ended_spec_is_still_skipped_as_corrupt(
        self, store: OptimizationStore
    ) -> None:
        """An ended job whose spec is not JSON, not an object, or not UTF-8 reaches
        on_corrupt as before (SQLite leaves such a value alone); the good row loads."""
        assert store.path is not None
        for job_id in ("good", "bad_json", "bad_shape", "bad_utf8"):
            await store.save_job(_job(job_id, status="completed"))
        _raw(store.path, "UPDATE jobs SET spec = '{\"trainset\": [' WHERE id = 'bad_json'")
        _raw(store.path, "UPDATE jobs SET spec = '[1, 2]' WHERE id = 'bad_shape'")
        _raw(store.path, "UPDATE jobs SET spec = ? WHERE id = 'bad_utf8'", b"\xff\xfe{}")
        skipped: list[CorruptRecord] = []
        loaded = await store.jobs(on_corrupt=skipped.append, ended_rows=False)
        assert [(job.id, job.spec["trainset"]) for job in loaded] == [("good", [])]
        assert sorted(e.record for e in skipped) == ["bad_json", "bad_shape", "bad_utf8"]


class TestSomeJobs:
    async def test_many_ids_come_back_by_id_past_the_variable_limit(
        self, store: OptimizationStore
    ) -> None:
        """some_jobs answers 1,200 ids (more than one IN list holds) by id; missing and
        repeated ids are harmless, and no ids reads nothing."""
        ids = [f"j{i:04d}" for i in range(1200)]
        for job_id in ids:
            await store.save_job(_job(job_id))
        found = await store.some_jobs([*ids, "missing", ids[0]])
        assert sorted(found) == ids and found["j0042"] == _job("j0042")
        assert await store.some_jobs([]) == {}

    async def test_a_row_that_cannot_be_decoded_is_left_out(self, store: OptimizationStore) -> None:
        """A damaged row among the asked is left out, the others answered."""
        assert store.path is not None
        await store.save_job(_job("good"))
        await store.save_job(_job("bad"))
        _raw(store.path, "UPDATE jobs SET trials_done = 'many' WHERE id = 'bad'")
        assert list(await store.some_jobs(["good", "bad"])) == ["good"]


class TestDurability:
    async def test_wal_journal_on_disk(self, store: OptimizationStore) -> None:
        """The file is in WAL mode and a write lands in the -wal file before a checkpoint."""
        assert store.durable
        await store.record_step("job1", "k", 1)
        path = store.path
        assert path is not None
        assert _journal(path) == ("wal", True)

    async def test_new_store_on_the_file_finds_everything(self, store: OptimizationStore) -> None:
        """What one store committed, a store opened later on the same file reads."""
        await store.save_job(_job())
        await store.record_step("job1", "k", {"v": 1})
        assert store.path is not None
        reopened = OptimizationStore(store.path)
        try:
            assert [j.id for j in await reopened.jobs()] == ["job1"]
            assert await reopened.steps("job1") == {"k": {"v": 1}}
        finally:
            await reopened.close()

    async def test_resume_data_feeds_a_run(self, store: OptimizationStore) -> None:
        """A run on the job's checkpoint replays recorded steps and records new ones."""
        await store.record_step("job1", "done", {"value": 1})
        run = OptimizationRun(checkpoint=store.checkpoint("job1"))
        await run.begin("Test")
        calls: list[str] = []

        async def compute(key: str) -> dict[str, int]:
            calls.append(key)
            return {"value": 2}

        assert await run.step("done", lambda: compute("done")) == {"value": 1}
        assert await run.step("new", lambda: compute("new")) == {"value": 2}
        assert calls == ["new"]
        assert await store.steps("job1") == {"done": {"value": 1}, "new": {"value": 2}}

    async def test_two_connections_write_one_file(self, store: OptimizationStore) -> None:
        """Two stores on one file write at once without a lock error or a lost row."""
        assert store.path is not None
        other = OptimizationStore(store.path)
        try:
            await asyncio.gather(
                *(store.record_step("a", f"k{i}", i) for i in range(40)),
                *(other.record_step("b", f"k{i}", i) for i in range(40)),
                *(other.save_job(_job(f"job{i}")) for i in range(10)),
            )
            assert await store.count_steps("a") == await store.count_steps("b") == 40
            assert len(await store.jobs()) == 10
            assert (await other.steps("a"))["k39"] == 39
        finally:
            await other.close()


class TestCorruptRows:
    async def test_undecodable_job_rows_are_skipped_and_reported(
        self, store: OptimizationStore
    ) -> None:
        """jobs() returns the good rows and hands each bad one to on_corrupt."""
        assert store.path is not None
        await store.save_job(_job("good"))
        await store.save_job(_job("bad_json"))
        await store.save_job(_job("bad_utf8"))
        await store.save_job(_job("bad_shape"))
        _raw(store.path, "UPDATE jobs SET spec = '{\"optimizer\": ' WHERE id = 'bad_json'")
        _raw(store.path, "UPDATE jobs SET spec = ? WHERE id = 'bad_utf8'", b"\xff\xfe{}")
        _raw(store.path, "UPDATE jobs SET trials_done = 'many' WHERE id = 'bad_shape'")
        skipped: list[CorruptRecord] = []
        assert [j.id for j in await store.jobs(on_corrupt=skipped.append)] == ["good"]
        assert [(e.store, e.record) for e in skipped] == [
            ("jobs", "bad_json"),
            ("jobs", "bad_shape"),
            ("jobs", "bad_utf8"),
        ]
        assert skipped[0].code == "corrupt_record"
        assert skipped[1].problem == "trials_done is text, not int"
        with pytest.raises(CorruptRecord, match=r"^corrupt jobs record 'bad_utf8': not UTF-8"):
            await store.job("bad_utf8")

    async def test_deeply_nested_json_is_corrupt_not_a_recursion_error(
        self, store: OptimizationStore
    ) -> None:
        """A value nested far beyond the recursion limit is a CorruptRecord."""
        assert store.path is not None
        await store.record_step("job1", "deep", 0)
        deep = "[" * 100_000 + "]" * 100_000
        _raw(store.path, "UPDATE steps SET value = ? WHERE key = 'deep'", deep)
        with pytest.raises(CorruptRecord, match=r"^corrupt steps record 'job1/deep': JSON nested"):
            await store.steps("job1")

    async def test_corrupt_step_fails_its_job_with_a_typed_error(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A job resumed on a damaged checkpoint fails as corrupt_record; the coordinator lives."""
        path = tmp_path / "optimization.sqlite"
        store = OptimizationStore(path)
        await store.save_job(_job("damaged"))
        await store.record_step("damaged", "copro/propose/d0/p0", {"instructions": []})
        await store.close()
        _raw(path, "UPDATE steps SET value = 'not json' WHERE job_id = 'damaged'")
        await runtime.start_child(optimization_spec(lm=SlowLM(), store_path=path))
        coordinator = runtime.via(COORDINATOR_NAME)
        for _ in range(1000):
            status = await optimization_status(coordinator, "damaged")
            if status.status != "running":
                break
            await asyncio.sleep(0.005)
        assert status.status == "failed"
        assert status.error is not None and status.error["code"] == "corrupt_record"
        assert "damaged/copro/propose/d0/p0" in status.error["message"]
        assert runtime.whereis(COORDINATOR_NAME) is not None

    async def test_a_damaged_stored_result_is_a_typed_error(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A completed job whose stored program state is malformed or nested past the limit
        answers its result with StateError naming where; the coordinator and the job stay."""
        deep: Any = "x"
        for _ in range(800):
            deep = [deep]
        path = tmp_path / "optimization.sqlite"
        store = OptimizationStore(path)
        await store.save_job(_job("deep", status="completed", result={"demos": [{"q": deep}]}))
        await store.save_job(_job("wrong", status="completed", result={"demos": "none"}))
        await store.close()
        await runtime.start_child(optimization_spec(lm=SlowLM(), store_path=path))
        coordinator = runtime.via(COORDINATOR_NAME)
        with pytest.raises(StateError, match=r"^cannot load program state at self: nested deep"):
            await optimization_result(coordinator, "deep")
        with pytest.raises(StateError, match=r"^cannot load program state at self\.demos: must"):
            await optimization_result(coordinator, "wrong")
        assert [j.id for j in await list_optimizations(coordinator)] == ["deep", "wrong"]

    async def test_coordinator_starts_past_corrupt_job_rows(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """Undecodable and invalid job rows are skipped with an event; the rest load."""
        path = tmp_path / "optimization.sqlite"
        store = OptimizationStore(path)
        await store.save_job(_job("kept", status="completed", result={}))
        await store.save_job(_job("garbled", status="completed"))
        await store.save_job(_job("invalid", status="completed", spec={"optimizer": "Nope"}))
        await store.close()
        _raw(path, "UPDATE jobs SET error = '{' WHERE id = 'garbled'")
        await runtime.start_child(optimization_spec(lm=SlowLM(), store_path=path))
        jobs = await list_optimizations(runtime.via(COORDINATOR_NAME))
        assert [j.id for j in jobs] == ["kept"]
        skipped = runtime.events.ring.query(type=STORE_RECORD_SKIPPED)
        assert [(e.data["store"], e.data["record"]) for e in skipped] == [
            ("jobs", "garbled"),
            ("jobs", "invalid"),
        ]
        assert skipped[1].data["problem"].startswith("invalid optimization job at optimizer")


class TestUnusableFile:
    @pytest.mark.parametrize(
        ("content", "problem"),
        [
            (b"not a database at all" * 200, "file is not a database (DatabaseError)"),
            (b"SQLite format 3\x00" + b"\xff" * 4000, "file is not a database (DatabaseError)"),
        ],
    )
    async def test_a_file_that_is_not_a_database_is_a_typed_error_naming_it(
        self, tmp_path: Path, content: bytes, problem: str
    ) -> None:
        """Random bytes, or a header with garbage after it, are refused naming the file."""
        path = tmp_path / "optimization.sqlite"
        path.write_bytes(content)
        store = OptimizationStore(path)
        with pytest.raises(StoreUnavailable) as info:
            await store.open()
        assert (info.value.path, info.value.problem) == (str(path), problem)
        assert str(info.value).startswith(f"store {str(path)!r} cannot be used: {problem}")
        assert path.read_bytes() == content  # set aside by the operator, never overwritten

    async def test_a_file_locked_past_the_busy_timeout_is_store_busy(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A sound file another process holds locked past the busy timeout is StoreBusy:
        retryable, advising a retry (not moving the file aside); once the lock is gone the
        same write works. A file that is not a database is not StoreBusy."""
        monkeypatch.setattr(runtime_sqlite, "BUSY_TIMEOUT", 0.05)
        path = tmp_path / "optimization.sqlite"
        store = OptimizationStore(path)
        await store.open()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreBusy) as info:
                await store.save_job(_job("a"))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert info.value.retryable is True and info.value.code == "store_busy"
        assert str(info.value).endswith(
            "database is locked (OperationalError) "
            "(locked by another process, or the disk full: try again)"
        )
        await store.save_job(_job("a"))
        assert [r.id for r in await store.jobs()] == ["a"]
        await store.close()
        garbage = tmp_path / "garbage.sqlite"
        garbage.write_bytes(b"not a database at all" * 200)
        with pytest.raises(StoreUnavailable) as refused:
            await OptimizationStore(garbage).open()
        assert not isinstance(refused.value, StoreBusy) and refused.value.retryable is False

    async def test_a_table_of_another_layout_is_refused_untouched(self, tmp_path: Path) -> None:
        """A `jobs` table without our columns is refused at open, not a query error later."""
        path = tmp_path / "optimization.sqlite"
        _raw(path, "CREATE TABLE jobs (zz TEXT)")
        another = r"table 'jobs' has another layout \(no column id,"
        with pytest.raises(StoreUnavailable, match=another):
            await OptimizationStore(path).open()
        with sqlite3.connect(path) as db:
            names = [row[0] for row in db.execute("SELECT name FROM sqlite_master")]
        db.close()
        assert names == ["jobs"]  # the schema script is not half-applied: steps is not made

    async def test_a_table_with_a_required_column_of_its_own_is_refused(
        self, tmp_path: Path
    ) -> None:
        """Our columns plus a NOT NULL one without default (every insert would fail) is
        refused at open; extra columns that may be NULL or have a default are not in the way."""
        path = tmp_path / "optimization.sqlite"
        store = OptimizationStore(path)
        await store.save_job(_job("kept"))
        await store.close()
        _raw(path, "ALTER TABLE jobs ADD COLUMN note TEXT")
        _raw(path, "ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT 'x'")
        reopened = OptimizationStore(path)
        await reopened.save_job(_job("added"))
        assert [job.id for job in await reopened.jobs()] == ["added", "kept"]
        await reopened.close()
        other = tmp_path / "other.sqlite"
        _raw(other, "CREATE TABLE steps (job_id TEXT, key TEXT, value TEXT, tenant INT NOT NULL)")
        another = r"table 'steps' has another layout \(required columns of its own: tenant\)"
        with pytest.raises(StoreUnavailable, match=another):
            await OptimizationStore(other).open()

    async def test_a_failed_write_at_submit_is_the_callers_typed_error(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A jobs file that refuses a write (locked past the busy timeout, disk full; here a
        trigger) answers the submit with StoreUnavailable; the coordinator crashed before."""
        path = tmp_path / "optimization.sqlite"
        await runtime.start_child(optimization_spec(lm=SlowLM(), store_path=path))
        coordinator = runtime.via(COORDINATOR_NAME)
        trigger = "CREATE TRIGGER no BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'full'); END"
        _raw(path, trigger)
        refused = rf"^store {str(path)!r} cannot be used: full \(IntegrityError\)"
        with pytest.raises(StoreUnavailable, match=refused):
            await submit_optimization(coordinator, SPEC)
        _raw(path, "DROP TRIGGER no")
        assert await submit_optimization(coordinator, SPEC)
        assert len(await list_optimizations(coordinator)) == 1

    async def test_a_data_directory_that_is_a_file_is_named(self, tmp_path: Path) -> None:
        """A parent that is a file (not a directory) is named in the problem."""
        (tmp_path / "data").write_text("x")
        with pytest.raises(StoreUnavailable) as info:
            await OptimizationStore(tmp_path / "data" / "optimization.sqlite").open()
        assert info.value.problem == f"File exists: {tmp_path / 'data'} (FileExistsError)"

    async def test_app_start_fails_typed_naming_the_file(self, tmp_path: Path) -> None:
        """open_app on a damaged jobs file stops with StartError carrying StoreUnavailable."""
        from lmvisor.config.schema import LmvisorConfig
        from lmvisor.runtime.errors import StartError
        from lmvisor.services import open_app

        (tmp_path / "optimization.sqlite3").write_bytes(b"\x00garbage" * 500)
        with pytest.raises(StartError) as info:
            async with open_app(LmvisorConfig(data_dir=tmp_path), loopback_lm="always"):
                pass
        cause = info.value.reason
        while isinstance(cause, StartError):
            cause = cause.reason
        assert isinstance(cause, StoreUnavailable)
        assert cause.path == str(tmp_path / "optimization.sqlite3")
