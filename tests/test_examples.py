"""The shipped examples run on a fresh machine: `make run`'s job and the runtime tour."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, tmp_path: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env = {k: v for k, v in env.items() if not k.startswith("LMVISOR_")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class TestExamples:
    def test_lm_program_uses_the_embedded_server_without_keys(self, tmp_path: Path) -> None:
        """With no vendor key, `make run` says so, answers through the loopback, then the cache."""
        out = _run("lm_program.py", tmp_path)
        assert "no LM vendor is reachable" in out and "loopback LM server" in out
        assert "answer:     answer " in out
        assert "1 lm_request event(s) recorded" in out
        assert "again:      cached=True cost=$0.000000" in out
        assert "lm_provider:local [worker] running" in out

    def test_runtime_tour_restarts_only_the_worker(self, tmp_path: Path) -> None:
        """The runtime tour prints the tree before and after one worker's crash."""
        out = _run("runtime_tour.py", tmp_path)
        assert "tree before the crash" in out
        assert "restarts=1" in out
