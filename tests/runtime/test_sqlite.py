"""Tests for lmvisor.runtime._sqlite: switching a file to WAL while others hold it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from lmvisor.runtime._sqlite import enable_wal


class _Counting:
    """A connection that counts the statements it is asked to run, then runs them."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.attempts = 0
        self.retried = threading.Event()

    def execute(self, sql: str) -> sqlite3.Cursor:
        self.attempts += 1
        if self.attempts >= 2:
            self.retried.set()
        return self.conn.execute(sql)


def _locked_file(path: Path) -> sqlite3.Connection:
    """A rollback-journal file, held under an exclusive lock by the connection returned."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def _impatient(path: Path) -> sqlite3.Connection:
    """A connection that never waits in SQLite's own busy handler."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 0")
    return conn


def _mode(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])


class TestEnableWal:
    def test_a_locked_file_is_retried_until_it_is_free(self, tmp_path: Path) -> None:
        """A busy file is tried again (not failed) until the holder lets go, then is WAL."""
        path = tmp_path / "db.sqlite3"
        holder = _locked_file(path)
        conn = _Counting(_impatient(path))
        failures: list[BaseException] = []

        def switch() -> None:
            try:
                enable_wal(conn, wait=60.0)  # type: ignore[arg-type]
            except BaseException as exc:
                failures.append(exc)

        worker = threading.Thread(target=switch)
        worker.start()
        assert conn.retried.wait(60.0)  # a first attempt failed busy and a second was made
        holder.execute("ROLLBACK")
        worker.join(60.0)
        assert failures == []
        assert _mode(path) == "wal"
        conn.conn.close()
        holder.close()

    def test_still_locked_after_the_wait_raises(self, tmp_path: Path) -> None:
        """With no time left to wait, the busy error is raised and the mode is unchanged."""
        path = tmp_path / "db.sqlite3"
        holder = _locked_file(path)
        conn = _impatient(path)
        with pytest.raises(sqlite3.OperationalError, match=r"^database is locked$"):
            enable_wal(conn, wait=0.0)
        holder.execute("ROLLBACK")
        assert _mode(path) == "delete"
        conn.close()
        holder.close()

    def test_other_failures_are_not_retried(self, tmp_path: Path) -> None:
        """A file that is no database fails on the first attempt, whatever the wait."""
        path = tmp_path / "db.sqlite3"
        path.write_bytes(b"not a database, just some bytes " * 64)
        conn = _Counting(_impatient(path))
        with pytest.raises(sqlite3.DatabaseError, match=r"^file is not a database$"):
            enable_wal(conn, wait=60.0)  # type: ignore[arg-type]
        assert conn.attempts == 1
        conn.conn.close()

    def test_a_file_already_in_wal_mode_needs_no_lock(self, tmp_path: Path) -> None:
        """Opening a WAL file while another connection writes to it switches nothing, waits for
        nothing."""
        path = tmp_path / "db.sqlite3"
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("CREATE TABLE t (x)")
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO t VALUES (1)")
        conn = _Counting(_impatient(path))
        enable_wal(conn, wait=0.0)  # type: ignore[arg-type]
        assert conn.attempts == 1
        writer.execute("COMMIT")
        conn.conn.close()
        writer.close()
