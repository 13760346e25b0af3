"""Which process runs an optimization job, when several apps share one jobs file.

Apps may open one data directory together (the L3 cache is shared by design), and each
app's coordinator resumes, when it starts, every job the file shows as running: without a
claim, a second app resumed the first one's live job and ran it twice over (every LM call
paid twice, both writing its steps and result). A coordinator claims a job before running
it: an exclusive `flock` on `<jobs file>.claims/<hash of the job id>`, held while its
worker runs and dropped when it stops (or with the process, so a killed app leaves no
claim). A job another holder has claimed is not run here. The file's name hashes the id,
so an id read back from a damaged file never names a path. Without `fcntl` (Windows), or
for a store in memory, every claim succeeds. Blocking calls, each a few microseconds.

The directory holds a file only for a job claimed now: a release unlinks the file while
its lock is still held, then closes it (one file per job ever run piled up before). That
is the classic lock-file-unlink race, closed the classic way: an opener may have opened the
file just before it was unlinked and lock it once it is closed, holding a lock on a file no
longer in the directory while a third opener creates and locks a new one. So a claim
checks, after locking, that the path still names the file it locked (same device and
inode) and, when it does not, closes it and tries again. A killed app's files stay until
the job's next claimer releases them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path
from typing import final

from lmvisor.services._file_lock import lock_file

__all__ = ["JobClaims"]


@final
class JobClaims:
    """The claims this process holds on the jobs of one jobs file.

    Args:
        store_path: the jobs file; None (a store in memory): every claim succeeds.
    """

    __slots__ = ("_dir", "_held")

    def __init__(self, store_path: Path | None) -> None:
        self._dir = None if store_path is None else Path(f"{store_path}.claims")
        self._held: dict[str, int] = {}

    def claim(self, job_id: str) -> bool:
        """Claim `job_id`; False when another holder (another app, here or elsewhere) has it.

        Raises:
            OSError: the claims directory or file cannot be created.
        """
        if job_id in self._held:
            return True
        if self._dir is None or sys.platform == "win32":
            self._held[job_id] = -1
            return True
        self._dir.mkdir(parents=True, exist_ok=True)
        path = self._path(job_id)
        while True:  # again when the file was unlinked between our open and our lock
            fd = lock_file(path)
            if fd is None:
                return False
            try:
                named = _names(path, fd)
            except BaseException:
                os.close(fd)
                raise
            if named:
                self._held[job_id] = fd
                return True
            os.close(fd)

    def release(self, job_id: str) -> None:
        """Drop the claim on `job_id`, if held, and its file (see the module docstring)."""
        fd = self._held.pop(job_id, -1)
        if fd < 0:
            return
        try:
            with contextlib.suppress(OSError):  # gone already, or kept: claims still hold
                os.unlink(self._path(job_id))  # while locked: no opener can hold it
        finally:
            os.close(fd)  # closing the only descriptor drops the flock

    def _path(self, job_id: str) -> Path:
        assert self._dir is not None
        name = hashlib.sha256(job_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self._dir / name

    def release_all(self) -> None:
        """Drop every claim held."""
        for job_id in list(self._held):
            self.release(job_id)


def _names(path: Path, fd: int) -> bool:
    """Whether `path` still names the file open as `fd` (it was not unlinked meanwhile)."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)
