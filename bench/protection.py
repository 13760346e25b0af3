"""Benchmark: protection and event overhead on the hot path.

Prints one JSON line per figure, each with its baseline measured in the same run:

- `protected_call_overhead`: a call through `execute_protected` with a
  circuit breaker and a rate limiter (ample capacity) minus a direct await
  of the same coroutine function; target <= 3 us.
- `event_emit`: one `EventRing.emit` into the memory ring, against the
  bare loop (the baseline); target <= 5 us.

Each figure is the best of several rounds, to damp noise from a busy machine.
Run alone: `.venv/bin/python bench/protection.py`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.protection import CircuitBreaker, RateLimiter, execute_protected

__all__ = ["main"]

_ROUNDS = 7
_CALLS = 100_000


async def _work() -> int:
    return 1


async def _time_async(body: Callable[[], Awaitable[None]]) -> float:
    best = float("inf")
    for _ in range(_ROUNDS):
        start = time.perf_counter()
        await body()
        best = min(best, time.perf_counter() - start)
    return best / _CALLS


def _time_sync(body: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(_ROUNDS):
        start = time.perf_counter()
        body()
        best = min(best, time.perf_counter() - start)
    return best / _CALLS


def _line(figure: str, value_us: float, target_us: float, baseline_us: float) -> str:
    return json.dumps(
        {
            "figure": figure,
            "unit": "us",
            "value": round(value_us, 3),
            "target": target_us,
            "baseline": round(baseline_us, 3),
            "ratio": round(value_us / target_us, 3),
            "met": value_us <= target_us,
        }
    )


async def _protected_overhead() -> str:
    breaker = CircuitBreaker("bench")
    limiter = RateLimiter("bench", limit=1e12, period=1.0)

    async def direct() -> None:
        for _ in range(_CALLS):
            await _work()

    async def protected() -> None:
        for _ in range(_CALLS):
            await execute_protected("bench", _work, breaker=breaker, limiter=limiter)

    baseline = await _time_async(direct)
    through = await _time_async(protected)
    overhead = (through - baseline) * 1e6
    return _line("protected_call_overhead", overhead, 3.0, baseline * 1e6)


def _emit_cost() -> str:
    ring = EventRing(10_000, namespace="bench")
    data = {"module": "qa", "ok": True}

    def bare() -> None:
        for _ in range(_CALLS):
            pass

    def emit() -> None:
        for _ in range(_CALLS):
            ring.emit("module.finished", data)

    baseline = _time_sync(bare)
    cost = _time_sync(emit)
    return _line("event_emit", (cost - baseline) * 1e6, 5.0, baseline * 1e6)


def main() -> None:
    """Print the figures."""
    print(asyncio.run(_protected_overhead()))
    print(_emit_cost())


if __name__ == "__main__":
    main()
