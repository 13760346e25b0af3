"""Benchmark: Predict through RouterLM -> LMProvider -> transport, with the shipped defaults.

The loopback LM runs in a subprocess in lean mode (`python -m lmvisor.testing.lm_server
--lean`: OpenAI chat completions over a bare asyncio.Protocol, a third of the full
server's CPU per request), so the client is what is measured. The provider config is the
shipped default (`providers.local.base_url` only: max_in_flight 1,024, retries 3, transport
"aiohttp"; "auto" would mean pyreqwest with the `fast` extra); runs that compare transports set
`transport` and nothing else. DSPy 3.4.1 is measured in the same run against the same
server (`bench/dspy_side/providers.py`, `dspy.LM(..., engine="lm15")`). One JSON line per figure:

- `predict_call_cost[<transport>]`: sequential Predict calls at 0 ms latency, median wall
  time per call, with the server's CPU per call. The default transport's line is
  `predict_call_cost`: target <= 0.4x DSPy's lm15 engine (measured).
- `predict_run[<loop>,<transport>,<in_flight>]`: 2,000 calls (httpx: 500) at 100 ms,
  efficiency (ideal time / actual; ideal = ceil(calls / in_flight) x 100 ms), calls/s,
  loop-thread CPU per call, and the bare transport's loop CPU per call at the same
  concurrency (`bare_loop_us`); `own_loop_us`, lmvisor's own, is the median difference
  between a Predict run and the bare run right after it (3 such pairs; httpx: 1).
  `gc_us` / `bare_gc_us`: the part of each run's loop CPU the cyclic garbage collector
  took (timed by a `gc.callbacks` hook; the default thresholds, as shipped).
- `predict_efficiency_200` / `_500`: the best loop/transport (targets 0.85 and 0.7).
- `predict_throughput_200`: the best calls/s at 200 in flight; target 3x DSPy's best
  (its 100-thread cap, `Predict.batch`), measured.
- `lmvisor_loop_us_per_call`: lmvisor's own loop-thread CPU per call (Predict path minus the
  bare transport, 200 in flight, median over loops and transports but httpx); target <= 60.
- `peak_rss`: the client process's peak resident set.

Figures are medians of runs after a warm-up that opens the pooled connections; the
machine may be shared, so compare the ratios of one run (and the paired differences). Run alone:
`.venv/bin/python bench/providers.py` (set LMVISOR_DSPY_PYTHON for the DSPy baseline).
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from _common import emit, run_dspy, shipped_transport

from lmvisor.config import load_config
from lmvisor.programs import Predict
from lmvisor.programs.lm import LMCapabilities, LMDone, LMRequest, LMResponse, LMStreamItem, Usage
from lmvisor.providers import build_transport
from lmvisor.runtime.observe.process_logging import configure_process_logging
from lmvisor.runtime.runtime import Runtime
from lmvisor.services import start_lm_providers

__all__ = ["main"]

_MODEL = "local/llama3"
_SIGNATURE = "question -> answer"
_TRANSPORTS = ("pyreqwest", "aiohttp", "httpx")
_LOOPS = ("asyncio", "uvloop")
_SEQ_WARMUP = 200
_SEQ_CALLS = 1000
_SEQ_RUNS = 3
_TP_CALLS = 2000
_TP_CALLS_HTTPX = 500  # httpx 0.28's pool collapses under concurrency (encode/httpx#3215)
_TP_RUNS = 3
_LATENCY = 0.1
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the server, in its own process ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Server:
    """The lean LMServer subprocess: its URL and process id (for its CPU time)."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used (clock-tick resolution)."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def set_latency(self, seconds: float) -> None:
        body = json.dumps({"latency": seconds}).encode()
        request = urllib.request.Request(self.url + "/_control/settings", data=body)
        with urllib.request.urlopen(request, timeout=10) as resp:
            resp.read()


@contextmanager
def _server_process() -> Iterator[_Server]:
    command = [sys.executable, "-m", "lmvisor.testing.lm_server", "--lean", "--port", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"lm_server did not start (first line {url!r})")
        yield _Server(url=url, pid=proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- the client stack --------------------------------------------------------------------

_Call = Callable[[int], Awaitable[object]]


def _run(loop: str, coro: Awaitable[Any]) -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    return asyncio.run(coro)  # type: ignore[arg-type]


def _config(url: str, transport: str) -> Any:
    return load_config(
        env={},
        providers={"local": {"base_url": url + "/v1", "transport": transport}},
        logging={"level": "warning"},
    )


class _CapturingLM:
    """Records the request Predict builds, so the bare transport posts the same body."""

    def __init__(self) -> None:
        self.request: LMRequest | None = None

    @property
    def model(self) -> str:
        return _MODEL

    @property
    def capabilities(self) -> LMCapabilities:
        return LMCapabilities()

    async def complete(self, request: LMRequest) -> LMResponse:
        self.request = request
        return LMResponse(outputs=["[[ ## answer ## ]]\nx\n\n[[ ## completed ## ]]"], usage=Usage())

    async def stream(self, request: LMRequest) -> AsyncIterator[LMStreamItem]:
        yield LMDone(response=await self.complete(request))


async def _predict_body() -> bytes:
    lm = _CapturingLM()
    predict = Predict(_SIGNATURE)
    predict.lm = lm
    await predict(question="What is 7 times 6?")
    assert lm.request is not None
    params = {k: v for k, v in lm.request.params.items() if v is not None}
    payload = {"model": "llama3", "messages": lm.request.messages, **params}
    return json.dumps(payload, separators=(",", ":")).encode()


async def _batch(call: _Call, calls: int, in_flight: int) -> None:
    numbers = iter(range(calls))

    async def worker() -> None:
        for i in numbers:
            await call(i)

    await asyncio.gather(*(worker() for _ in range(in_flight)))


@dataclass(frozen=True, slots=True)
class _Run:
    """One measured configuration: seconds for the calls, loop-thread CPU per call, and
    the part of that CPU the garbage collector took (`gc_us`, included in `loop_us`)."""

    seconds: float
    loop_us: float
    gc_us: float = 0.0


class _GCTime:
    """Thread CPU spent in the cyclic garbage collector while installed (`gc.callbacks`)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._start


async def _measure(call: _Call, calls: int, in_flight: int, runs: int) -> _Run:
    await _batch(call, in_flight, in_flight)  # opens the pooled connections
    results = []
    for _ in range(runs):
        collector = _GCTime()
        gc.callbacks.append(collector)
        try:
            start, cpu = time.perf_counter(), time.thread_time()
            await _batch(call, calls, in_flight)
            wall, used = time.perf_counter() - start, time.thread_time() - cpu
        finally:
            gc.callbacks.remove(collector)
        results.append((wall, used, collector.seconds))
    seconds = statistics.median(r[0] for r in results)
    loop_us = statistics.median(r[1] for r in results) / calls * 1e6
    gc_us = statistics.median(r[2] for r in results) / calls * 1e6
    return _Run(seconds=seconds, loop_us=loop_us, gc_us=gc_us)


async def _predict_runs(url: str, transport: str, plan: list[tuple[int, int, int]]) -> list[_Run]:
    config = _config(url, transport)
    async with Runtime.open(config) as runtime:
        services = await start_lm_providers(runtime, config)
        predict = Predict(_SIGNATURE)
        predict.lm = services.router(_MODEL)

        async def call(i: int) -> object:
            prediction = await predict(question=f"Question number {i}?")
            if not prediction.answer:
                raise RuntimeError(f"call {i}: empty answer")
            return prediction

        return [await _measure(call, calls, c, runs) for calls, c, runs in plan]


async def _bare_runs(url: str, transport: str, plan: list[tuple[int, int, int]]) -> list[_Run]:
    made = build_transport(transport)  # type: ignore[arg-type]
    body = await _predict_body()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    endpoint = url + "/v1/chat/completions"

    async def call(i: int) -> object:
        resp = await made.post_json(
            endpoint, headers=headers, body=body, timeout=60.0, provider="bench", model="llama3"
        )
        return json.loads(bytes(resp.body))

    try:
        return [await _measure(call, calls, c, runs) for calls, c, runs in plan]
    finally:
        await made.aclose()


# --- figures -------------------------------------------------------------------------------


def _sequential(server: _Server, dspy_us: float | None) -> None:
    default = shipped_transport()
    for transport in _TRANSPORTS:
        before = server.cpu_seconds()
        calls = _SEQ_RUNS * _SEQ_CALLS
        plan = [(_SEQ_CALLS, 1, 1)] * _SEQ_RUNS
        runs = _run("asyncio", _predict_runs(server.url, transport, [(_SEQ_WARMUP, 1, 1), *plan]))
        server_us = (server.cpu_seconds() - before) / (calls + _SEQ_WARMUP) * 1e6
        wall = statistics.median(r.seconds for r in runs[1:]) / _SEQ_CALLS * 1e6
        is_default = transport == default
        emit(
            "predict_call_cost" if is_default else f"predict_call_cost[{transport}]",
            wall,
            "us",
            target=None if dspy_us is None or not is_default else 0.4 * dspy_us,
            baseline=dspy_us,
            baseline_source=None if dspy_us is None else "dspy 3.4.1 lm15 engine, same run",
            digits=1,
            transport=transport,
            default_transport=is_default,
            server_cpu_us=round(server_us, 1),
            loop_us=round(statistics.median(r.loop_us for r in runs[1:]), 1),
        )


def _throughput(server: _Server) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    loops = [loop for loop in _LOOPS if loop != "uvloop" or _has("uvloop")]
    for loop in loops:
        for transport in _TRANSPORTS:
            if transport == "pyreqwest" and not _has("pyreqwest"):
                continue
            calls = _TP_CALLS_HTTPX if transport == "httpx" else _TP_CALLS
            pairs = 1 if transport == "httpx" else _TP_RUNS
            plan = [(calls, 200, 1), (calls, 500, 1)]
            # Predict and the bare transport alternate, run for run: on a shared machine
            # the load drifts, and each difference is taken between neighbouring runs.
            full: list[list[_Run]] = []
            bare: list[list[_Run]] = []
            for _ in range(pairs):
                full.append(_run(loop, _predict_runs(server.url, transport, plan)))
                bare.append(_run(loop, _bare_runs(server.url, transport, plan)))
            for k, (n, c, _) in enumerate(plan):
                runs = [(f[k], b[k]) for f, b in zip(full, bare, strict=True)]
                rows.append(_row(loop, transport, n, c, runs))
    return rows


def _row(
    loop: str, transport: str, calls: int, c: int, pairs: list[tuple[_Run, _Run]]
) -> dict[str, Any]:
    """One row from its (Predict, bare) run pairs: medians, and the median paired difference."""
    run = _median_run([p[0] for p in pairs])
    bare = _median_run([p[1] for p in pairs])
    own = statistics.median(p[0].loop_us - p[1].loop_us for p in pairs)
    ideal = math.ceil(calls / c) * _LATENCY
    row = emit(
        f"predict_run[{loop},{transport},{c}]",
        ideal / run.seconds,
        "efficiency",
        target=None,
        baseline=None,
        baseline_source=None,
        loop=loop,
        transport=transport,
        in_flight=c,
        calls=calls,
        rate=round(calls / run.seconds, 1),
        loop_us=round(run.loop_us, 1),
        bare_loop_us=round(bare.loop_us, 1),
        own_loop_us=round(own, 1),
        gc_us=round(run.gc_us, 1),
        bare_gc_us=round(bare.gc_us, 1),
        pairs=len(pairs),
        bare_efficiency=round(ideal / bare.seconds, 3),
    )
    return row


def _median_run(runs: list[_Run]) -> _Run:
    """The field-by-field median of `runs`."""
    return _Run(
        seconds=statistics.median(r.seconds for r in runs),
        loop_us=statistics.median(r.loop_us for r in runs),
        gc_us=statistics.median(r.gc_us for r in runs),
    )


def _summary(rows: list[dict[str, Any]], dspy_rate: float | None) -> None:
    for c, target in ((200, 0.85), (500, 0.7)):
        best = max((r for r in rows if r["in_flight"] == c), key=lambda r: r["value"])
        emit(
            f"predict_efficiency_{c}",
            best["value"],
            "efficiency",
            target=target,
            higher_is_better=True,
            baseline=best["bare_efficiency"],
            baseline_source="the bare transport, same loop, same run",
            loop=best["loop"],
            transport=best["transport"],
            rate=best["rate"],
        )
    best = max((r for r in rows if r["in_flight"] == 200), key=lambda r: r["rate"])
    emit(
        "predict_throughput_200",
        best["rate"],
        "calls/s",
        target=None if dspy_rate is None else 3 * dspy_rate,
        baseline=dspy_rate,
        baseline_source=None if dspy_rate is None else "dspy 3.4.1 lm15, 100 threads, same run",
        higher_is_better=True,
        loop=best["loop"],
        transport=best["transport"],
    )
    # httpx is left out: at ~15 calls/s its loop figures are its pool's stalls, not lmvisor's.
    # The median over loops and transports, not the best: one row is too noisy to pick.
    rows200 = [r for r in rows if r["in_flight"] == 200 and r["transport"] != "httpx"]
    emit(
        "lmvisor_loop_us_per_call",
        statistics.median(r["own_loop_us"] for r in rows200),
        "us",
        target=60.0,
        baseline=statistics.median(r["bare_loop_us"] for r in rows200),
        baseline_source="the bare transports' loop CPU per call (median), same run",
        digits=1,
        rows=[f"{r['loop']},{r['transport']}:{r['own_loop_us']}" for r in rows200],
        in_flight=200,
    )


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> None:
    """Start the lean server subprocess and print the figures (logs: stderr, warnings only)."""
    configure_process_logging("console", level="warning")
    with _server_process() as server:
        server.set_latency(0.0)
        dspy_seq = run_dspy("providers.py", server.url, "sequential")
        _sequential(server, None if dspy_seq is None else dspy_seq["predict_call_us"])
        server.set_latency(_LATENCY)
        rows = _throughput(server)
        dspy_tp = run_dspy("providers.py", server.url, "throughput")
        _summary(rows, None if dspy_tp is None else dspy_tp["throughput"])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    emit("peak_rss", peak_mib, "MiB", target=None, baseline=None, baseline_source=None)


if __name__ == "__main__":
    main()
