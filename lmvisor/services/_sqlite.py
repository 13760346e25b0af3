"""One SQLite database a service keeps its records in, and the decoding of what it reads back.

`SqliteFile` opens lazily, on a worker thread, runs one piece of work at a time (a caller's
cancellation waits for the thread: `runtime._threads`), and reopens after `close()`. A
file gets WAL journaling, synchronous=NORMAL (a committed write survives a killed
process) and a busy timeout, so two processes on one file wait for each other rather than
fail; with no path the database lives in memory.
`lmvisor.runtime._sqlite.open_wal` switches a file to WAL and waits out other processes
doing the same. Text comes back as bytes: `text` and `json_value` decode one column at a
time, so a row holding bytes that are not UTF-8, or text that is not JSON, is one
`CorruptRecord` naming the row rather than a failed query. A file whose tables of our names
lack our columns (another program's, or damaged) is refused at open, before any query;
`report_skipped` tells the
operator about each row a service skips (a `store.record_skipped` event and a warning).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, final

from lmvisor.runtime._sqlite import open_wal
from lmvisor.runtime._threads import run_to_completion
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.runtime.observe.names import STORE_RECORD_SKIPPED
from lmvisor.services.errors import CorruptRecord

__all__ = [
    "SqliteFile",
    "dump_json",
    "json_value",
    "report_skipped",
    "text",
]

T = TypeVar("T")

_log = get_logger(__name__)


@final
class SqliteFile:
    """A lazily opened SQLite database (see the module docstring).

    Args:
        path: the file (its directory is created); None: an in-memory database.
        schema: the `CREATE ... IF NOT EXISTS` script run on every open.
    """

    def __init__(self, path: str | Path | None, schema: str) -> None:
        self.path = None if path is None else Path(path)
        self._schema = schema
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` on a worker thread, after every earlier call has finished.

        Raises:
            sqlite3.Error, OSError: the file cannot be opened, or `work` failed.
        """
        async with self._lock:
            if self._db is None:
                self._db = await run_to_completion(self._connect)
            return await run_to_completion(work, self._db)

    def _connect(self) -> sqlite3.Connection:
        if self.path is None:
            db = sqlite3.connect(":memory:", check_same_thread=False)
        else:
            db = open_wal(self.path, autocommit=False)
        try:
            db.text_factory = bytes
            _check_layout(db, self._schema)  # before the script: a refused file stays as found
            db.executescript(self._schema)
            db.commit()
        except BaseException:
            db.close()
            raise
        return db

    async def close(self) -> None:
        """Close the connection (a later `run` reopens it)."""
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                await run_to_completion(db.close)

    def __repr__(self) -> str:
        return f"SqliteFile({str(self.path) if self.path else ':memory:'})"


def _check_layout(db: sqlite3.Connection, schema: str) -> None:
    """Refuse a file whose tables are not the ones `schema` makes (a foreign or other
    version's table of the same name, which `CREATE TABLE IF NOT EXISTS` would leave as it
    is): one lacking a column we use, or with a column our rows cannot fill (NOT NULL, no
    default). A table the file does not have yet is fine (the schema makes it).

    Raises:
        sqlite3.DatabaseError: naming the table and its columns in question.
    """
    expected = sqlite3.connect(":memory:")
    try:
        expected.executescript(schema)
        tables = expected.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        for (table,) in tables.fetchall():
            have = db.execute(f"PRAGMA table_info({table})").fetchall()
            want = [row[1] for row in expected.execute(f"PRAGMA table_info({table})")]
            problem = _layout_problem(have, want) if have else None
            if problem is not None:
                raise sqlite3.DatabaseError(f"table {table!r} has another layout ({problem})")
    finally:
        expected.close()


def _layout_problem(have: list[tuple[Any, ...]], want: list[str]) -> str | None:
    """What keeps a table of columns `have` (`PRAGMA table_info` rows) from serving as one
    of columns `want`: columns it lacks, and columns of its own our inserts cannot fill."""
    names = [_column_name(row[1]) for row in have]
    missing = [name for name in want if name not in names]
    unfilled = [
        name for name, row in zip(names, have, strict=True)
        if name not in want and row[3] and row[4] is None
    ]  # fmt: skip
    parts = []
    if missing:
        parts.append(f"no column {', '.join(missing)}")
    if unfilled:
        parts.append(f"required columns of its own: {', '.join(unfilled)}")
    return "; ".join(parts) or None


def _column_name(raw: str | bytes) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def dump_json(value: Any) -> str:
    """Compact JSON text of `value` (non-ASCII kept as is).

    Raises:
        TypeError: `value` holds something JSON cannot express.
        ValueError: it nests too deep, or holds a NaN or infinity.
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def text(raw: Any, *, store: str, record: str) -> str:
    """A text column's value.

    Raises:
        CorruptRecord: the column holds no text, or bytes that are not UTF-8.
    """
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes):
        raise CorruptRecord(
            store=store, record=record, problem=f"a text column holds {type(raw).__name__}"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 ({exc.reason})"
        raise CorruptRecord(store=store, record=record, problem=problem) from exc


def json_value(raw: Any, *, store: str, record: str) -> Any:
    """A JSON column's value (None stays None).

    Raises:
        CorruptRecord: not UTF-8, not JSON, or nested too deep to read.
    """
    if raw is None:
        return None
    decoded = text(raw, store=store, record=record)
    try:
        return json.loads(decoded)
    except ValueError as exc:
        raise CorruptRecord(store=store, record=record, problem=f"not JSON ({exc})") from exc
    except RecursionError as exc:
        raise CorruptRecord(store=store, record=record, problem="JSON nested too deep") from exc


def report_skipped(events: EventRing, exc: CorruptRecord) -> None:
    """Report one skipped row: a `store.record_skipped` event and a warning, same fields."""
    fields = {"store": exc.store, "record": exc.record, "problem": exc.problem}
    _log.warning(STORE_RECORD_SKIPPED, **fields)
    events.emit(STORE_RECORD_SKIPPED, fields)
