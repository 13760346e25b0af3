"""Optimizers against a loopback OpenAI-compatible server at 50 ms: BootstrapFewShot(4), COPRO(3, 2)
and MIPROv2 light (wall time and request count, with DSPy 3.4.1 measured in the same run on the
same server), and Evaluate of 500 examples at 100 ms with concurrency 200 (efficiency).

Targets (issue 10): requests within 10% of DSPy's; wall time at least 5x faster for COPRO and
MIPROv2 light; Evaluate efficiency >= 0.8. Shipped defaults throughout (optimizers' concurrency
64, the provider's defaults except the loopback address; Evaluate takes concurrency=200).

Every line names its transport. The shipped one (a provider's `transport` default) is measured
against the targets; the other of aiohttp and pyreqwest, when installed (the `fast` extra), is
printed too with `met: null`, so both a plain install's figures and the other choice's stay
visible. Wall times are the median of three rounds; the transports alternate, in those rounds
and in Evaluate's runs, so a neighbour's load falls on both.

Evaluate's efficiency is the shortest wall time physically possible over the measured one,
the median of five runs. With 200 in flight, 500 examples need ceil(500 / 200) = 3 rounds of
100 ms: 0.3 s, not the 500 * 0.1 / 200 = 0.25 s an even spread would take (no example can be
split across slots).

The loopback server runs in lean mode (`--lean`: a bare asyncio.Protocol, a third of the full
server's CPU per request, the same deterministic completions): on two cores the full server's
CPU would compete with the client measured. DSPy runs against the same server.

Run: .venv/bin/python bench/optimizers.py
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import AsyncExitStack
from typing import Any

from _common import emit, run_dspy, shipped_transport

from lmvisor.config import load_config
from lmvisor.optimizers import COPRO, BootstrapFewShot, Evaluate, MIPROv2
from lmvisor.programs import Example, Predict, context
from lmvisor.runtime import Runtime
from lmvisor.services import start_lm_providers

_LATENCY = 0.05
_EVAL_LATENCY = 0.1
_EVAL_EXAMPLES = 500
_EVAL_CONCURRENCY = 200
_EVAL_RUNS = 5
_WALL_ROUNDS = 3  # the wall times are medians of this many rounds


def passes(example: Any, prediction: Any, trace: Any = None) -> bool:
    return True


def _control(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url + path, data=data, method="POST" if data or path.startswith("/_") else "GET"
    )
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def _requests(url: str) -> int:
    with urllib.request.urlopen(url + "/stats") as answer:
        return int(json.loads(answer.read())["requests"])


def _server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmvisor.testing.lm_server", "--lean", "--latency", str(_LATENCY)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _config(url: str, transport: str | None) -> Any:
    """Shipped defaults but the loopback address; `transport` None keeps the default."""
    provider: dict[str, Any] = {"base_url": url + "/v1", "api_key": "sk-bench", "max_retries": 0}
    if transport is not None:
        provider["transport"] = transport
    return load_config(env={}, providers={"openai": provider})


async def _lmvisor(url: str, transport: str | None) -> dict[str, float]:
    train = [
        Example(question=f"What is {i} plus {i}?", answer=str(2 * i)).with_inputs("question")
        for i in range(50)
    ]
    config = _config(url, transport)
    figures: dict[str, float] = {}
    async with Runtime.open(config) as runtime:
        router = (await start_lm_providers(runtime, config)).router("openai/gpt-4o-mini")
        runs = {
            "bootstrap": (BootstrapFewShot(passes, max_bootstrapped_demos=4), train),
            "copro": (COPRO(metric=passes, breadth=3, depth=2), train[:20]),
            "mipro_light": (MIPROv2(passes, auto="light"), train),
        }
        for name, (optimizer, data) in runs.items():
            _control(url, "/_control/reset-stats", {})
            start = time.perf_counter()
            with context(lm=router):
                await optimizer.compile(Predict("question -> answer"), trainset=data)
            figures[f"{name}_wall"] = time.perf_counter() - start
            figures[f"{name}_requests"] = _requests(url)
    return figures


async def _evaluate(url: str, transports: list[str | None]) -> list[list[float]]:
    """Evaluate's efficiency per transport, `_EVAL_RUNS` runs each after one that warms the
    connections; the transports' runs alternate."""
    _control(url, "/_control/settings", {"latency": _EVAL_LATENCY})
    devset = [
        Example(question=f"q{i}", answer="a").with_inputs("question") for i in range(_EVAL_EXAMPLES)
    ]
    evaluate = Evaluate(
        devset=devset, metric=passes, concurrency=_EVAL_CONCURRENCY, display_progress=False
    )
    async with AsyncExitStack() as stack:
        routers = []
        for transport in transports:
            config = _config(url, transport)
            runtime = await stack.enter_async_context(Runtime.open(config))
            router = (await start_lm_providers(runtime, config)).router("openai/gpt-4o-mini")
            with context(lm=router):
                # Warm the pool to the concurrency measured: connections opened inside the
                # timed run would measure TCP setup, not Evaluate.
                await evaluate(Predict("question -> answer"), devset=devset[:_EVAL_CONCURRENCY])
            routers.append(router)
        runs: list[list[float]] = [[] for _ in transports]
        for _ in range(_EVAL_RUNS):
            for router, found in zip(routers, runs, strict=True):
                with context(lm=router):
                    start = time.perf_counter()
                    await evaluate(Predict("question -> answer"))
                    found.append(_eval_ideal() / (time.perf_counter() - start))
    return runs


def _wall_rounds(url: str, transports: list[str | None]) -> list[dict[str, float]]:
    """Each transport's figures, the median of `_WALL_ROUNDS` rounds (transports alternating)."""
    rounds: list[list[dict[str, float]]] = [[] for _ in transports]
    for _ in range(_WALL_ROUNDS):
        for transport, found in zip(transports, rounds, strict=True):
            found.append(asyncio.run(_lmvisor(url, transport)))
    return [
        {key: statistics.median(run[key] for run in found) for key in found[0]} for found in rounds
    ]


def _eval_ideal() -> float:
    """The least wall time: every round of `_EVAL_CONCURRENCY` examples takes one latency."""
    return math.ceil(_EVAL_EXAMPLES / _EVAL_CONCURRENCY) * _EVAL_LATENCY


def _transports() -> tuple[str, list[str | None]]:
    """The shipped transport's name, and the transports to run: None (the shipped), then
    the other of aiohttp and pyreqwest when it is installed."""
    shipped = shipped_transport()
    other = "aiohttp" if shipped == "pyreqwest" else "pyreqwest"
    if other == "pyreqwest" and importlib.util.find_spec("pyreqwest") is None:
        return shipped, [None]
    return shipped, [None, other]


def main() -> None:
    shipped, transports = _transports()
    proc, url = _server()
    try:
        ours = _wall_rounds(url, transports)
        dspy = run_dspy("optimizers.py", url) or {}
        source = "measured: dspy 3.4.1, same run, same server" if dspy else None
        for name in ("bootstrap", "copro", "mipro_light"):
            base_requests = dspy.get(f"{name}_requests")
            value = ours[0][f"{name}_requests"]
            within = (
                None if base_requests is None else abs(value - base_requests) <= 0.1 * base_requests
            )
            print(json.dumps({
                "figure": f"{name}_requests", "value": value, "unit": "requests",
                "target": "within 10% of DSPy", "baseline": base_requests,
                "baseline_source": source if base_requests else dspy.get(f"{name}_error"),
                "ratio": None if not base_requests else round(value / base_requests, 3),
                "met": within, "transport": shipped,
            }), flush=True)  # fmt: skip
            base_wall = dspy.get(f"{name}_wall")
            target = None if base_wall is None or name == "bootstrap" else base_wall / 5
            for transport, figures in zip(transports, ours, strict=True):
                emit(
                    f"{name}_wall", figures[f"{name}_wall"], "s",
                    target=target if transport is None else None, baseline=base_wall,
                    baseline_source=source if base_wall is not None else None, latency=_LATENCY,
                    transport=transport or shipped,
                )  # fmt: skip
        runs = asyncio.run(_evaluate(url, transports))
        for transport, found in zip(transports, runs, strict=True):
            emit(
                "evaluate_efficiency", statistics.median(found), "ratio",
                target=0.8 if transport is None else None, baseline=None, baseline_source=None,
                higher_is_better=True, examples=_EVAL_EXAMPLES, latency=_EVAL_LATENCY,
                concurrency=_EVAL_CONCURRENCY, ideal_s=_eval_ideal(),
                runs=[round(r, 3) for r in found], transport=transport or shipped,
            )  # fmt: skip
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
