"""Tests for lmvisor.services.cache_sqlite: the L3 file, its size bound, and two processes on it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lmvisor.services.cache_entry import CacheEntry, CorruptEntry
from lmvisor.services.cache_sqlite import SqliteTier

ROOT = Path(__file__).resolve().parents[2]


def _tier(path: Path, max_size: int = 1 << 20, stale_ttl: float = 100.0) -> SqliteTier:
    tier = SqliteTier(path, max_size=max_size, busy_timeout=10.0, stale_ttl=stale_ttl)
    tier.open()
    return tier


class TestReadWrite:
    def test_written_entries_are_read_back_and_survive_reopening(self, tmp_path: Path) -> None:
        """An entry written is found again, also by a tier opened later on the same file."""
        path = tmp_path / "sub" / "cache.sqlite3"
        tier = _tier(path)
        tier.write([("k", CacheEntry(b"payload", 50.0))], [], now=0.0)
        assert tier.get("k") == CacheEntry(b"payload", 50.0)
        tier.close()
        again = _tier(path)
        assert again.get("k") == CacheEntry(b"payload", 50.0)
        assert again.get("missing") is None
        assert again.statistics().entries == 1
        again.close()

    def test_file_is_in_wal_mode(self, tmp_path: Path) -> None:
        """Readers never wait for writers: the journal is a write-ahead log."""
        tier = _tier(tmp_path / "c.sqlite3")
        mode = sqlite3.connect(tmp_path / "c.sqlite3").execute("PRAGMA journal_mode").fetchone()
        assert mode == ("wal",)
        tier.close()

    def test_wal_is_checkpointed_less_often_than_sqlites_default(self, tmp_path: Path) -> None:
        """The writer lets the WAL pass SQLite's 1000 pages before copying it into the file."""
        path = tmp_path / "c.sqlite3"
        tier = _tier(path, max_size=1 << 30)
        for i in range(400):
            tier.write([(f"k{i}", CacheEntry(bytes(3000), 1.0))], [], 0.0)
        frames = sqlite3.connect(path).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        assert 1000 < frames < 4000
        assert tier.statistics().entries == 400
        tier.close()

    def test_overwrite_and_delete_keep_exact_counts(self, tmp_path: Path) -> None:
        """Replacing and deleting keep the entry count and bytes exact."""
        tier = _tier(tmp_path / "c.sqlite3")
        tier.write([("a", CacheEntry(b"1" * 10, 1.0)), ("b", CacheEntry(b"2" * 20, 1.0))], [], 0.0)
        tier.write([("a", CacheEntry(b"3" * 30, 1.0))], ["b"], 0.0)
        stats = tier.statistics()
        assert (stats.entries, stats.bytes) == (1, 38)
        tier.close()

    def test_row_without_bytes_is_corrupt(self, tmp_path: Path) -> None:
        """A row someone else wrote with a text payload raises CorruptEntry."""
        path = tmp_path / "c.sqlite3"
        tier = _tier(path)
        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT INTO entries (key, payload, size, stored_at, expires_at)"
                " VALUES ('bad', 'text', 4, 0, 99)"
            )
        with pytest.raises(CorruptEntry, match=r"^corrupt cache entry: the row's payload"):
            tier.get("bad")
        tier.close()

    def test_not_a_database_fails_to_open(self, tmp_path: Path) -> None:
        """A file that is not SQLite raises sqlite3.Error at open (the cache then skips L3)."""
        path = tmp_path / "c.sqlite3"
        path.write_bytes(b"this is not a database file at all, not even close" * 100)
        with pytest.raises(sqlite3.DatabaseError):
            SqliteTier(path, max_size=1000, busy_timeout=1.0, stale_ttl=1.0).open()


# The first layout, as files written before the rowid table hold it.
_LAYOUT_1 = (
    """CREATE TABLE entries (
        key TEXT PRIMARY KEY, payload BLOB NOT NULL, size INTEGER NOT NULL,
        stored_at REAL NOT NULL, expires_at REAL NOT NULL) WITHOUT ROWID""",
    "CREATE INDEX entries_by_age ON entries(stored_at)",
    """CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), entries INTEGER NOT NULL,
        total_size INTEGER NOT NULL)""",
    "INSERT INTO meta VALUES (1, 2, 36)",
    """CREATE TRIGGER entries_added AFTER INSERT ON entries BEGIN
        UPDATE meta SET entries = entries + 1, total_size = total_size + NEW.size
        WHERE id = 1; END""",
    "INSERT INTO entries VALUES ('old', x'6f6c64', 11, 1.0, 50.0)",
    "INSERT INTO entries VALUES ('older', x'6f6c646572', 25, 0.5, 60.0)",
)


class TestLayout:
    def test_rows_live_in_a_rowid_table_with_a_unique_key(self, tmp_path: Path) -> None:
        """A new file gets the rowid layout: an `id` column and a unique key, layout 2."""
        path = tmp_path / "c.sqlite3"
        _tier(path).close()
        with sqlite3.connect(path) as conn:
            columns = [row[1] for row in conn.execute("PRAGMA table_info(entries)")]
            (layout,) = conn.execute("PRAGMA user_version").fetchone()
        assert columns == ["id", "key", "payload", "size", "stored_at", "expires_at"]
        assert layout == 2

    def test_a_first_layout_file_is_moved_with_its_rows_and_counts(self, tmp_path: Path) -> None:
        """Opening a WITHOUT ROWID file keeps every row, recounts them, and keeps counting."""
        path = tmp_path / "c.sqlite3"
        with sqlite3.connect(path) as conn:
            for statement in _LAYOUT_1:
                conn.execute(statement)
        tier = _tier(path)
        assert tier.get("old") == CacheEntry(b"old", 50.0)
        assert tier.get("older") == CacheEntry(b"older", 60.0)
        assert (tier.statistics().entries, tier.statistics().bytes) == (2, 36)
        tier.write([("old", CacheEntry(b"o" * 20, 70.0)), ("new", CacheEntry(b"n", 70.0))], [], 2.0)
        assert (tier.statistics().entries, tier.statistics().bytes) == (3, 25 + 28 + 9)
        tier.close()
        with sqlite3.connect(path) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "entries_layout1" not in tables
        again = _tier(path)  # a second open finds the layout current and changes nothing
        assert again.statistics().entries == 3
        again.close()

    @pytest.mark.parametrize("layout", [3, 999, -1])
    def test_a_file_of_a_later_layout_is_refused_unchanged(
        self, tmp_path: Path, layout: int
    ) -> None:
        """A newer lmvisor's file is refused at open with the layout named, and left as it was
        (it was stamped layout 2, and a newer lmvisor then misread it)."""
        path = tmp_path / "c.sqlite3"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE entries (k TEXT)")
            conn.execute(f"PRAGMA user_version = {layout}")
        conn.close()
        with pytest.raises(sqlite3.DatabaseError, match=rf"^layout {layout} is not one this lm"):
            _tier(path)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (layout,)
            assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["entries"]
        conn.close()


class TestSizeBound:
    def test_writes_beyond_the_bound_evict_oldest_first(self, tmp_path: Path) -> None:
        """Passing max_size evicts the oldest written entries, down to 90% of the bound."""
        tier = _tier(tmp_path / "c.sqlite3", max_size=1000)
        for i in range(30):
            tier.write([(f"k{i}", CacheEntry(b"x" * 92, 1e9))], [], now=float(i))
        stats = tier.statistics()
        assert stats.bytes <= 1000
        assert stats.evictions == 30 - stats.entries
        assert tier.get("k29") is not None and tier.get("k0") is None
        tier.close()

    def test_entries_past_their_stale_window_go_first(self, tmp_path: Path) -> None:
        """Long-expired entries are evicted before younger live ones."""
        tier = _tier(tmp_path / "c.sqlite3", max_size=560, stale_ttl=10.0)
        tier.write([("dead", CacheEntry(b"x" * 92, 1.0))], [], now=0.0)
        for i in range(4):
            tier.write([(f"live{i}", CacheEntry(b"x" * 92, 1e9))], [], now=1.0 + i)
        tier.write([("new", CacheEntry(b"x" * 92, 1e9))], [], now=100.0)
        assert tier.get("dead") is None
        assert tier.get("live0") is not None
        tier.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from lmvisor.services.cache_entry import CacheEntry
    from lmvisor.services.cache_sqlite import SqliteTier

    path, name, batches = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    print("ready", flush=True)
    sys.stdin.readline()  # both processes open the new file at the same moment
    tier = SqliteTier(path, max_size=1 << 30, busy_timeout=30.0, stale_ttl=60.0)
    tier.open()
    for b in range(batches):
        items = [(f"{name}-{b}-{i}", CacheEntry(f"{name}{b}{i}".encode(), 1e12)) for i in range(5)]
        tier.write(items, [], now=float(b))
    tier.close()
    print("done")
    """
)


class TestTwoProcesses:
    def test_two_processes_write_one_file_without_errors_or_losses(self, tmp_path: Path) -> None:
        """Two OS processes opening a new file together and writing concurrently both finish,
        and every entry is there."""
        path = tmp_path / "shared.sqlite3"
        batches = 150
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _WRITER, str(path), name, str(batches)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=ROOT,
            )
            for name in ("p1", "p2")
        ]
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n", proc.communicate()[1].decode()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=120) for proc in procs]
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err.decode()
            assert out.strip() == b"done"
        tier = _tier(path)
        assert tier.statistics().entries == 2 * batches * 5
        for name in ("p1", "p2"):
            assert tier.get(f"{name}-{batches - 1}-4") == CacheEntry(
                f"{name}{batches - 1}4".encode(), 1e12
            )
        count = sqlite3.connect(path).execute("SELECT count(*) FROM entries").fetchone()[0]
        assert count == 2 * batches * 5
        tier.close()
