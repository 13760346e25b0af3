"""The bounded reader of files named from outside (`lmvisor._files`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lmvisor._files import read_regular_file


class TestReadRegularFile:
    def test_reads_a_file_within_the_limit(self, tmp_path: Path) -> None:
        """A regular file up to the limit is read whole, byte for byte."""
        path = tmp_path / "f"
        path.write_bytes(b"x" * 5000)
        assert read_regular_file(path, 5000) == b"x" * 5000

    def test_a_larger_file_is_refused(self, tmp_path: Path) -> None:
        """One byte past the limit is refused, naming the limit."""
        path = tmp_path / "f"
        path.write_bytes(b"x" * 5001)
        with pytest.raises(ValueError, match=r"^larger than 5,000 bytes$"):
            read_regular_file(path, 5000)

    @pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
    def test_what_is_no_regular_file_is_refused_unread(self, tmp_path: Path, kind: str) -> None:
        """A FIFO (no writer: a plain open would wait), a device or a directory is refused."""
        path = {"fifo": tmp_path / "p", "device": Path("/dev/zero"), "directory": tmp_path}[kind]
        if kind == "fifo":
            os.mkfifo(path)
        with pytest.raises(ValueError, match=r"^not a regular file$"):
            read_regular_file(path, 1 << 20)

    def test_a_missing_file_is_an_os_error(self, tmp_path: Path) -> None:
        """A missing file raises FileNotFoundError for the caller to word."""
        with pytest.raises(FileNotFoundError):
            read_regular_file(tmp_path / "nope", 10)
