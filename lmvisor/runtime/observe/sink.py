"""The durable half of the event store: a SQLite file written in batches.

`SqliteEventSink` buffers events in memory and writes them in batches on a
worker thread (stdlib sqlite3 through `anyio.to_thread`, WAL journal), so
the emit path never touches the disk. Several processes may open one file at
once (a daemon and a CLI on one data directory): the switch to WAL waits out
the others (`open_wal`), and every connection has a busy timeout. What a
flush committed survives a crash of the store or the process: a new sink on
the same file finds it. Retention prunes by age and by count after flushes.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, Final, final

from lmvisor.runtime._sqlite import open_wal
from lmvisor.runtime._threads import run_to_completion
from lmvisor.runtime.errors import EventsFileUnavailable
from lmvisor.runtime.observe.events import Event, matches

__all__ = ["SqliteEventSink"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    correlation_id TEXT,
    parent_id TEXT,
    timestamp REAL NOT NULL,
    namespace TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_correlation ON events (correlation_id);
CREATE INDEX IF NOT EXISTS events_timestamp ON events (timestamp);
"""
_INSERT: Final = (
    "INSERT OR IGNORE INTO events (id, type, data, correlation_id, parent_id, timestamp,"
    " namespace) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS: Final = "id, type, data, correlation_id, parent_id, timestamp, namespace"

_Row = tuple[str, str, str, str | None, str | None, float, str]


def _to_row(event: Event) -> _Row:
    data = json.dumps(dict(event.data), default=repr, separators=(",", ":"))
    return (
        event.id,
        event.type,
        data,
        event.correlation_id,
        event.parent_id,
        event.timestamp,
        event.namespace,
    )


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _from_row(row: tuple[Any, ...]) -> Event | None:
    """The event a row holds; None for a row no flush wrote (another program, a damaged
    file): SQLite keeps whatever a column is given, so every field is checked."""
    id_, type_, data, correlation_id, parent_id, timestamp, namespace = row
    if not (isinstance(id_, str) and isinstance(type_, str) and isinstance(namespace, str)):
        return None
    if not all(v is None or isinstance(v, str) for v in (correlation_id, parent_id)):
        return None
    if type(timestamp) not in (int, float) or not isinstance(data, str):
        return None
    try:
        decoded = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(decoded, dict):
        return None
    return Event(
        id=id_,
        type=type_,
        data=decoded,
        correlation_id=correlation_id,
        parent_id=parent_id,
        timestamp=float(timestamp),
        namespace=namespace,
    )


@final
class SqliteEventSink:
    """Events in a SQLite file, written in batches.

    Args:
        path: the database file; its directory is created if missing.
        batch_size: `full` turns true at this many buffered events.
        retention_seconds: prune events older than this after flushes (None keeps all).
        retention_count: keep at most this many events (None keeps all).
        wall_clock: seconds since the epoch, for age-based pruning.

    Raises:
        ValueError: if `batch_size` < 1 or a retention bound is not positive.
    """

    __slots__ = (
        "_buffer",
        "_conn",
        "_lock",
        "_wall_clock",
        "batch_size",
        "path",
        "retention_count",
        "retention_seconds",
        "skipped_rows",
    )

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 256,
        retention_seconds: float | None = None,
        retention_count: int | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if retention_seconds is not None and not retention_seconds > 0:
            raise ValueError(f"retention_seconds must be > 0, got {retention_seconds!r}")
        if retention_count is not None and retention_count < 1:
            raise ValueError(f"retention_count must be >= 1, got {retention_count!r}")
        self.path = Path(path)
        self.batch_size = batch_size
        self.retention_seconds = retention_seconds
        self.retention_count = retention_count
        self._wall_clock = wall_clock
        self._buffer: list[Event] = []
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self.skipped_rows = 0
        """Rows queries read past because they hold no event (not JSON, wrong types)."""

    async def open(self) -> None:
        """Open (creating if needed) the database in WAL mode. Idempotent.

        Raises:
            EventsFileUnavailable: the file cannot be opened or is not a database, or its
                directory cannot be created (naming the file; nothing in it is changed).
        """
        async with self._lock:
            if self._conn is None:
                try:
                    self._conn = await run_to_completion(self._connect)
                except (sqlite3.Error, OSError) as exc:
                    problem = f"{exc} ({type(exc).__name__})"
                    raise EventsFileUnavailable(path=str(self.path), problem=problem) from exc

    def _connect(self) -> sqlite3.Connection:
        conn = open_wal(self.path)
        # Text that is not UTF-8 (a damaged file, another program's row) fails the whole
        # query under the default decoder; replaced, it only fails that row's checks.
        conn.text_factory = _text
        try:
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def write(self, event: Event) -> None:
        """Buffer `event` for the next flush (no I/O); usable as a ring listener."""
        self._buffer.append(event)

    @property
    def pending(self) -> int:
        """Events buffered and not yet flushed."""
        return len(self._buffer)

    @property
    def full(self) -> bool:
        """Whether a batch is ready to flush."""
        return len(self._buffer) >= self.batch_size

    async def flush(self) -> int:
        """Commit the buffered events in one transaction; returns how many.

        Events buffered while the flush runs wait for the next one. If the
        write fails the batch is put back in front of the buffer.

        Raises:
            RuntimeError: if the sink is not open.
            sqlite3.Error: if the write fails.
        """
        async with self._lock:
            conn = self._require_open()
            batch, self._buffer = self._buffer, []
            if not batch:
                return 0
            rows = [_to_row(event) for event in batch]
            try:
                await run_to_completion(_insert, conn, rows)
            except BaseException:
                self._buffer[:0] = batch
                raise
            return len(batch)

    async def prune(self) -> int:
        """Delete events beyond the retention bounds; returns how many went.

        Raises:
            RuntimeError: if the sink is not open.
        """
        async with self._lock:
            conn = self._require_open()
            cutoff = (
                None
                if self.retention_seconds is None
                else self._wall_clock() - self.retention_seconds
            )
            return await run_to_completion(_prune, conn, cutoff, self.retention_count)

    async def query(
        self,
        *,
        correlation_id: str | None = None,
        type: str | Collection[str] | None = None,
        since: float | None = None,
        limit: int | None = None,
        namespace: str | None = None,
    ) -> list[Event]:
        """Committed events matching the filters (as `EventRing.query`), oldest first.

        Raises:
            RuntimeError: if the sink is not open.
            ValueError: if `limit` is negative.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit!r}")
        async with self._lock:
            conn = self._require_open()

            def select() -> list[Event]:
                found: list[Event] = []
                for row in _rows(conn, correlation_id, since, namespace):
                    if limit is not None and len(found) >= limit:
                        break
                    event = _from_row(row)
                    if event is None:
                        self.skipped_rows += 1  # read past, never a failed start
                    elif matches(event, type=type):
                        found.append(event)
                found.reverse()
                return found

            return await run_to_completion(select)

    async def close(self) -> None:
        """Flush what is buffered and close the file. Idempotent."""
        if self._conn is None:
            return
        try:
            await self.flush()
        finally:
            async with self._lock:
                conn, self._conn = self._conn, None
                if conn is not None:
                    await run_to_completion(conn.close)

    def _require_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"event sink {self.path} is not open")
        return self._conn

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"SqliteEventSink({str(self.path)!r}, {state}, pending={len(self._buffer)})"


def _insert(conn: sqlite3.Connection, rows: list[_Row]) -> None:
    with conn:
        conn.execute("BEGIN")
        conn.executemany(_INSERT, rows)


def _prune(conn: sqlite3.Connection, cutoff: float | None, keep: int | None) -> int:
    removed = 0
    with conn:
        conn.execute("BEGIN")
        if cutoff is not None:
            removed += conn.execute("DELETE FROM events WHERE timestamp < ?", (cutoff,)).rowcount
        if keep is not None:
            removed += conn.execute(
                "DELETE FROM events WHERE seq <= "
                "(SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (keep,),
            ).rowcount
    return removed


def _rows(
    conn: sqlite3.Connection,
    correlation_id: str | None,
    since: float | None,
    namespace: str | None,
) -> Iterator[tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, op, value in (
        ("correlation_id", "=", correlation_id),
        ("timestamp", ">=", since),
        ("namespace", "=", namespace),
    ):
        if value is not None:
            clauses.append(f"{column} {op} ?")
            params.append(value)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT {_COLUMNS} FROM events{where} ORDER BY seq DESC"
    yield from conn.execute(sql, params)
