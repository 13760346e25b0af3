"""The daemon under load: `POST /v1/programs/{id}/run` throughput and latency; start-up, idle RSS.

Throughput: a Predict program (`question -> answer`) registered over HTTP, run by 200
and by 500 concurrent HTTP clients (bench/_load.py, in its own process; every question
differs, so the cache never answers) against the loopback LM server (its own process,
lean mode, 100 ms before each answer). The daemon runs its shipped defaults but for the
switches measured: the event loop (`server.loop`: asyncio's, or uvloop), the GC settings
(`server.gc_tuning` on or off) and, with `--transports`, the LM transport (`default`,
the shipped one, or a named one; every line names the transport it ran). Efficiency
is requests/s over the ideal, clients / 0.1 s (2,000/s at 200 clients); the target is
>= 0.8 at 200. The baseline, measured in the same run against the same LM server and
load: DSPy 3.4.1's
`Predict.acall` served by aiohttp (bench/dspy_side/server.py), what a DSPy user
deploys without lmvisor.

Start-up and RSS: the daemon and a bare FastAPI app on uvicorn, timed the same way
(spawn to the first 200 on loopback, then the resident set size after a short idle);
the bare app is the floor of this stack, so the ratio is what lmvisor's application
tree and plumbing add. Runs interleave; each figure is the median of `--runs`
(start-up) or of `--rounds` (throughput: each round runs the baseline and every
setting in turn).

Prints one JSON line per figure.

Run: .venv/bin/python bench/server.py [--rounds 3] [--runs 5] [--scale 1.0] [--skip-startup]
     [--transports default,pyreqwest]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from _common import ROOT, emit, run_dspy, shipped_transport

_TARGETS = {"startup": 1.5, "rss": 120.0, "efficiency": 0.8}
_IDLE = 1.0
_READY_LIMIT = 60.0
_LM_LATENCY = 0.1
# Clients -> requests measured (a warm-up of one request per client comes first).
_LOADS = {200: 4000, 500: 6000}
_LOAD = ROOT / "bench" / "_load.py"
# The per-run figures a median is taken of.
_FIGURES = ("rps", "p50_ms", "p99_ms")
_LM_COMMAND = (sys.executable, "-m", "lmvisor.testing.lm_server", "--lean", "--latency")
_PROGRAM = {"id": "bench", "program": {"module": "Predict", "signature": "question -> answer"}}
_DSPY_SOURCE = "DSPy 3.4.1 Predict.acall served by aiohttp: same LM server, same load, same run"

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


def _lm_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*_LM_COMMAND, str(_LM_LATENCY)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _post(url: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return int(answer.status)


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    started = time.perf_counter()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode}")
        if time.perf_counter() - started > _READY_LIMIT:
            raise RuntimeError(f"the daemon was not ready in {_READY_LIMIT}s")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.02)


def _load(url: str, clients: int, requests: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(_LOAD), url, "--clients", str(clients),
         "--requests", str(requests), "--warmup", str(clients)],
        capture_output=True, text=True, timeout=900, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def _daemon_round(
    lm_url: str, clients: int, requests: int, setting: tuple[str, str, bool]
) -> dict[str, Any]:
    """One daemon, shipped defaults but the transport, loop and GC of `setting`, under one load."""
    transport, loop, gc = setting
    port = _free_port()
    data_dir = tempfile.mkdtemp(prefix="lmvisor-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMVISOR_")}
    env.update(
        LMVISOR_DATA_DIR=data_dir,
        LMVISOR_SERVER__LOOP=loop,
        LMVISOR_SERVER__GC_TUNING=str(gc).lower(),
        LMVISOR_PROVIDERS__OPENAI__BASE_URL=lm_url + "/v1",
        LMVISOR_PROVIDERS__OPENAI__API_KEY="sk-bench",
    )
    if transport != "default":
        env["LMVISOR_PROVIDERS__OPENAI__TRANSPORT"] = transport
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmvisor.server", "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        _post(url + "/v1/programs", _PROGRAM)
        return _load(f"{url}/v1/programs/bench/run", clients, requests)
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(data_dir, ignore_errors=True)


def throughput(scale: float, rounds: int, transports: list[str]) -> None:
    """Emit requests/s at 200 and 500 clients for each transport, loop and GC setting.

    Each round runs the baseline and every setting once, interleaved, so a neighbour's
    load spreads over all of them; each figure is the median over the rounds.
    """
    lm, lm_url = _lm_server()
    settings = [
        (transport, loop, gc)
        for transport in transports
        for loop in ("asyncio", "uvloop")
        for gc in (True, False)
    ]
    try:
        for clients, count in _LOADS.items():
            requests = max(clients, int(count * scale))
            baselines: list[dict[str, Any]] = []
            found: dict[tuple[str, str, bool], list[dict[str, Any]]] = {s: [] for s in settings}
            for _ in range(rounds):
                baseline = run_dspy(
                    "server.py", "--lm-url", lm_url, "--load-python", sys.executable,
                    "--load-script", str(_LOAD), "--clients", str(clients),
                    "--requests", str(requests), "--warmup", str(clients),
                )  # fmt: skip
                if baseline is not None:
                    baselines.append(baseline)
                for setting in settings:
                    found[setting].append(_daemon_round(lm_url, clients, requests, setting))
            for setting, runs in found.items():
                _emit_round(_median(runs), _median(baselines), clients, setting)
    finally:
        lm.terminate()
        lm.wait(30)
        if lm.stdout is not None:
            lm.stdout.close()


def _median(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The median of each figure over `runs`, errors summed (None for no runs)."""
    if not runs:
        return None
    merged = {key: statistics.median(run[key] for run in runs) for key in _FIGURES}
    merged["errors"] = sum(run["errors"] for run in runs)
    merged["requests"] = sum(run["requests"] for run in runs)
    merged["rps_rounds"] = [run["rps"] for run in runs]
    return merged


def _emit_round(
    found: dict[str, Any] | None,
    baseline: dict[str, Any] | None,
    clients: int,
    setting: tuple[str, str, bool],
) -> None:
    assert found is not None
    transport, loop, gc = setting
    ideal = clients / _LM_LATENCY
    emit(
        "server_run_rps",
        found["rps"],
        "req/s",
        target=_TARGETS["efficiency"] * ideal if clients == 200 else None,
        baseline=None if baseline is None else baseline["rps"],
        baseline_source=_DSPY_SOURCE if baseline is not None else "DSPy not measured",
        higher_is_better=True,
        digits=1,
        clients=clients,
        transport=shipped_transport() if transport == "default" else transport,
        shipped_transport=transport == "default",
        loop=loop,
        gc_tuning=gc,
        efficiency=round(found["rps"] / ideal, 3),
        ideal_rps=ideal,
        rounds=len(found["rps_rounds"]),
        rps_rounds=found["rps_rounds"],
        p50_ms=found["p50_ms"],
        p99_ms=found["p99_ms"],
        errors=found["errors"],
        requests=found["requests"],
        baseline_efficiency=None if baseline is None else round(baseline["rps"] / ideal, 3),
        baseline_rps_rounds=None if baseline is None else baseline["rps_rounds"],
        baseline_p50_ms=None if baseline is None else baseline["p50_ms"],
        baseline_p99_ms=None if baseline is None else baseline["p99_ms"],
        baseline_errors=None if baseline is None else baseline["errors"],
    )


def startup(runs: int) -> None:
    """Emit the start-up time to ready and the idle RSS, against a bare FastAPI app."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="start-up rounds")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds")
    parser.add_argument("--scale", type=float, default=1.0, help="scales the request counts")
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--transports",
        default="default",
        help="comma-separated LM transports to measure: default (the shipped), aiohttp, pyreqwest",
    )
    args = parser.parse_args()
    if not args.skip_throughput:
        throughput(args.scale, max(1, args.rounds), args.transports.split(","))
    if not args.skip_startup:
        startup(args.runs)


if __name__ == "__main__":
    main()
