"""Tests for lmvisor.services._sqlite.SqliteFile under cancellation."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from lmvisor.services._sqlite import SqliteFile


async def _turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class TestSqliteFileUnderCancellation:
    async def test_a_cancelled_run_keeps_the_connection_until_its_work_ends(
        self, tmp_path: Path
    ) -> None:
        """A run cancelled mid-query keeps the file's lock until its query returns, so a
        close (or another run) never touches the connection while a thread is in it."""
        file = SqliteFile(tmp_path / "x.sqlite", "CREATE TABLE IF NOT EXISTS t (x)")
        await file.run(lambda db: db.execute("INSERT INTO t VALUES (1)"))
        release = threading.Event()
        order: list[str] = []

        def slow(db: sqlite3.Connection) -> None:
            release.wait(10)
            db.execute("SELECT x FROM t").fetchall()
            order.append("query")

        running = asyncio.ensure_future(file.run(slow))
        await _turns()
        running.cancel()
        closing = asyncio.ensure_future(file.close())
        await _turns()
        assert not closing.done() and order == []
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await running
        await closing
        assert order == ["query"]
