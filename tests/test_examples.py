"""The shipped examples run on a fresh machine: `make run`'s daemon, the embedding example and
the runtime tour."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env = {k: v for k, v in env.items() if not k.startswith("LMVISOR_")}
    return {**env, **extra}


def _run(script: str, tmp_path: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _curl(line: str) -> tuple[str, dict[str, object]]:
    """The URL and JSON body of the printed `curl -s URL -H ... -d BODY` line."""
    words = shlex.split(line)
    assert words[:2] == ["curl", "-s"]
    return words[2], json.loads(words[words.index("-d") + 1])


class TestMakeRun:
    def test_daemon_serves_the_program_and_stops_on_ctrl_c(self, tmp_path: Path) -> None:
        """`make run` says it uses the loopback LM, prints a curl line that runs the sample
        program, answers it over HTTP, and exits 0 on SIGINT with its files in .lmvisor/."""
        log = (tmp_path / "daemon.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "daemon.py")],
            cwd=tmp_path,
            env=_env(LMVISOR_SERVER__PORT="0"),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            assert proc.stdout is not None
            lines: list[str] = []
            while not any(line.strip().startswith("curl ") for line in lines):
                line = proc.stdout.readline()
                assert line, f"the daemon exited: {(tmp_path / 'daemon.log').read_text()[-2000:]}"
                lines.append(line)
            banner = "".join(lines)
            url, body = _curl(next(line.strip() for line in lines if "curl " in line))
            answer = httpx.post(url, json=body, timeout=30)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
            log.close()
        assert "no LM vendor is reachable" in banner and "loopback LM server" in banner
        assert "lmvisor daemon listening on http://127.0.0.1:" in banner
        assert url.endswith("/v1/programs/qa/run")
        result = answer.json()
        assert answer.status_code == 200 and result["module_id"] == "qa"
        assert set(result["outputs"]) == {"reasoning", "answer"}
        files = sorted(p.name for p in (tmp_path / ".lmvisor").iterdir())
        assert {"cache.sqlite3", "events.sqlite3", "optimization.sqlite3"} <= set(files)


class TestExamples:
    def test_embedding_example_uses_the_loopback_without_keys(self, tmp_path: Path) -> None:
        """With no vendor key, the embedding example says so, answers through the loopback,
        then the cache."""
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
