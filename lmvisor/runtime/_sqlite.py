"""Opening a SQLite file in WAL mode when other processes may be opening it too.

Used by every SQLite file lmvisor keeps: the runtime's event sink and the services'
stores. Blocking: call it on a worker thread.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Final

__all__ = ["BUSY_TIMEOUT", "enable_wal", "open_wal"]

BUSY_TIMEOUT: Final = 5.0
"""Seconds a connection waits for another's lock before failing."""

_WAL_FIRST_PAUSE: Final = 0.001
_WAL_MAX_PAUSE: Final = 0.05


def open_wal(path: Path, *, autocommit: bool = True) -> sqlite3.Connection:
    """A connection to the file at `path` (its directory created), usable from any thread,
    in WAL mode with `synchronous=NORMAL`, waiting up to `BUSY_TIMEOUT` for other
    connections' locks. `autocommit`: no implicit transactions (`isolation_level=None`).

    Raises:
        sqlite3.Error: the file cannot be opened, is not a database, or stayed locked.
        OSError: the directory cannot be created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path,
        check_same_thread=False,
        isolation_level=None if autocommit else "DEFERRED",
        timeout=BUSY_TIMEOUT,
    )
    try:
        enable_wal(conn, wait=BUSY_TIMEOUT)
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def enable_wal(conn: sqlite3.Connection, *, wait: float) -> None:
    """Put `conn`'s database in WAL mode, waiting up to `wait` seconds for other connections.

    Switching a file to WAL reads its header, then upgrades to a write lock. SQLite
    never waits (busy handler) for such an upgrade, since two connections each holding a
    read lock and waiting for the other would deadlock: of two processes opening a new
    file at the same moment, one gets "database is locked" at once, whatever its busy
    timeout. That error is retried here, with short growing pauses, until `wait` has
    passed; a file already in WAL mode needs no lock and returns at once. Blocking: call
    it on a worker thread.

    Raises:
        sqlite3.OperationalError: still locked after `wait` seconds.
        sqlite3.Error: any other failure (not a database, read-only...), at once.
    """
    deadline = time.monotonic() + wait
    pause = _WAL_FIRST_PAUSE
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            left = deadline - time.monotonic()
            if not _is_busy(exc) or left <= 0:
                raise
        _pause(min(pause, left))
        pause = min(pause * 2, _WAL_MAX_PAUSE)


def _is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or one of its extended codes (another connection holds the lock)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY


def _pause(seconds: float) -> None:
    """Wait between attempts (its own function: tests see each retry through it)."""
    time.sleep(seconds)
