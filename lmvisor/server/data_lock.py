"""One owner per data directory: the daemon's lock on `<data_dir>/daemon.lock`.

The application tree keeps live state under its data directory (the cache, the
registered programs, the optimization jobs, which a coordinator resumes when it
starts). Two trees on one directory would run the same jobs twice, so the daemon
holds an exclusive advisory lock (`flock`) on `daemon.lock` for its life and
writes its pid and URL there; a second daemon, or an embedded CLI command, that
finds the lock taken refuses with `DataDirInUse`, naming the daemon's URL to use
instead. The lock goes with the process: a killed daemon leaves no stale lock.

Without `fcntl` (Windows) the lock is not enforced.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, Any, Final, final

from lmvisor.server.errors import DataDirInUse

if sys.platform != "win32":
    import fcntl

__all__ = ["LOCK_FILE", "DataDirLock", "check_data_dir_free"]

LOCK_FILE: Final = "daemon.lock"


@final
class DataDirLock:
    """The daemon's hold on its data directory; use as a context manager.

    Args:
        data_dir: the application's data directory (created if missing).

    Raises (on enter):
        DataDirInUse: another process holds the directory.
        OSError: the lock file cannot be created.
    """

    __slots__ = ("_file", "path")

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._file: IO[str] | None = None

    def __enter__(self) -> DataDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        if not _try_lock(handle):
            owner = _owner(handle)
            handle.close()
            raise DataDirInUse(data_dir=str(self.path.parent), **owner)
        self._file = handle
        self.announce(url=None)
        return self

    def announce(self, *, url: str | None) -> None:
        """Record this process (and the URL it serves, once known) for whoever is refused."""
        handle = self._file
        if handle is None:
            return
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "url": url}))
        handle.flush()

    def __exit__(self, *exc: object) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.seek(0)
            handle.truncate()
            handle.close()  # closing the file releases the lock


def check_data_dir_free(data_dir: Path | None) -> None:
    """Refuse to open a tree on a data directory a daemon is serving.

    Raises:
        DataDirInUse: a daemon holds `data_dir`'s lock.
    """
    if data_dir is None or sys.platform == "win32":
        return
    path = data_dir / LOCK_FILE
    if not path.exists():
        return
    with path.open("a+", encoding="utf-8") as handle:
        if not _try_lock(handle):
            raise DataDirInUse(data_dir=str(data_dir), **_owner(handle))


def _try_lock(handle: IO[str]) -> bool:
    if sys.platform == "win32":
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _owner(handle: IO[str]) -> dict[str, Any]:
    handle.seek(0)
    try:
        found = json.loads(handle.read() or "{}")
    except (ValueError, RecursionError):
        found = None
    if not isinstance(found, dict):  # not what `announce` writes: the owner is unknown
        return {"pid": None, "url": None}
    pid, url = found.get("pid"), found.get("url")
    return {
        "pid": pid if isinstance(pid, int) else None,
        "url": url if isinstance(url, str) else None,
    }
