"""Soak: does a long-lived `lmvisor serve` stay flat under a mixed HTTP load?

The daemon runs as a real subprocess (`python -m lmvisor.server serve` on a free loopback
port, a temp data dir, the soak's `--app` hook for its task count), its `openai`
provider pointed at a loopback LM server in another subprocess. Rounds of mixed load
run over real HTTP, `_BATCH` operations at a time: `/run` on keep-alive and on new
connections, SSE streams read to the end and abandoned after the first event, clients
leaving mid-run, `events?follow=true` streams opened and dropped, programs registered,
hot-swapped, rolled back and unregistered (a new id every round), bad bodies and
unknown ids (4xx), `/metrics`, `/v1/events`, `/v1/tree`, and now and then an
optimization job submitted and cancelled. The middle third of the rounds runs with the
LM server's faults on (429s, 500s, 503s, dropped connections).

The daemon is sampled from outside (`/proc/<pid>`, its HTTP API) after `_WARMUP` rounds
(~11k requests: the event ring and the L1 cache fill up to their bounds first) and at
the end, each time after `_IDLE` s of quiet (the LM provider's aiohttp pool closes
connections idle for 30 s, looking every 30 s). Pass rules, against the first sample:

- RSS grows by under `_RSS_LIMIT_MIB` MiB over the measured rounds (~15k requests): a
  leak of ~1 KiB per request fails it; the allocator's slack does not. The RSS under
  load (every eighth of the rounds) is printed too, to tell a plateau from a slope.
- Open fds and sockets (counted apart) are back to the baseline: every client
  connection and every pooled LM connection is closed once idle.
- Threads, asyncio tasks and the supervision tree's process count are back to the
  baseline: every request's actor and task ends with it.
- `/metrics` has at most `_SERIES_SLACK` more series than the baseline: series are per
  program, provider, route, status and error kind, never per request (each round's
  churned program is unregistered, and its series with it); the slack is for the error
  kinds and statuses the fault phase shows first. Its size in bytes is reported, not
  judged: counters gain digits.
- No untyped 5xx (a 500 `internal_error`, or a 5xx without a typed body) and no hung
  request (none still open after `_REQUEST_LIMIT` s).

Prints one JSON summary line; exits 1 on failure. Bounded by `_RUN_LIMIT` s for the load.
With `--tracemalloc`, the daemon runs under `PYTHONTRACEMALLOC` and the summary adds
the lines whose allocations grew most (slower; for finding a leak, not for pass/fail).

Run: `.venv/bin/python soak/daemon.py [--rounds N] [--tracemalloc]` (`make soak`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from _lm_process import lm_server

__all__ = ["main"]

_ROOT = Path(__file__).resolve().parents[1]
_ROUNDS = 240
_WARMUP = 180  # rounds before the baseline: ~11k requests fill the bounded rings and caches
_BATCH = 48  # operations in flight in one round
_RUN_LIMIT = 420.0  # seconds for all the rounds; what is unfinished then counts as hung
_REQUEST_LIMIT = 60.0  # a request still open after this counts as hung
_IDLE = 65.0  # quiet before a sample: aiohttp drops pooled sockets idle 30 s, every 30 s
_READY_LIMIT = 60.0
_RSS_LIMIT_MIB = 8.0
_SERIES_SLACK = 24
_LATENCY = 0.01
_JITTER = 0.02
_METRIC = "tests.server._metrics:answered"
_QA = {"module": "Predict", "signature": "question -> answer"}
_COT = {"module": "ChainOfThought", "signature": "question -> answer"}
_FAULTS: list[dict[str, Any]] = [
    {"kind": "drop", "probability": 0.02},
    {"kind": "status", "status": 429, "probability": 0.03, "retry_after_ms": 20},
    {"kind": "status", "status": 500, "probability": 0.03},
    {"kind": "status", "status": 503, "probability": 0.02},
]


def _child_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LMVISOR_") and not k.endswith("_API_KEY")
    }
    env["PYTHONPATH"] = str(_ROOT)
    env.update(extra)
    return env


@contextmanager
def _daemon(lm_url: str, *, trace: bool) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`lmvisor serve` with the soak hook; yields the process and its URL once ready."""
    data_dir = tempfile.mkdtemp(prefix="lmvisor-soak-")
    env = _child_env(
        LMVISOR_DATA_DIR=data_dir,
        LMVISOR_SERVER__ACCESS_LOG="false",
        LMVISOR_SERVER__METRICS=json.dumps([_METRIC]),
        LMVISOR_PROVIDERS__OPENAI__BASE_URL=lm_url + "/v1",
        LMVISOR_PROVIDERS__OPENAI__API_KEY="sk-soak-loopback",
        LMVISOR_LOGGING__LEVEL="info",
    )
    if trace:
        env["PYTHONTRACEMALLOC"] = "12"
    command = [sys.executable, "-m", "lmvisor.server", "serve", "--port", "0"]
    command += ["--app", "soak._daemon_hook:register"]
    proc = subprocess.Popen(
        command, cwd=_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield proc, _ready_url(lines)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)


def _ready_url(lines: queue.Queue[str]) -> str:
    end = time.monotonic() + _READY_LIMIT
    seen: list[str] = []
    while time.monotonic() < end:
        try:
            line = lines.get(timeout=max(end - time.monotonic(), 0.01))
        except queue.Empty:
            break
        seen.append(line)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "server.ready":
            return str(record["url"])
    raise RuntimeError(f"the daemon did not get ready: {seen[-10:]}")


def _proc_sample(pid: int) -> dict[str, int | float]:
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    sockets = files = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            sockets += 1
        else:
            files += 1
    return {
        "rss_mib": round(int(status["VmRSS"].split()[0]) / 1024, 1),
        "threads": int(status["Threads"]),
        "sockets": sockets,
        "fds": files,
    }


def _processes(node: dict[str, Any]) -> int:
    return 1 + sum(_processes(child) for child in node["children"])


class _Tally:
    """What the load produced: status codes per operation, untyped 5xx, hung requests."""

    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.untyped: Counter[str] = Counter()
        self.typed_5xx: Counter[str] = Counter()
        self.unexpected: Counter[str] = Counter()
        self.hung = 0
        self.requests = 0

    async def check(self, op: str, resp: aiohttp.ClientResponse, expect: set[int]) -> bytes:
        """Read the body; count its status; note an untyped 5xx or an unexpected status."""
        body = await resp.read()
        self.requests += 1
        self.statuses[resp.status] += 1
        if resp.status >= 500 and _code(body) in (None, "internal_error"):
            self.untyped[f"{op}:{resp.status}"] += 1
        elif resp.status >= 500:
            self.typed_5xx[f"{resp.status}:{_code(body)}"] += 1
        elif resp.status not in expect and resp.status < 500:
            self.unexpected[f"{op}:{resp.status}:{_code(body)}"] += 1
        return body


def _code(body: bytes) -> str | None:
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return str(code)


class _Load:
    """One daemon's mixed load; each method is one operation."""

    def __init__(self, url: str, session: aiohttp.ClientSession, tally: _Tally) -> None:
        self.url = url
        self.session = session
        self.tally = tally
        self.rng = random.Random(7)
        self.n = 0

    def _inputs(self) -> dict[str, Any]:
        self.n += 1
        return {"inputs": {"question": f"soak question {self.n}?"}}

    async def run(self) -> None:
        url = self.url + "/v1/programs/qa/run"
        async with self.session.post(url, json=self._inputs()) as resp:
            await self.tally.check("run", resp, {200})

    async def run_new_connection(self) -> None:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
            session.post(self.url + "/v1/programs/qa/run", json=self._inputs()) as resp,
        ):
            await self.tally.check("run_new", resp, {200})

    async def stream(self, *, abandon: bool) -> None:
        url = self.url + "/v1/programs/qa/stream"
        async with self.session.post(url, json=self._inputs()) as resp:
            if abandon:
                await resp.content.readline()
                self.tally.requests += 1
                self.tally.statuses[resp.status] += 1
                resp.close()  # the connection goes with it, mid-stream
                return
            await self.tally.check("stream", resp, {200})

    async def leave_mid_run(self) -> None:
        """A client that gives up before the LM answers (the daemon sees a disconnect)."""
        async with aiohttp.ClientSession() as session:
            try:
                async with asyncio.timeout(self.rng.uniform(0.002, _LATENCY)):
                    url = self.url + "/v1/programs/qa/run"
                    async with session.post(url, json=self._inputs()) as resp:
                        await resp.read()
            except TimeoutError:
                pass
        self.tally.requests += 1

    async def follow_events(self) -> None:
        url = self.url + "/v1/events?follow=true&type=module.*&limit=5"
        async with self.session.get(url) as resp:
            await resp.content.readline()
            self.tally.requests += 1
            self.tally.statuses[resp.status] += 1
            resp.close()

    async def bad_requests(self) -> None:
        cases: list[tuple[str, str, Any, set[int]]] = [
            ("POST", "/v1/programs/qa/run", {"inputs": "not a dict"}, {422}),
            ("POST", "/v1/programs/qa/run", {"inputs": {"nope": 1}}, {422}),
            ("POST", "/v1/programs/missing/run", {"inputs": {}}, {404}),
            ("POST", "/v1/programs", {"id": "x", "program": {**_QA, "signature": 3}}, {422}),
            ("GET", "/v1/optimizations/nojob", None, {404}),
            ("DELETE", "/v1/programs/missing", None, {404}),
        ]
        method, path, body, expect = self.rng.choice(cases)
        async with self.session.request(method, self.url + path, json=body) as resp:
            await self.tally.check("bad", resp, expect)
        raw = b'{"inputs": '
        async with self.session.post(
            self.url + "/v1/programs/qa/run", data=raw, headers={"content-type": "application/json"}
        ) as resp:
            await self.tally.check("bad_json", resp, {400, 422})

    async def observe(self) -> None:
        for path in ("/metrics", "/v1/events?limit=50", "/v1/tree", "/v1/programs"):
            async with self.session.get(self.url + path) as resp:
                await self.tally.check("observe", resp, {200})

    async def churn(self, round_no: int) -> None:
        """Register a fresh program, run it, hot-swap, roll back, unregister it."""
        pid = f"churn-{round_no}"
        path = f"{self.url}/v1/programs/{pid}"
        steps: list[tuple[str, str, Any, set[int]]] = [
            ("POST", self.url + "/v1/programs", {"id": pid, "program": _QA}, {201}),
            ("POST", path + "/run", self._inputs(), {200}),
            ("PUT", path + "/version", {"program": _COT}, {200}),
            ("POST", path + "/run", self._inputs(), {200}),
            ("POST", path + "/rollback", None, {200}),
            ("DELETE", path, None, {204}),
            ("POST", path + "/run", self._inputs(), {404}),
        ]
        for method, url, body, expect in steps:
            async with self.session.request(method, url, json=body) as resp:
                await self.tally.check("churn", resp, expect)

    async def optimization(self) -> None:
        """Submit a small job and cancel it (it may have finished first)."""
        rows = [{"question": f"q {i}?", "answer": f"a {i}"} for i in range(6)]
        job = {
            "optimizer": "BootstrapFewShot",
            "params": {"max_bootstrapped_demos": 2},
            "program": "qa",
            "trainset": rows,
            "input_keys": ["question"],
            "metric": _METRIC,
        }
        async with self.session.post(self.url + "/v1/optimizations", json=job) as resp:
            body = await self.tally.check("optimize", resp, {202})
        if resp.status != 202:
            return
        await asyncio.sleep(self.rng.uniform(0.0, 0.2))
        job_id = json.loads(body)["id"]
        async with self.session.post(f"{self.url}/v1/optimizations/{job_id}/cancel") as resp:
            await self.tally.check("optimize", resp, {200})

    def pick(self, round_no: int, slot: int) -> tuple[str, Callable[[], Awaitable[None]]]:
        if slot == 0:
            return "churn", lambda: self.churn(round_no)
        if slot == 1 and round_no % 10 == 0:
            return "optimization", self.optimization
        choices: list[tuple[float, str, Callable[[], Awaitable[None]]]] = [
            (50, "run", self.run),
            (8, "run_new_connection", self.run_new_connection),
            (8, "stream", lambda: self.stream(abandon=False)),
            (6, "stream_abandoned", lambda: self.stream(abandon=True)),
            (6, "leave_mid_run", self.leave_mid_run),
            (2, "follow_events", self.follow_events),
            (6, "bad_requests", self.bad_requests),
            (4, "observe", self.observe),
        ]
        _, name, op = self.rng.choices(choices, [w for w, _, _ in choices])[0]
        return name, op

    async def one(self, op_name: str, op: Callable[[], Awaitable[None]]) -> None:
        self.tally.ops[op_name] += 1
        try:
            async with asyncio.timeout(_REQUEST_LIMIT):
                await op()
        except TimeoutError:
            self.tally.hung += 1
        except aiohttp.ClientError as exc:
            self.tally.unexpected[f"client:{type(exc).__name__}"] += 1

    async def round(self, round_no: int) -> None:
        ops = [self.pick(round_no, slot) for slot in range(_BATCH)]
        await asyncio.gather(*(self.one(name, op) for name, op in ops))


async def _sample(
    url: str, pid: int, session: aiohttp.ClientSession, dump: Path | None
) -> dict[str, Any]:
    await asyncio.sleep(_IDLE)
    async with session.get(url + "/soak/tasks") as resp:
        tasks = (await resp.json())["tasks"]
    async with session.get(url + "/v1/tree") as resp:
        tree = await resp.json()
    # Read last, so the series of this sample's own requests are in both samples.
    async with session.get(url + "/metrics") as resp:
        metrics = await resp.read()
    if dump is not None:
        await asyncio.to_thread(dump.write_bytes, metrics)
    series = sum(1 for line in metrics.splitlines() if line and not line.startswith(b"#"))
    # Sampled last, after the sample's own connection is gone.
    await session.close()
    await asyncio.sleep(0.5)
    return {
        **_proc_sample(pid),
        "metrics_bytes": len(metrics),
        "metrics_series": series,
        "processes": _processes(tree),
        "tasks": tasks,
    }


async def _control(url: str, method: str, path: str, body: object = None) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url + path, json=body) as resp,
    ):
        resp.raise_for_status()


async def _soak(url: str, lm_url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    rounds, trace, dump = args.rounds, args.tracemalloc, args.dump
    tally = _Tally()
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/programs", json={"id": "qa", "program": _QA}) as resp:
            await tally.check("setup", resp, {201})
        load = _Load(url, session, tally)
        started = time.perf_counter()
        for round_no in range(_WARMUP):
            await load.round(round_no)
    baseline = await _sample(url, pid, aiohttp.ClientSession(), dump and dump / "baseline.prom")
    if trace:
        await _control(url, "POST", "/soak/heap/mark")
    measured_from = tally.requests
    faulty = range(rounds // 3, 2 * rounds // 3)
    unfinished = 0
    rss_timeline: list[float] = []
    async with aiohttp.ClientSession() as session:
        load.session = session
        for round_no in range(rounds):
            if round_no == faulty.start:
                await _control(lm_url, "POST", "/_control/faults", _FAULTS)
            if round_no == faulty.stop:
                await _control(lm_url, "DELETE", "/_control/faults")
            if time.perf_counter() - started > _RUN_LIMIT:
                unfinished = rounds - round_no
                break
            await load.round(_WARMUP + round_no)
            if round_no % max(rounds // 8, 1) == 0:
                rss_timeline.append(_proc_sample(pid)["rss_mib"])
    elapsed = time.perf_counter() - started
    final = await _sample(url, pid, aiohttp.ClientSession(), dump and dump / "final.prom")
    summary: dict[str, Any] = {
        "rounds": rounds,
        "rounds_unfinished": unfinished,
        "requests": tally.requests,
        "requests_measured": tally.requests - measured_from,
        "seconds": round(elapsed, 1),
        "ops": dict(tally.ops.most_common()),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "typed_5xx": dict(tally.typed_5xx),
        "untyped_5xx": dict(tally.untyped),
        "unexpected": dict(tally.unexpected),
        "hung": tally.hung,
        "baseline": baseline,
        "final": final,
        "rss_mib_under_load": rss_timeline,
    }
    if trace:
        async with aiohttp.ClientSession() as session, session.get(url + "/soak/heap") as resp:
            summary["heap_growth"] = (await resp.json())["top"]
    return summary


def _verdict(summary: dict[str, Any]) -> dict[str, bool]:
    base, end = summary["baseline"], summary["final"]
    return {
        "rss": end["rss_mib"] - base["rss_mib"] < _RSS_LIMIT_MIB,
        "fds": end["fds"] <= base["fds"],
        "sockets": end["sockets"] <= base["sockets"],
        "threads": end["threads"] <= base["threads"],
        "tasks": end["tasks"] <= base["tasks"],
        "processes": end["processes"] <= base["processes"],
        "metrics": end["metrics_series"] <= base["metrics_series"] + _SERIES_SLACK,
        "typed": not summary["untyped_5xx"],
        "no_hung": summary["hung"] == 0 and summary["rounds_unfinished"] == 0,
    }


def main() -> int:
    """Run the soak; print the summary; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=_ROUNDS)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--dump", type=Path, help="write /metrics at each sample here")
    args = parser.parse_args()
    with (
        lm_server(_LATENCY, _JITTER, env=_child_env()) as lm_url,
        _daemon(lm_url, trace=args.tracemalloc) as (proc, url),
    ):
        summary = asyncio.run(_soak(url, lm_url, proc.pid, args))
    checks = _verdict(summary)
    summary["failed"] = sorted(name for name, ok in checks.items() if not ok)
    summary["ok"] = not summary["failed"]
    print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
