"""Soak: 20,000 requests through the router against a faulty loopback LM server.

The LMServer runs in a subprocess and answers ~10% of requests with a 429 (some with
retry-after-ms, some with Retry-After), 500 or 503, and drops 1% of connections before
any byte. The "local" provider retries (3 retries, honouring Retry-After) behind a
circuit breaker. Requests run 200 at a time, each under a generous deadline.

Prints one JSON summary: successes, typed errors by class, untyped errors, hung calls
(not finished within the deadline), breaker transitions, and asyncio tasks and open
sockets (/proc/self/fd entries that are sockets) before the runtime opened and after it
closed. Exits 1 if any call hung, any error was untyped, or tasks or sockets are not
back to where they started; 0 otherwise. The whole run is bounded (`_RUN_LIMIT`).

Run: `.venv/bin/python soak/router.py` (`make soak`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
from _lm_process import lm_server

from lmvisor.config import load_config
from lmvisor.programs.lm import LMRequest
from lmvisor.runtime.errors import LmvisorError
from lmvisor.runtime.observe.process_logging import configure_process_logging
from lmvisor.runtime.protection import CircuitBreaker
from lmvisor.runtime.protection.breaker import BreakerState
from lmvisor.runtime.runtime import Runtime
from lmvisor.services.lm_services import start_lm_providers
from lmvisor.services.router import RouterLM

__all__ = ["main"]

_REQUESTS = 20_000
_CONCURRENCY = 200
_CALL_DEADLINE = 60.0  # seconds: a call still running after this counts as hung
_ROUTER_TIMEOUT = 30.0
_RUN_LIMIT = 180.0  # seconds for the whole load; what is unfinished then counts as hung
_SETTLE_LIMIT = 5.0  # seconds allowed for closed sockets and tasks to go after shutdown
# Router failures (after retries) a minute before the only deployment cools down. The
# default (3) takes it out for 5 s after a short burst, refusing every call meanwhile;
# LiteLLM exempts single-deployment groups below 1,000 failed requests a minute.
_LATENCY = 0.01
_JITTER = 0.01

# Rules are rolled in order, the first hit applies: ~1% drops, then ~10% statuses.
_FAULTS: list[dict[str, Any]] = [
    {"kind": "drop", "probability": 0.01},
    {"kind": "status", "status": 429, "probability": 0.025, "retry_after_ms": 50},
    {"kind": "status", "status": 429, "probability": 0.015, "retry_after": 0.2},
    {"kind": "status", "status": 500, "probability": 0.03},
    {"kind": "status", "status": 503, "probability": 0.03},
]


async def _control(url: str, method: str, path: str, body: object = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url + path, json=body) as resp,
    ):
        resp.raise_for_status()
        return await resp.json()


def _open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            continue  # closed between listing and reading
    return count


async def _settled(baseline_tasks: int, baseline_sockets: int) -> tuple[int, int]:
    """Tasks and sockets once they are back to the baseline, or at `_SETTLE_LIMIT`."""
    deadline = time.monotonic() + _SETTLE_LIMIT
    while True:
        tasks, sockets = len(asyncio.all_tasks()), _open_sockets()
        if (tasks <= baseline_tasks and sockets <= baseline_sockets) or (
            time.monotonic() > deadline
        ):
            return tasks, sockets
        await asyncio.sleep(0.05)


class _Tally:
    """What the load produced."""

    def __init__(self) -> None:
        self.successes = 0
        self.hung = 0
        self.typed: Counter[str] = Counter()
        self.untyped: Counter[str] = Counter()
        self.transitions: Counter[str] = Counter()
        self.durations: list[float] = []

    def on_transition(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        self.transitions[f"{old.value}->{new.value}"] += 1


async def _one(router: RouterLM, i: int, tally: _Tally) -> None:
    request = LMRequest(
        model="local/llama3", messages=[{"role": "user", "content": f"Soak question {i}?"}]
    )
    started = time.perf_counter()
    try:
        async with asyncio.timeout(_CALL_DEADLINE) as scope:
            response = await router.complete(request)
    except LmvisorError as exc:
        tally.typed[type(exc).__name__] += 1
    except TimeoutError as exc:
        if scope.expired():
            tally.hung += 1
        else:
            tally.untyped[type(exc).__name__] += 1
    except Exception as exc:
        tally.untyped[type(exc).__name__] += 1
    else:
        if response.outputs and response.outputs[0]:
            tally.successes += 1
        else:
            tally.untyped["EmptyResponse"] += 1
    tally.durations.append(time.perf_counter() - started)


async def _load(router: RouterLM, tally: _Tally) -> int:
    """Run every request, `_CONCURRENCY` at a time; return how many never finished."""
    indices = iter(range(_REQUESTS))

    async def worker() -> None:
        for i in indices:
            await _one(router, i, tally)

    workers = [asyncio.create_task(worker()) for _ in range(_CONCURRENCY)]
    done, pending = await asyncio.wait(workers, timeout=_RUN_LIMIT)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()  # a worker only fails on a bug in this script
    finished = (
        tally.successes + tally.hung + sum(tally.typed.values()) + sum(tally.untyped.values())
    )
    return _REQUESTS - finished


async def _soak(url: str) -> dict[str, Any]:
    await _control(url, "POST", "/_control/faults", _FAULTS)
    await asyncio.sleep(0)
    tasks_before, sockets_before = len(asyncio.all_tasks()), _open_sockets()
    config = load_config(
        env={},
        providers={
            "local": {
                "base_url": url + "/v1",
                "max_retries": 3,
                "timeout": 10.0,
            }
        },
        infrastructure={
            "circuit_breakers": {"local": {"failure_threshold": 4, "recovery_time": 0.25}}
        },
        # Every failed attempt logs a warning: thousands here, by design of the faults.
        logging={"level": "error"},
    )
    tally = _Tally()
    started = time.perf_counter()
    async with Runtime.open(config, namespace="soak-router") as runtime:
        services = await start_lm_providers(runtime, config)
        services.protections["local"].breaker.add_listener(tally.on_transition)
        # The router's defaults: a lone deployment never cools down, as in LiteLLM.
        router = services.router("local/llama3", timeout=_ROUTER_TIMEOUT)
        unfinished = await _load(router, tally)
    elapsed = time.perf_counter() - started
    tasks_after, sockets_after = await _settled(tasks_before, sockets_before)
    server = await _control(url, "GET", "/stats")
    durations = sorted(tally.durations)
    return {
        "requests": _REQUESTS,
        "concurrency": _CONCURRENCY,
        "seconds": round(elapsed, 2),
        "successes": tally.successes,
        "typed_errors": dict(tally.typed.most_common()),
        "untyped_errors": dict(tally.untyped.most_common()),
        "hung": tally.hung + unfinished,
        "breaker_transitions": dict(tally.transitions),
        "breaker_transition_count": sum(tally.transitions.values()),
        "cooldowns_started": services.cooldowns.statistics().cooldowns_started,
        "p50_s": round(durations[len(durations) // 2], 4) if durations else None,
        "p99_s": round(durations[int(len(durations) * 0.99)], 4) if durations else None,
        "max_s": round(durations[-1], 4) if durations else None,
        "server_requests": server.get("requests"),
        "tasks_before": tasks_before,
        "tasks_after": tasks_after,
        "sockets_before": sockets_before,
        "sockets_after": sockets_after,
    }


def main() -> int:
    """Run the soak; print the summary; return the exit status."""
    configure_process_logging("console", level="error")
    with lm_server(_LATENCY, _JITTER) as url:
        summary = asyncio.run(_soak(url))
    flat = (
        summary["tasks_after"] <= summary["tasks_before"]
        and summary["sockets_after"] <= summary["sockets_before"]
    )
    summary["flat"] = flat
    summary["ok"] = flat and summary["hung"] == 0 and not summary["untyped_errors"]
    print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
