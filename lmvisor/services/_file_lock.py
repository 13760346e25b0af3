"""`lock_file`: an exclusive, non-blocking `flock` on a file, held by its open descriptor.

The services' cross-app locks (an optimization job's claim, the programs file's writer)
take it; closing the descriptor, or the process ending, drops it. There is no `fcntl` on
Windows: callers check the platform first and hold every lock there without a file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if sys.platform != "win32":
    import fcntl

__all__ = ["lock_file"]


def lock_file(path: Path) -> int | None:
    """Open `path` (created, mode 0600) and lock it: its descriptor, or None when another
    holder has the lock (nothing is left open then).

    Raises:
        OSError: the file cannot be created or opened.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd
