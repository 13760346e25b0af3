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
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import final

if sys.platform != "win32":
    import fcntl

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
        name = hashlib.sha256(job_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        fd = os.open(self._dir / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._held[job_id] = fd
        return True

    def release(self, job_id: str) -> None:
        """Drop the claim on `job_id`, if held."""
        fd = self._held.pop(job_id, -1)
        if fd >= 0:
            os.close(fd)  # closing the only descriptor drops the flock

    def release_all(self) -> None:
        """Drop every claim held."""
        for job_id in list(self._held):
            self.release(job_id)
