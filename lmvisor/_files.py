"""Reading a file named from outside (a config file, a spec, a dataset) without trusting it.

A leaf beside `_error` and `_redaction`, so every layer reads such files one way: only a
regular file, at most `limit` bytes. A FIFO is opened without blocking and refused (a plain
`open` waits for a writer forever, holding whatever loop called it); a device such as
`/dev/zero` or a file larger than the limit is refused before it is read whole.
"""

from __future__ import annotations

import os
import stat
from typing import Final

__all__ = ["MAX_DATASET_BYTES", "MAX_PROGRAM_BYTES", "check_regular_file", "read_regular_file"]

MAX_DATASET_BYTES: Final = 1 << 30
"""The largest dataset (a JSONL trainset or valset) read: far above a real one (a million
rows is 1e6 examples, `parse_job_spec`'s own bound), far below what `/dev/zero` or a
mistaken file would cost in memory."""
MAX_PROGRAM_BYTES: Final = 64 << 20
"""The largest program file read (a saved state or a spec): a program with thousands of
demos is a few megabytes."""

_FLAGS: Final = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def read_regular_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them.

    Raises:
        OSError: it cannot be opened or read (missing, no permission, a name too long).
        ValueError: it is not a regular file (a directory, a device, a pipe) or holds
            more than `limit` bytes (checked before reading, and again after: it may grow).
    """
    fd = os.open(path, _FLAGS)
    try:
        _check(os.fstat(fd), limit)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise ValueError(f"larger than {limit:,} bytes")
    return b"".join(chunks)


def check_regular_file(path: str | os.PathLike[str], limit: int) -> None:
    """Raise what `read_regular_file` would before reading `path`, without opening it (for a
    file someone else reads later).

    Raises:
        OSError: it cannot be found or statted.
        ValueError: it is not a regular file, or holds more than `limit` bytes.
    """
    _check(os.stat(path), limit)


def _check(found: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(found.st_mode):
        raise ValueError("not a regular file")
    if found.st_size > limit:
        raise ValueError(f"larger than {limit:,} bytes")
