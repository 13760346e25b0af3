"""Optimization jobs and their checkpoints in one SQLite file (or in memory).

Two tables: `jobs` (one row per job: its spec, status, progress, result state, error) and
`steps` (one row per journaled optimizer step: job id, key, JSON value). Every write is
committed before it returns (WAL journal, synchronous=NORMAL), so what was recorded
survives a kill of the worker or of the whole process, and a new store on the same file
finds every job and every step. Two stores (two processes) may share one file: writers
wait for each other up to a busy timeout instead of failing. With no path the tables live
in memory: nothing survives the process. All SQLite calls run on a worker thread
(`anyio.to_thread`), one at a time per store.

Any failure of the file itself (it cannot be opened, is not a database, holds tables of
another layout, stayed locked by another process past the busy timeout, the disk is full)
is `StoreUnavailable` naming the file, from every method. A row that cannot be decoded
(bytes that are not UTF-8, text that is not JSON, JSON of the wrong shape, nesting too
deep) is never returned as data: `job` and `steps` raise
`CorruptRecord` naming the row, and `jobs` skips it, handing the `CorruptRecord` to
`on_corrupt`, so one damaged row never stops the coordinator from loading the others.
`jobs(ended_rows=False)` leaves the inline dataset rows of ended jobs in the file: SQLite
empties those lists before a row reaches Python, so a coordinator starting on a file of
many finished jobs never holds their datasets (a worker only ever needs a running job's).
"""

from __future__ import annotations

import contextlib
import errno
import json
import sqlite3
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, TypeVar, final

from lmvisor.services._sqlite import SqliteFile, json_value, text
from lmvisor.services.errors import CorruptRecord, StoreBusy, StoreUnavailable

__all__ = ["ACTIVE_STATUSES", "JobRecord", "OptimizationStore", "StoreCheckpoint"]

T = TypeVar("T")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    trials_done INTEGER NOT NULL DEFAULT 0,
    trials_total INTEGER NOT NULL DEFAULT 0,
    best_score REAL,
    result TEXT,
    version INTEGER,
    error TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    job_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (job_id, key)
);
"""
_JOB_FIELDS: Final[Mapping[str, tuple[type, bool]]] = {
    "spec": (dict, False),
    "status": (str, False),
    "created": (float, False),
    "updated": (float, False),
    "trials_done": (int, False),
    "trials_total": (int, False),
    "best_score": (float, True),
    "result": (dict, True),
    "version": (int, True),
    "error": (dict, True),
}
"""Each job column after `id`, in `_COLUMNS` order: its type and whether it may be NULL."""
_IDS_PER_QUERY: Final = 500
"""Ids bound in one `IN (...)` (SQLite allows 999 variables before 3.32)."""
_COLUMNS: Final = (
    "id, spec, status, created, updated, trials_done, trials_total, best_score, result,"
    " version, error"
)


ACTIVE_STATUSES: Final = frozenset({"running"})
"""The statuses of a job that has not ended (its worker runs, or will resume it)."""
_ACTIVE_SQL: Final = ", ".join(
    f"'{status}'" for status in sorted(ACTIVE_STATUSES)
)  # constants only


def _light_spec() -> str:
    """The `spec` column of a row, its `trainset`/`valset` lists emptied unless running.

    Only a text holding a JSON object is rewritten; any other value (a damaged row) is
    passed on as it is, for `_record` to refuse with `CorruptRecord`."""
    light = "spec"
    for name in ("trainset", "valset"):
        light = (
            f"CASE WHEN json_type(spec, '$.{name}') = 'array'"
            f" THEN json_set({light}, '$.{name}', json('[]')) ELSE {light} END"
        )
    return (
        f"CASE WHEN status IN ({_ACTIVE_SQL}) OR typeof(spec) != 'text' THEN spec"
        " WHEN NOT json_valid(spec) THEN spec WHEN json_type(spec) != 'object' THEN spec"
        f" ELSE {light} END"
    )


_LIGHT_COLUMNS: Final = _COLUMNS.replace("spec,", f"{_light_spec()},", 1)
"""`_COLUMNS` with an ended job's inline dataset rows left in the file."""
_REPLACE_JOB: Final = f"INSERT OR REPLACE INTO jobs ({_COLUMNS}) VALUES ({','.join('?' * 11)})"
_UPDATE_JOB: Final = (
    f"INSERT INTO jobs ({_COLUMNS}) VALUES ({','.join('?' * 11)}) ON CONFLICT(id) DO UPDATE SET"
    " status = excluded.status, created = excluded.created, updated = excluded.updated,"
    " trials_done = excluded.trials_done, trials_total = excluded.trials_total,"
    " best_score = excluded.best_score, result = excluded.result,"
    " version = excluded.version, error = excluded.error"
)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    """One job as stored: `spec` and `result` (program state) are JSON-ready data."""

    id: str
    spec: Mapping[str, Any]
    status: str
    created: float
    updated: float
    trials_done: int = 0
    trials_total: int = 0
    best_score: float | None = None
    result: Mapping[str, Any] | None = None
    version: int | None = None
    error: Mapping[str, Any] | None = None

    def evolve(self, **changes: Any) -> JobRecord:
        """A copy with `changes`."""
        return replace(self, **changes)


def _problem(exc: sqlite3.Error | OSError) -> str:
    """What stopped the file from opening (an OSError names the path it failed on: a data
    directory that is a file fails on that directory, not on the store's file)."""
    if isinstance(exc, OSError) and exc.strerror:
        where = "" if exc.filename is None else f": {exc.filename}"
        return f"{exc.strerror}{where} ({type(exc).__name__})"
    return f"{exc} ({type(exc).__name__})"


# SQLite's result codes for a file that is sound but cannot be used at this moment.
_PASSING_CODES: Final = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR"})


def _passing(exc: sqlite3.Error | OSError) -> bool:
    """Whether the failure may pass: a lock held past the busy timeout, a full disk, I/O."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None) or ""
        return "_".join(name.split("_", 2)[:2]) in _PASSING_CODES  # SQLITE_BUSY_TIMEOUT too
    return exc.errno == errno.ENOSPC


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


@final
class OptimizationStore:
    """Jobs and checkpoints (see the module docstring).

    Args:
        path: the SQLite file (its directory is created); None keeps everything in memory.
    """

    def __init__(self, path: str | Path | None) -> None:
        self._file = SqliteFile(path, _SCHEMA)
        self.path = self._file.path

    @property
    def durable(self) -> bool:
        """Whether what is stored survives the process."""
        return self.path is not None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._file.run(work)
        except (sqlite3.Error, OSError) as exc:
            kind = StoreBusy if _passing(exc) else StoreUnavailable
            raise kind(path=str(self.path), problem=_problem(exc)) from exc

    async def open(self) -> None:
        """Open (and create) the file now rather than on first use.

        Raises:
            StoreUnavailable: the file cannot be opened, is not a database, or holds tables
                of another layout (naming the file; nothing in it is changed).
        """
        await self._run(lambda db: None)

    async def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        await self._file.close()

    async def save_job(self, job: JobRecord, *, keep_spec: bool = False) -> None:
        """Insert or replace `job`'s row; with `keep_spec`, an existing row keeps its
        `spec` (an app holds an ended job without its inline datasets, and writes that
        record without writing them away). A whole write repairs a damaged row."""
        row = (
            job.id, _dump(job.spec), job.status, job.created, job.updated, job.trials_done,
            job.trials_total, job.best_score, None if job.result is None else _dump(job.result),
            job.version, None if job.error is None else _dump(job.error),
        )  # fmt: skip

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.execute(_UPDATE_JOB if keep_spec else _REPLACE_JOB, row)

        await self._run(write)

    async def jobs(
        self,
        *,
        on_corrupt: Callable[[CorruptRecord], None] | None = None,
        ended_rows: bool = True,
    ) -> list[JobRecord]:
        """Every stored job that decodes, oldest first.

        Args:
            on_corrupt: told of each row skipped because it cannot be decoded.
            ended_rows: False leaves out the inline dataset rows of every job not running
                (its `trainset`/`valset` list comes empty; a dataset's path stays): they
                are never read out of the file. Such a record must not be saved whole
                (`save_job(keep_spec=True)` keeps the file's spec).
        """
        columns = _COLUMNS if ended_rows else _LIGHT_COLUMNS

        def read(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return db.execute(f"SELECT {columns} FROM jobs ORDER BY created, id").fetchall()

        found: list[JobRecord] = []
        for row in await self._run(read):
            try:
                found.append(_record(row))
            except CorruptRecord as exc:
                if on_corrupt is not None:
                    on_corrupt(exc)
        return found

    async def some_jobs(self, job_ids: Collection[str]) -> dict[str, JobRecord]:
        """The stored jobs among `job_ids` that decode, by id, read in one query (a few for
        thousands of ids); a missing id or a row that cannot be decoded is left out."""
        wanted = list(dict.fromkeys(job_ids))

        def read(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            rows: list[tuple[Any, ...]] = []
            for at in range(0, len(wanted), _IDS_PER_QUERY):
                batch = wanted[at : at + _IDS_PER_QUERY]
                marks = ",".join("?" * len(batch))
                query = f"SELECT {_COLUMNS} FROM jobs WHERE id IN ({marks})"
                rows += db.execute(query, batch).fetchall()
            return rows

        found: dict[str, JobRecord] = {}
        for row in await self._run(read) if wanted else []:
            with contextlib.suppress(CorruptRecord):
                record = _record(row)
                found[record.id] = record
        return found

    async def job(self, job_id: str) -> JobRecord | None:
        """The stored job `job_id`, or None.

        Raises:
            CorruptRecord: its row cannot be decoded.
        """

        def read(db: sqlite3.Connection) -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            return row

        row = await self._run(read)
        return None if row is None else _record(row)

    async def steps(self, job_id: str) -> dict[str, Any]:
        """Every step value recorded for `job_id`.

        Raises:
            CorruptRecord: a step's row cannot be decoded (the job cannot resume faithfully).
        """

        def read(db: sqlite3.Connection) -> list[tuple[bytes, bytes]]:
            return db.execute("SELECT key, value FROM steps WHERE job_id = ?", (job_id,)).fetchall()

        found: dict[str, Any] = {}
        for raw_key, raw_value in await self._run(read):
            key = text(raw_key, store="steps", record=job_id)
            found[key] = json_value(raw_value, store="steps", record=f"{job_id}/{key}")
        return found

    async def record_step(self, job_id: str, key: str, value: Any) -> None:
        """Keep one step value (committed before returning)."""
        data = _dump(value)

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.execute(
                    "INSERT OR REPLACE INTO steps (job_id, key, value) VALUES (?, ?, ?)",
                    (job_id, key, data),
                )

        await self._run(write)

    async def count_steps(self, job_id: str) -> int:
        """How many steps `job_id` has recorded."""

        def read(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT COUNT(*) FROM steps WHERE job_id = ?", (job_id,)).fetchone()
            return int(row[0])

        return await self._run(read)

    def checkpoint(self, job_id: str) -> StoreCheckpoint:
        """The optimizers' `Checkpoint` for one job."""
        return StoreCheckpoint(self, job_id)

    def __repr__(self) -> str:
        return f"OptimizationStore({str(self.path) if self.path else ':memory:'})"


def _record(row: tuple[Any, ...]) -> JobRecord:
    """A job row decoded and checked, or `CorruptRecord` naming what is wrong."""
    job_id = text(row[0], store="jobs", record="?")
    values = dict(zip(_JOB_FIELDS, row[1:], strict=True))
    for name in ("spec", "result", "error"):
        values[name] = json_value(values[name], store="jobs", record=job_id)
    values["status"] = text(values["status"], store="jobs", record=job_id)
    for name, (kind, optional) in _JOB_FIELDS.items():
        if not _is(values[name], kind, optional):
            problem = f"{name} is {_kind(values[name])}, not {kind.__name__}"
            raise CorruptRecord(store="jobs", record=job_id, problem=problem)
    return JobRecord(id=job_id, **values)


def _kind(value: Any) -> str:
    return "text" if isinstance(value, bytes | str) else type(value).__name__


def _is(value: Any, kind: type, optional: bool) -> bool:
    if value is None:
        return optional
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


@final
class StoreCheckpoint:
    """One job's step journal in an `OptimizationStore` (an optimizers `Checkpoint`)."""

    def __init__(self, store: OptimizationStore, job_id: str) -> None:
        self._store = store
        self._job_id = job_id

    async def load(self) -> Mapping[str, Any]:
        """Every step recorded for the job."""
        return await self._store.steps(self._job_id)

    async def record(self, key: str, value: Any) -> None:
        """Keep one step value durably."""
        await self._store.record_step(self._job_id, key, value)
