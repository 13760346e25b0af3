"""Benchmark: Predict through router, provider actor and transport against a loopback LMServer.

Prints one JSON line per figure. The LMServer runs in a subprocess (`python -m
lmvisor.testing.lm_server`), so its CPU lands on the other core, not on the client:

- `predict_call_cost`: sequential Predict calls at 0 ms server latency, through
  RouterLM -> LMProvider actor -> aiohttp transport -> LMServer; target <= 340 us
  (DSPy 3.4.1's default client: 680 us, quoted by issue 5). The value is the median
  wall time per call, server included, as the DSPy baseline was measured. Each line
  also carries the server process's CPU per call (from /proc over the same calls), this
  process's CPU per call, and `client_side_us` (wall minus server CPU: the client's own
  cost). Beside it, measured the same way in the same run: the raw floor
  (`aiohttp_post_floor`: a bare `aiohttp.ClientSession` POST of the same body) and the
  httpx-transport variant (`predict_call_cost_httpx`).
- `predict_throughput`: 2,000 Predict calls at 100 ms server latency, 500 in flight;
  target >= 2,200 calls/s (DSPy 3.4.1's best: 746/s, capped at 100 in flight, issue 5).
- `predict_efficiency_200`: ideal time / actual time for the same 2,000 calls at 200 in
  flight (ideal: ceil(2000 / 200) x 100 ms); target >= 0.8.
- `predict_throughput_httpx`: the throughput run over the httpx transport (500 calls:
  httpx 0.28's pool collapses under concurrency, encode/httpx#3215; printed as is).
- `peak_rss`: the client process's peak resident set, after everything above.

Sequential figures are medians of runs after a warm-up, the floor and both transports
measured in interleaved runs so machine noise hits them alike; throughput figures are medians
of runs after a warm-up batch that opens every pooled connection. The provider's pool
(`max_in_flight`, connections) is larger than any in-flight count used. Logs go to
stderr, warnings only. Run alone: `.venv/bin/python bench/providers.py`.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from lmvisor.config import load_config
from lmvisor.config.schema import ProviderConfig
from lmvisor.programs import Predict, context
from lmvisor.programs.lm import LMCapabilities, LMRequest, LMResponse, Usage
from lmvisor.providers import HttpxTransport, OpenAICompatibleProvider
from lmvisor.runtime.observe.process_logging import configure_process_logging
from lmvisor.runtime.runtime import Runtime
from lmvisor.services.lm_provider import Provider
from lmvisor.services.lm_services import build_provider, start_lm_providers
from lmvisor.services.router import RouterLM

__all__ = ["main"]

_MODEL = "local/llama3"
_SIGNATURE = "question -> answer"
_POOL = 600  # provider max_in_flight and connections: above every in-flight count used
_SEQ_WARMUP = 300
_SEQ_CALLS = 1000
_SEQ_RUNS = 5
_TP_CALLS = 2000
_TP_CALLS_HTTPX = 500  # httpx's pool is ~50x slower here; fewer calls keep the run short
_TP_RUNS = 5
_TP_LATENCY = 0.1
_DSPY_CALL_US = 680.0
_DSPY_THROUGHPUT = 746.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _line(
    figure: str,
    value: float,
    unit: str,
    *,
    target: float | None = None,
    higher_is_better: bool = False,
    baseline: float | None = None,
    baseline_source: str | None = None,
    **extra: Any,
) -> None:
    """Print one figure; informational figures carry `target` and `met` as null."""
    met = None
    if target is not None:
        met = value >= target if higher_is_better else value <= target
    row: dict[str, Any] = {
        "figure": figure,
        "unit": unit,
        "value": round(value, 3),
        "target": target,
        "baseline": None if baseline is None else round(baseline, 3),
        "baseline_source": None if baseline is None else (baseline_source or "measured"),
        "ratio": round(value / baseline, 3) if baseline else None,
        "met": met,
    }
    row.update(extra)
    print(json.dumps(row), flush=True)


# --- the server, in its own process ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Server:
    """The LMServer subprocess: its URL and its process id (for its CPU time)."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used (clock-tick resolution)."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    async def settings(self, session: aiohttp.ClientSession, body: dict[str, float]) -> None:
        """Change latency/jitter through the control endpoint."""
        async with session.post(self.url + "/_control/settings", json=body) as resp:
            resp.raise_for_status()
            await resp.read()


@contextmanager
def _server_process() -> Iterator[_Server]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmvisor.testing.lm_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
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


def _httpx_provider(name: str, cfg: ProviderConfig) -> Provider:
    assert cfg.base_url is not None
    transport = HttpxTransport(max_connections=_POOL, max_keepalive_connections=_POOL)
    return _OwningProvider(
        OpenAICompatibleProvider(name=name, base_url=cfg.base_url, transport=transport),
        transport,
    )


class _OwningProvider:
    """A provider that also closes the transport it was given."""

    def __init__(self, inner: OpenAICompatibleProvider, transport: HttpxTransport) -> None:
        self._inner = inner
        self._transport = transport
        self.complete = inner.complete
        self.stream = inner.stream

    @property
    def capabilities(self) -> LMCapabilities:
        return self._inner.capabilities

    async def aclose(self) -> None:
        await self._inner.aclose()
        await self._transport.aclose()


@asynccontextmanager
async def _router(url: str, *, httpx: bool = False) -> AsyncIterator[RouterLM]:
    config = load_config(
        env={},
        providers={
            "local": {"base_url": url + "/v1", "max_in_flight": _POOL, "max_retries": 0},
        },
        logging={"level": "warning"},
    )
    namespace = f"bench-providers-{'httpx' if httpx else 'aiohttp'}"
    async with Runtime.open(config, namespace=namespace) as runtime:
        services = await start_lm_providers(
            runtime, config, make_provider=_httpx_provider if httpx else build_provider
        )
        yield services.router(_MODEL)


class _CapturingLM:
    """Records the request Predict builds, so the raw floor posts the same body."""

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


async def _predict_body() -> bytes:
    lm = _CapturingLM()
    with context(lm=lm):
        await Predict(_SIGNATURE)(question="What is 7 times 6?")
    assert lm.request is not None
    params = {k: v for k, v in lm.request.params.items() if v is not None}
    payload = {"model": "llama3", "messages": lm.request.messages, **params}
    return json.dumps(payload, separators=(",", ":")).encode()


# --- sequential cost ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Cost:
    """Sequential per-call figures, in microseconds."""

    wall: float  # median over runs of wall time per call
    server: float  # the server process's CPU per call (measured over all runs)
    client_cpu: float  # this process's CPU per call

    @property
    def client_side(self) -> float:
        """Wall time per call not spent in the server's CPU: the client's own cost."""
        return self.wall - self.server


_Caller = Callable[[int], Awaitable[object]]


async def _measure(server: _Server, calls: dict[str, _Caller]) -> dict[str, _Cost]:
    """Per-call figures of each caller, their runs interleaved so machine noise hits all alike."""
    for call in calls.values():
        for i in range(_SEQ_WARMUP):
            await call(i)
    runs: dict[str, list[float]] = {name: [] for name in calls}
    server_s = dict.fromkeys(calls, 0.0)
    client_s = dict.fromkeys(calls, 0.0)
    for r in range(_SEQ_RUNS):
        for name, call in calls.items():
            server_before, cpu_before = server.cpu_seconds(), time.process_time()
            start = time.perf_counter()
            for i in range(_SEQ_CALLS):
                await call(r * _SEQ_CALLS + i)
            runs[name].append((time.perf_counter() - start) / _SEQ_CALLS)
            server_s[name] += server.cpu_seconds() - server_before
            client_s[name] += time.process_time() - cpu_before
    total = _SEQ_RUNS * _SEQ_CALLS
    return {
        name: _Cost(
            wall=statistics.median(runs[name]) * 1e6,
            server=server_s[name] / total * 1e6,
            client_cpu=client_s[name] / total * 1e6,
        )
        for name in calls
    }


def _predict_caller(router: RouterLM) -> _Caller:
    predict = Predict(_SIGNATURE)
    predict.lm = router

    async def call(i: int) -> object:
        return await predict(question=f"What is {i} times 6?")

    return call


def _post_caller(session: aiohttp.ClientSession, url: str, body: bytes) -> _Caller:
    endpoint = url + "/v1/chat/completions"
    headers = {"Content-Type": "application/json", "Accept": "application/json"}

    async def call(i: int) -> object:
        async with session.post(endpoint, data=body, headers=headers) as resp:
            return json.loads(await resp.read())

    return call


def _cost_line(figure: str, cost: _Cost, **extra: Any) -> None:
    _line(
        figure,
        cost.wall,
        "us",
        client_side_us=round(cost.client_side, 1),
        server_cpu_us=round(cost.server, 1),
        client_cpu_us=round(cost.client_cpu, 1),
        **extra,
    )


async def _sequential(server: _Server, control: aiohttp.ClientSession) -> None:
    await server.settings(control, {"latency": 0.0, "jitter": 0.0})
    async with (
        aiohttp.ClientSession() as session,
        _router(server.url) as router,
        _router(server.url, httpx=True) as router_httpx,
    ):
        costs = await _measure(
            server,
            {
                "floor": _post_caller(session, server.url, await _predict_body()),
                "aiohttp": _predict_caller(router),
                "httpx": _predict_caller(router_httpx),
            },
        )
    floor, cost, cost_httpx = costs["floor"], costs["aiohttp"], costs["httpx"]
    _cost_line("aiohttp_post_floor", floor, note="bare ClientSession POST of the same body")
    _cost_line(
        "predict_call_cost",
        cost,
        target=340.0,
        baseline=_DSPY_CALL_US,
        baseline_source="issue",
        floor_us=round(floor.wall, 1),
        over_floor_us=round(cost.wall - floor.wall, 1),
        transport="aiohttp",
    )
    _cost_line(
        "predict_call_cost_httpx",
        cost_httpx,
        baseline=cost.wall,
        baseline_source="measured: predict_call_cost",
        transport="httpx",
    )


# --- throughput ----------------------------------------------------------------------------


async def _batch_seconds(url: str, *, calls: int, in_flight: int, httpx: bool, runs: int) -> float:
    """Median seconds for `calls` Predict calls with `in_flight` at once, after a warm-up
    that opens every pooled connection."""
    predict = Predict(_SIGNATURE)
    seconds: list[float] = []
    async with _router(url, httpx=httpx) as router:
        with context(lm=router):
            await _run_batch(predict, in_flight, in_flight)
            for _ in range(runs):
                start = time.perf_counter()
                await _run_batch(predict, calls, in_flight)
                seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


async def _run_batch(predict: Predict, calls: int, in_flight: int) -> None:
    next_index = iter(range(calls))

    async def worker() -> None:
        for i in next_index:
            prediction = await predict(question=f"Question number {i}?")
            if not prediction.answer:
                raise RuntimeError(f"call {i}: empty answer")

    await asyncio.gather(*(worker() for _ in range(in_flight)))


async def _throughput(server: _Server, control: aiohttp.ClientSession) -> None:
    await server.settings(control, {"latency": _TP_LATENCY, "jitter": 0.0})
    elapsed = await _batch_seconds(
        server.url, calls=_TP_CALLS, in_flight=500, httpx=False, runs=_TP_RUNS
    )
    rate = _TP_CALLS / elapsed
    _line(
        "predict_throughput",
        rate,
        "calls/s",
        target=2200.0,
        higher_is_better=True,
        baseline=_DSPY_THROUGHPUT,
        baseline_source="issue (100 in flight)",
        calls=_TP_CALLS,
        in_flight=500,
        latency_s=_TP_LATENCY,
        transport="aiohttp",
    )
    elapsed = await _batch_seconds(
        server.url, calls=_TP_CALLS, in_flight=200, httpx=False, runs=_TP_RUNS
    )
    ideal = math.ceil(_TP_CALLS / 200) * _TP_LATENCY
    _line(
        "predict_efficiency_200",
        ideal / elapsed,
        "ratio",
        target=0.8,
        higher_is_better=True,
        calls=_TP_CALLS,
        in_flight=200,
        seconds=round(elapsed, 3),
        ideal_seconds=ideal,
        transport="aiohttp",
    )
    elapsed = await _batch_seconds(
        server.url, calls=_TP_CALLS_HTTPX, in_flight=500, httpx=True, runs=1
    )
    _line(
        "predict_throughput_httpx",
        _TP_CALLS_HTTPX / elapsed,
        "calls/s",
        baseline=rate,
        baseline_source="measured: predict_throughput",
        calls=_TP_CALLS_HTTPX,
        in_flight=500,
        latency_s=_TP_LATENCY,
        transport="httpx",
        note="httpx 0.28's pool under concurrency: encode/httpx#3215",
    )


# --- main ----------------------------------------------------------------------------------


async def _run(server: _Server) -> None:
    async with aiohttp.ClientSession() as control:
        await _sequential(server, control)
        await _throughput(server, control)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _line("peak_rss", peak_kb / 1024, "MiB", note="client process, after every figure above")


def main() -> None:
    """Start the server subprocess and print the figures (logs go to stderr, warnings only)."""
    configure_process_logging("console", level="warning")
    with _server_process() as server:
        asyncio.run(_run(server))


if __name__ == "__main__":
    main()
