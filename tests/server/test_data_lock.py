"""Tests for lmvisor.server.data_lock: one owner per data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lmvisor.server.data_lock import LOCK_FILE, DataDirLock, check_data_dir_free
from lmvisor.server.errors import DataDirInUse
from tests.server.conftest import ROOT, DaemonProcess, LMProcess, daemon_env

LMVISOR = str(Path(sys.executable).parent / "lmvisor")


class TestDataDirLock:
    def test_a_held_directory_refuses_a_second_owner(self, tmp_path: Path) -> None:
        """While held, another lock or check is refused with the owner's pid and URL."""
        with DataDirLock(tmp_path / "data") as lock:
            lock.announce(url="http://127.0.0.1:8750")
            with pytest.raises(DataDirInUse, match=r"pass --url http://127\.0\.0\.1:8750"):
                check_data_dir_free(tmp_path / "data")
            with pytest.raises(DataDirInUse) as refused:
                DataDirLock(tmp_path / "data").__enter__()
        assert refused.value.url == "http://127.0.0.1:8750"
        assert f"process {os.getpid()}" in str(refused.value)

    def test_released_on_exit(self, tmp_path: Path) -> None:
        """After the holder exits, the directory is free and the lock file is empty."""
        with DataDirLock(tmp_path):
            pass
        check_data_dir_free(tmp_path)
        with DataDirLock(tmp_path):
            pass
        assert (tmp_path / LOCK_FILE).read_text() == ""

    @pytest.mark.parametrize("content", ["[1, 2]", "[" * 100_000, '"pid"', "{"])
    def test_an_unreadable_owner_is_unknown(self, tmp_path: Path, content: str) -> None:
        """A held lock file holding anything but what the holder writes names no owner."""
        with DataDirLock(tmp_path):
            (tmp_path / LOCK_FILE).write_text(content)
            with pytest.raises(DataDirInUse) as refused:
                check_data_dir_free(tmp_path)
        assert "in use by another process:" in str(refused.value) and refused.value.url is None

    def test_no_directory_or_no_lock_file_is_free(self, tmp_path: Path) -> None:
        """Memory-only apps and untouched directories are never refused."""
        check_data_dir_free(None)
        check_data_dir_free(tmp_path / "never-used")


class TestWithADaemon:
    def test_daemon_holds_its_data_dir(
        self,
        spawn_daemon: Callable[..., DaemonProcess],
        lm_process: LMProcess,
        tmp_path: Path,
    ) -> None:
        """A second daemon and an embedded `run` on a daemon's data directory are refused
        (exit 2), pointing at the daemon's URL."""
        daemon = spawn_daemon(LMVISOR_DATA_DIR=str(tmp_path), **lm_process.env())
        owner = json.loads((tmp_path / LOCK_FILE).read_text())
        assert owner == {"pid": daemon.proc.pid, "url": daemon.url}
        env = daemon_env(LMVISOR_DATA_DIR=str(tmp_path), **lm_process.env())
        second = subprocess.run(
            [sys.executable, "-m", "lmvisor.server", "serve", "--port", "0"],
            capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
        )  # fmt: skip
        embedded = subprocess.run(
            [LMVISOR, "run", "qa", "-i", "question=q"],
            capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
        )  # fmt: skip
        for refused in (second, embedded):
            assert refused.returncode == 2, refused.stderr
            assert f"pass --url {daemon.url}" in refused.stderr
