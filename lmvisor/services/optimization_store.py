"""Optimization jobs and their checkpoints in one SQLite file (or in memory).

Two tables: `jobs` (one row per job: its spec, status, progress, result state, error) and
`steps` (one row per journaled optimizer step: job id, key, JSON value). Every write is
committed before it returns (WAL journal, synchronous=NORMAL), so what was recorded
survives a kill of the worker or of the whole process, and a new store on the same file
finds every job and every step. With no path the tables live in memory: nothing survives
the process. All SQLite calls run on a worker thread (`anyio.to_thread`), one at a time.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, TypeVar, final

import anyio.to_thread

__all__ = ["JobRecord", "OptimizationStore", "StoreCheckpoint"]

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
_COLUMNS: Final = (
    "id, spec, status, created, updated, trials_done, trials_total, best_score, result,"
    " version, error"
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


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@final
class OptimizationStore:
    """Jobs and checkpoints (see the module docstring).

    Args:
        path: the SQLite file (its directory is created); None keeps everything in memory.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def durable(self) -> bool:
        """Whether what is stored survives the process."""
        return self.path is not None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        async with self._lock:
            if self._db is None:
                self._db = await anyio.to_thread.run_sync(self._connect)
            db = self._db
            return await anyio.to_thread.run_sync(work, db)

    def _connect(self) -> sqlite3.Connection:
        if self.path is None:
            db = sqlite3.connect(":memory:", check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        db.commit()
        return db

    async def open(self) -> None:
        """Open (and create) the file now rather than on first use.

        Raises:
            sqlite3.Error, OSError: the file cannot be opened.
        """
        await self._run(lambda db: None)

    async def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                await anyio.to_thread.run_sync(db.close)

    async def save_job(self, job: JobRecord) -> None:
        """Insert or replace `job`."""
        row = (
            job.id, _dump(job.spec), job.status, job.created, job.updated, job.trials_done,
            job.trials_total, job.best_score, None if job.result is None else _dump(job.result),
            job.version, None if job.error is None else _dump(job.error),
        )  # fmt: skip

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.execute(
                    f"INSERT OR REPLACE INTO jobs ({_COLUMNS}) VALUES ({','.join('?' * 11)})", row
                )

        await self._run(write)

    async def jobs(self) -> list[JobRecord]:
        """Every stored job, oldest first."""

        def read(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return db.execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY created, id").fetchall()

        return [_record(row) for row in await self._run(read)]

    async def steps(self, job_id: str) -> dict[str, Any]:
        """Every step value recorded for `job_id`."""

        def read(db: sqlite3.Connection) -> list[tuple[str, str]]:
            return db.execute("SELECT key, value FROM steps WHERE job_id = ?", (job_id,)).fetchall()

        return {key: json.loads(value) for key, value in await self._run(read)}

    async def record_step(self, job_id: str, key: str, value: Any) -> None:
        """Keep one step value (committed before returning)."""
        text = _dump(value)

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.execute(
                    "INSERT OR REPLACE INTO steps (job_id, key, value) VALUES (?, ?, ?)",
                    (job_id, key, text),
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
    return JobRecord(
        id=row[0], spec=json.loads(row[1]), status=row[2], created=row[3], updated=row[4],
        trials_done=row[5], trials_total=row[6], best_score=row[7], result=_load(row[8]),
        version=row[9], error=_load(row[10]),
    )  # fmt: skip


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
