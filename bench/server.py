"""The daemon's start-up time to ready and its idle RSS, against a bare FastAPI app on uvicorn.

Both processes run on this interpreter and are timed the same way: from spawn to the
first 200 from a GET on loopback, then the resident set size after a short idle. The
baseline is the floor of this stack (FastAPI + uvicorn + uvloop, one route, nothing
else), so the ratio is what lmvisor's runtime, tree and plumbing add. The daemon runs
its shipped defaults (`lmvisor serve`, loop "auto", GC tuning on). Runs interleave, and
each figure is the median of `--runs`. Prints one JSON line per figure.

Run: .venv/bin/python bench/server.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from _common import ROOT, emit

_TARGETS = {"startup": 1.5, "rss": 120.0}
_IDLE = 1.0
_READY_LIMIT = 60.0

_BARE_APP = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc status")


def _measure(command: list[str], port: int) -> tuple[float, float]:
    """Seconds from spawn to the first 200 on /healthz, and MiB resident after idling."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMVISOR_")}
    env["LMVISOR_SERVER__ACCESS_LOG"] = "false"
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited with {proc.returncode}")
            if time.perf_counter() - started > _READY_LIMIT:
                raise RuntimeError(f"{command[:4]} not ready in {_READY_LIMIT}s")
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.005)
        ready = time.perf_counter() - started
        time.sleep(_IDLE)
        return ready, _rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    daemon: list[tuple[float, float]] = []
    bare: list[tuple[float, float]] = []
    for _ in range(runs):
        port = _free_port()
        command = [sys.executable, "-m", "lmvisor.server", "serve", "--port", str(port)]
        daemon.append(_measure(command, port))
        port = _free_port()
        bare.append(_measure([sys.executable, "-c", _BARE_APP, str(port)], port))
    source = "bare FastAPI + uvicorn app, same interpreter, same run"
    emit(
        "server_startup_to_ready",
        statistics.median(t for t, _ in daemon),
        "s",
        target=_TARGETS["startup"],
        baseline=statistics.median(t for t, _ in bare),
        baseline_source=source,
        runs=runs,
    )
    emit(
        "server_idle_rss",
        statistics.median(r for _, r in daemon),
        "MiB",
        target=_TARGETS["rss"],
        baseline=statistics.median(r for _, r in bare),
        baseline_source=source,
        digits=1,
        runs=runs,
    )


if __name__ == "__main__":
    main()
