"""L3: the SQLite cache tier, one file that threads and OS processes share safely.

The file runs in WAL mode (switched to it by `enable_wal`, which waits out another process
opening a new file at the same moment), so readers never wait for a writer and a writer
never waits for readers. Every connection sets `busy_timeout`, so two
processes writing at once take turns instead of failing with "database is
locked"; every write is one `BEGIN IMMEDIATE` transaction (the write lock is
taken before anything is read, so a read-then-write never deadlocks or loses
an update). Entry count and total bytes are kept by triggers in the same
transactions, exact whatever process wrote.

`get` is a primary-key read on its own connection, run on the caller's
thread: in WAL mode it takes no lock a writer holds, and it costs less than a
hop to a worker thread would (the reader's own busy timeout is short, so a
rare checkpoint stall cannot hold a caller long). `write` and `clear` block
on the write lock and belong on a worker thread (`anyio.to_thread`); a lock
serialises them within the process.

The writer checkpoints the WAL into the file every 4000 pages (16 MB with 4 KiB pages)
rather than SQLite's 1000: a page written by many batches in between is copied once, which
cuts the write-behind's CPU per entry by about a sixth, for up to 16 MB of WAL on disk
beside the file (not counted in `max_size`).

Rows live in a rowid table with the key in its own unique index (see `_SCHEMA` for why);
`PRAGMA user_version` names the layout, and `open` moves a file of the first layout
(WITHOUT ROWID) to it, rows kept, in one transaction.

Size: the entries' bytes are kept under `max_size`. A write that passes it
evicts, in the same transaction, first entries whose stale window has passed,
then the oldest written, down to 90% of the bound.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, final

from lmvisor.runtime._sqlite import enable_wal
from lmvisor.services.cache_entry import CacheEntry, CorruptEntry

__all__ = ["SqliteTier", "SqliteTierStatistics"]

_READER_BUSY_MS: Final = 100
_CHECKPOINT_PAGES: Final = 4000
_EVICT_BATCH: Final = 64
_LOW_WATER: Final = 0.9
# The row layout `open` creates; files of an older layout are moved to it (`_migrate`).
_LAYOUT: Final = 2
# A rowid table with the key in its own index: a ~1 KB answer keyed by a random hash in a
# WITHOUT ROWID table (the whole row in the key's B-tree, a few rows per page) splits and
# rewrites pages all over the tree on every insert; here rows append in rowid order and
# only the small key index takes random inserts (measured on a 50k-entry file: ~24 us of
# CPU per entry against ~90, and reads ~2x cheaper).
_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS entries (
        id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, payload BLOB NOT NULL,
        size INTEGER NOT NULL, stored_at REAL NOT NULL, expires_at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS entries_by_age ON entries(stored_at)",
    """CREATE TABLE IF NOT EXISTS meta (
        id INTEGER PRIMARY KEY CHECK (id = 1), entries INTEGER NOT NULL,
        total_size INTEGER NOT NULL)""",
    "INSERT OR IGNORE INTO meta VALUES (1, 0, 0)",
    """CREATE TRIGGER IF NOT EXISTS entries_added AFTER INSERT ON entries BEGIN
        UPDATE meta SET entries = entries + 1, total_size = total_size + NEW.size
        WHERE id = 1; END""",
    """CREATE TRIGGER IF NOT EXISTS entries_removed AFTER DELETE ON entries BEGIN
        UPDATE meta SET entries = entries - 1, total_size = total_size - OLD.size
        WHERE id = 1; END""",
    """CREATE TRIGGER IF NOT EXISTS entries_resized AFTER UPDATE OF size ON entries BEGIN
        UPDATE meta SET total_size = total_size - OLD.size + NEW.size WHERE id = 1; END""",
)
# Layout 1 (WITHOUT ROWID, keyed by `key`): its table is renamed aside, its triggers and
# index dropped, and its rows copied into the new table (whose triggers count them again).
_MIGRATE_FROM_1: Final = (
    "DROP TRIGGER IF EXISTS entries_added",
    "DROP TRIGGER IF EXISTS entries_removed",
    "DROP TRIGGER IF EXISTS entries_resized",
    "DROP INDEX IF EXISTS entries_by_age",
    "ALTER TABLE entries RENAME TO entries_layout1",
    "UPDATE meta SET entries = 0, total_size = 0 WHERE id = 1",
)
_COPY_FROM_1: Final = (
    "INSERT INTO entries (key, payload, size, stored_at, expires_at)"
    " SELECT key, payload, size, stored_at, expires_at FROM entries_layout1 ORDER BY stored_at",
    "DROP TABLE entries_layout1",
)
_UPSERT: Final = (
    "INSERT INTO entries (key, payload, size, stored_at, expires_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT(key) DO UPDATE SET payload = excluded.payload, size = excluded.size,"
    " stored_at = excluded.stored_at, expires_at = excluded.expires_at"
)
_SELECT: Final = "SELECT payload, expires_at FROM entries WHERE key = ?"
_OLDEST: Final = (
    "DELETE FROM entries WHERE key IN (SELECT key FROM entries ORDER BY stored_at LIMIT ?)"
)


def _create_or_migrate(conn: sqlite3.Connection) -> None:
    """Create the schema, moving a layout-1 file's rows over (inside the caller's transaction).

    Other processes opening the file wait on the transaction's write lock, then find the
    layout current: the move runs once.

    Raises:
        sqlite3.DatabaseError: the file names a layout after ours (or a negative one).
    """
    (layout,) = conn.execute("PRAGMA user_version").fetchone()
    if layout == _LAYOUT:
        return
    if not 0 <= layout < _LAYOUT:
        # A newer lmvisor's file (or another program's): stamping it with our layout would
        # make the newer one misread it later.
        raise sqlite3.DatabaseError(f"layout {layout} is not one this lmvisor reads (<= {_LAYOUT})")
    old = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'entries'"
    ).fetchone()
    moving = old is not None and "WITHOUT ROWID" in str(old[0]).upper()
    if moving:
        for statement in _MIGRATE_FROM_1:
            conn.execute(statement)
    for statement in _SCHEMA:
        conn.execute(statement)
    if moving:
        for statement in _COPY_FROM_1:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {_LAYOUT}")


@final
@dataclass(frozen=True, slots=True)
class SqliteTierStatistics:
    """L3's file, its entries and bytes now (as every process left them), and its bound."""

    path: str
    entries: int
    bytes: int
    max_size: int
    evictions: int


@final
class SqliteTier:
    """The L3 tier over the SQLite file at `path`; see the module docstring.

    Args:
        path: the database file (its directory is created).
        max_size: most bytes of entries kept.
        busy_timeout: seconds a writer waits for another connection's lock.
        stale_ttl: seconds an expired entry is kept for stale answers.
    """

    __slots__ = (
        "_evictions",
        "_lock",
        "_read",
        "_reader",
        "_writer",
        "busy_timeout",
        "max_size",
        "path",
        "stale_ttl",
    )

    name = "l3"

    def __init__(self, path: Path, *, max_size: int, busy_timeout: float, stale_ttl: float) -> None:
        self.path = path
        self.max_size = max_size
        self.busy_timeout = busy_timeout
        self.stale_ttl = stale_ttl
        self._lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._read: sqlite3.Cursor | None = None  # the reader's one cursor, made once
        self._writer: sqlite3.Connection | None = None
        self._evictions = 0

    def open(self) -> None:
        """Create the file and schema if needed and open both connections (blocking).

        Waits up to `busy_timeout` for other processes opening the file at the same time.

        Raises:
            sqlite3.Error, OSError: the file cannot be created or is not a database, or
                another process held it locked for all of `busy_timeout`.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = self._connect(int(self.busy_timeout * 1000))
        try:
            enable_wal(writer, wait=self.busy_timeout)
            writer.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES}")
            writer.execute("BEGIN IMMEDIATE")
            _create_or_migrate(writer)
            writer.execute("COMMIT")
        except BaseException:
            writer.close()  # rolls back what the transaction had done
            raise
        self._writer = writer
        self._reader = self._connect(_READER_BUSY_MS)
        self._read = self._reader.cursor()

    def _connect(self, busy_ms: int) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def get(self, key: str) -> CacheEntry | None:
        """The stored entry for `key` (fresh or expired), or None.

        Raises:
            CorruptEntry: the row holds no byte payload.
            sqlite3.Error: the read failed.
        """
        cursor = self._read
        if cursor is None:
            raise sqlite3.ProgrammingError(f"cache file {self.path} is not open")
        row = cursor.execute(_SELECT, (key,)).fetchone()
        if row is None:
            return None
        payload, expires_at = row
        if not isinstance(payload, bytes) or not isinstance(expires_at, float | int):
            raise CorruptEntry("the row's payload is not bytes")
        return CacheEntry(payload, float(expires_at))

    def write(
        self, puts: Sequence[tuple[str, CacheEntry]], deletes: Sequence[str], now: float
    ) -> int:
        """Remove `deletes`, then store `puts`, in one transaction; returns entries evicted.

        Blocks while another connection holds the write lock (up to `busy_timeout`).

        Raises:
            sqlite3.Error: the transaction failed and was rolled back.
        """
        with self._lock:
            conn = self._conn(self._writer)
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Deletes first: a corrupt entry dropped and its fresh answer written in one
                # batch must leave the fresh answer.
                if deletes:
                    conn.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k in deletes])
                # One statement per row: SQLite runs a multi-row or `INSERT ... SELECT` upsert
                # through a temporary table, over twice the CPU per entry (measured).
                conn.executemany(
                    _UPSERT,
                    [(k, e.payload, e.size, now, e.expires_at) for k, e in puts],
                )
                evicted = self._evict(conn, now)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self._evictions += evicted
        return evicted

    def _evict(self, conn: sqlite3.Connection, now: float) -> int:
        if self._total(conn) <= self.max_size:
            return 0
        evicted = conn.execute(
            "DELETE FROM entries WHERE expires_at < ?", (now - self.stale_ttl,)
        ).rowcount
        target = int(self.max_size * _LOW_WATER)
        while self._total(conn) > target:
            removed = conn.execute(_OLDEST, (_EVICT_BATCH,)).rowcount
            if removed <= 0:
                break
            evicted += removed
        return max(evicted, 0)

    @staticmethod
    def _total(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT total_size FROM meta WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def clear(self) -> None:
        """Remove every entry (blocking, like `write`)."""
        with self._lock:
            conn = self._conn(self._writer)
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM entries")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def statistics(self) -> SqliteTierStatistics:
        """Entries and bytes now (from the triggers' counts), the bound and evictions.

        Reads nothing when the tier is closed (zeros then).
        """
        entries = size = 0
        if self._reader is not None:
            try:
                row = self._reader.execute(
                    "SELECT entries, total_size FROM meta WHERE id = 1"
                ).fetchone()
            except sqlite3.Error:
                row = None
            if row is not None:
                entries, size = int(row[0]), int(row[1])
        return SqliteTierStatistics(
            path=str(self.path),
            entries=entries,
            bytes=size,
            max_size=self.max_size,
            evictions=self._evictions,
        )

    def close(self) -> None:
        """Close both connections (idempotent)."""
        with self._lock:
            for conn in (self._reader, self._writer):
                if conn is not None:
                    conn.close()
            self._reader = self._writer = self._read = None

    def _conn(self, conn: sqlite3.Connection | None) -> sqlite3.Connection:
        if conn is None:
            raise sqlite3.ProgrammingError(f"cache file {self.path} is not open")
        return conn

    def __repr__(self) -> str:
        state = "open" if self._writer is not None else "closed"
        return f"SqliteTier({str(self.path)!r}, {state}, max_size={self.max_size})"
