"""Benchmark the runtime against raw asyncio (Queue + Future + Task), measured in the same run.

One JSON line per figure (`bench/_common.emit`), each with its raw-asyncio baseline:

- `cast_throughput`: casts per second into one actor (target >= 1,000,000).
- `call_round_trip_p50` / `_p99`: one call, reply included (targets 12 / 30 us).
- `restart_latency_p50` / `_p99`: 1,000 crashes of a permanent child, back
  to back, each timed from the crash until the new incarnation has answered
  a call, on the shipped defaults: log level "info", so every crash writes
  its `actor.crashed` and `supervisor.report` lines (to /dev/null here) and
  their events. The reports are recorded in the restart path and written
  off it by the reporter's timer, wherever that fires: the few samples it
  lands in show in `max`; `report_us` is that writing per restart and
  `mean` the average with it spread over all samples (the baseline only
  replaces a task). Targets 50 / 250 us.
- `spawn_idle_actor`: time to spawn one idle actor, over 10,000 (target 15 us).
- `idle_actor_memory`: bytes per idle actor by tracemalloc (target 3 KiB).
- `dynamic_terminate_newest_vs_oldest`: `terminate_child` over a
  DynamicSupervisor of 10,000 children, newest-first time / oldest-first
  time (target <= 1.5: the same cost whichever child).
- `dynamic_terminate_10k_vs_1k`: per-terminate time among 10,000 children /
  among 1,000 (target <= 2; OTP's OTP-9242 test fails above 50).

Run alone: ``.venv/bin/python bench/runtime.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from _common import emit

from lmvisor.config.schema import LmvisorConfig
from lmvisor.runtime.actor import Actor, ActorRef, handler
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.dynamic_supervisor import DynamicSupervisor
from lmvisor.runtime.messages import Call, Cast
from lmvisor.runtime.runtime import Runtime
from lmvisor.runtime.supervisor import Supervisor, start_child, terminate_child

CASTS = 1_000_000
CALLS = 100_000
RESTARTS = 1_000
SPAWNS = 10_000
TERMINATES = 500
_ASYNCIO = "raw asyncio (Queue + Future + Task), same run"


@dataclass(frozen=True, slots=True)
class Inc(Cast):
    pass


@dataclass(frozen=True, slots=True)
class Get(Call[int]):
    pass


@dataclass(frozen=True, slots=True)
class Crash(Cast):
    pass


class Counter(Actor):
    def __init__(self) -> None:
        self.n = 0

    @handler
    def inc(self, msg: Inc) -> None:
        self.n += 1

    @handler
    def get(self, msg: Get) -> int:
        return self.n

    @handler
    def crash(self, msg: Crash) -> None:
        raise RuntimeError("bench crash")


class Idle(Actor):
    @handler
    def get(self, msg: Get) -> int:
        return 0


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """The runtime's log chain writes to stderr: keep the bench's output readable."""
    saved = sys.stderr
    with open(os.devnull, "w") as sink:
        sys.stderr = sink
        try:
            yield
        finally:
            sys.stderr = saved


async def with_runtime(fn: Callable[[Runtime], Awaitable[Any]]) -> Any:
    """Run `fn` in a fresh runtime on the shipped defaults (log level "info")."""
    with _stderr_to_devnull():
        async with Runtime.open(LmvisorConfig(), namespace="bench") as runtime:
            return await fn(runtime)


# --- raw asyncio baselines ------------------------------------------------------------


async def _consumer(queue: asyncio.Queue[Any]) -> None:
    n = 0
    while True:
        item = await queue.get()
        if type(item) is tuple:
            msg, fut = item
            if msg == "crash":
                raise RuntimeError("crash")
            fut.set_result(n)
        else:
            n += 1


async def _stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.wait([task])


async def baseline_cast() -> float:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)
    task = loop.create_task(_consumer(queue))
    msg = Inc()
    start = time.perf_counter()
    for _ in range(CASTS):
        await queue.put(msg)
    fut = loop.create_future()
    await queue.put(("get", fut))
    await fut
    elapsed = time.perf_counter() - start
    await _stop(task)
    return CASTS / elapsed


async def baseline_calls() -> list[float]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)
    task = loop.create_task(_consumer(queue))
    samples = []
    clock = time.perf_counter_ns
    for _ in range(CALLS):
        t0 = clock()
        fut = loop.create_future()
        await queue.put(("get", fut))
        await fut
        samples.append((clock() - t0) / 1000)
    await _stop(task)
    return samples


async def baseline_restarts() -> list[float]:
    """A done-callback that starts a fresh consumer task: the least a restart can cost."""
    loop = asyncio.get_running_loop()
    current: dict[str, Any] = {"running": True}

    def restart(task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            task.exception()
        if current["running"]:
            spawn()

    def spawn() -> None:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)
        task = loop.create_task(_consumer(queue))
        task.add_done_callback(restart)
        current["queue"], current["task"] = queue, task

    spawn()
    samples = []
    for _ in range(RESTARTS):
        old = current["queue"]
        t0 = time.perf_counter_ns()
        old.put_nowait(("crash", None))
        while current["queue"] is old:  # noqa: ASYNC110 (poll: the earliest visible moment)
            await asyncio.sleep(0)
        fut = loop.create_future()
        current["queue"].put_nowait(("get", fut))
        await fut
        samples.append((time.perf_counter_ns() - t0) / 1000)
    current["running"] = False
    await _stop(current["task"])
    return samples


async def _idle(fut: asyncio.Future[None]) -> None:
    await fut


async def baseline_spawn(count: int) -> float:
    """Seconds to create `count` parked tasks."""
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    futs = [loop.create_future() for _ in range(count)]
    tasks = [loop.create_task(_idle(f)) for f in futs]
    await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    for fut in futs:
        fut.set_result(None)
    await asyncio.gather(*tasks)
    return elapsed


async def baseline_memory(count: int) -> float:
    """Bytes per parked raw task."""
    loop = asyncio.get_running_loop()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    futs = [loop.create_future() for _ in range(count)]
    tasks = [loop.create_task(_idle(f)) for f in futs]
    await asyncio.sleep(0)
    per_task = (tracemalloc.get_traced_memory()[0] - base) / count
    tracemalloc.stop()
    for fut in futs:
        fut.set_result(None)
    await asyncio.gather(*tasks)
    return per_task


async def baseline_terminate(count: int, newest_first: bool) -> float:
    """Seconds per cancel-and-await of one of `count` tasks held in a dict by id."""
    loop = asyncio.get_running_loop()
    futs = {n: loop.create_future() for n in range(count)}
    tasks = {n: loop.create_task(_idle(f)) for n, f in futs.items()}
    await asyncio.sleep(0)
    order = list(tasks)[-TERMINATES:][::-1] if newest_first else list(tasks)[:TERMINATES]
    start = time.perf_counter()
    for n in order:
        await _stop(tasks.pop(n))
    elapsed = (time.perf_counter() - start) / TERMINATES
    for task in tasks.values():
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    return elapsed


# --- lmvisor -------------------------------------------------------------------------------


async def lmvisor_cast(runtime: Runtime) -> float:
    ref = await runtime.spawn(Counter())
    msg = Inc()
    start = time.perf_counter()
    for _ in range(CASTS):
        await ref.cast(msg)
    count = await ref.call(Get())
    elapsed = time.perf_counter() - start
    assert count == CASTS
    await ref.stop()
    return CASTS / elapsed


async def lmvisor_calls(runtime: Runtime) -> list[float]:
    ref = await runtime.spawn(Counter())
    samples = []
    clock = time.perf_counter_ns
    msg = Get()
    call = ref.call
    for _ in range(CALLS):
        t0 = clock()
        await call(msg)
        samples.append((clock() - t0) / 1000)
    await ref.stop()
    return samples


async def lmvisor_restarts(runtime: Runtime) -> tuple[list[float], float]:
    """Restart latencies (us) and the reporter's writing time per restart (us)."""

    def tree() -> Supervisor:
        return Supervisor([ChildSpec("w", Counter, name="w")], max_restarts=10**9, max_seconds=1.0)

    await runtime.start_child(ChildSpec("sup", tree, type="supervisor"))
    registry = runtime.registry
    samples = []
    get, crash = Get(), Crash()
    for _ in range(RESTARTS):
        old = registry.whereis("w")
        assert old is not None
        t0 = time.perf_counter_ns()
        old.cast_nowait(crash)
        new: ActorRef | None = None
        while new is None or new is old:
            await asyncio.sleep(0)
            new = registry.whereis("w")
        await new.call(get)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    runtime.reports.flush()
    reports = runtime.reports.statistics()
    assert reports.failed == 0 and reports.written >= 2 * RESTARTS
    return samples, reports.write_seconds / RESTARTS * 1e6


async def lmvisor_spawn(runtime: Runtime, count: int) -> float:
    spawn = runtime.spawn_nowait
    start = time.perf_counter()
    refs = [spawn(Idle()) for _ in range(count)]
    await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    assert all(ref.alive for ref in refs)
    return elapsed


async def lmvisor_memory(runtime: Runtime, count: int) -> float:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    spawn = runtime.spawn_nowait
    refs = [spawn(Idle()) for _ in range(count)]
    await asyncio.sleep(0)
    per_actor = (tracemalloc.get_traced_memory()[0] - base) / count
    tracemalloc.stop()
    del refs
    return per_actor


async def lmvisor_terminate(runtime: Runtime, count: int, newest_first: bool) -> float:
    """Seconds per `terminate_child` of one of `count` DynamicSupervisor children."""
    sup = await runtime.start_child(
        ChildSpec(f"dyn-{count}-{newest_first}", DynamicSupervisor, type="supervisor")
    )
    refs = [await start_child(sup, ChildSpec("w", Idle)) for _ in range(count)]
    order = refs[-TERMINATES:][::-1] if newest_first else refs[:TERMINATES]
    start = time.perf_counter()
    for ref in order:
        await terminate_child(sup, ref)
    elapsed = (time.perf_counter() - start) / TERMINATES
    await runtime.terminate_child(f"dyn-{count}-{newest_first}")
    return elapsed


# --- figures -------------------------------------------------------------------------------


async def bench_messages() -> None:
    base_rate = await baseline_cast()
    rate = await with_runtime(lmvisor_cast)
    emit("cast_throughput", rate, "msg/s", target=1_000_000, baseline=base_rate,
         baseline_source=_ASYNCIO, higher_is_better=True, digits=0)  # fmt: skip
    base_calls = await baseline_calls()
    calls = await with_runtime(lmvisor_calls)
    for q, name, target in ((0.5, "p50", 12.0), (0.99, "p99", 30.0)):
        emit(f"call_round_trip_{name}", pct(calls, q), "us", target=target,
             baseline=pct(base_calls, q), baseline_source=_ASYNCIO)  # fmt: skip


async def bench_restarts() -> None:
    # one unmeasured pass each warms the interpreter's cold paths
    await baseline_restarts()
    await with_runtime(lmvisor_restarts)
    base = await baseline_restarts()
    ours, report_us = await with_runtime(lmvisor_restarts)
    extra = {"max": round(max(ours), 3), "mean": round(statistics.fmean(ours), 3),
             "report_us": round(report_us, 3), "baseline_max": round(max(base), 3),
             "condition": "default log level (info), 1000 crashes back to back"}  # fmt: skip
    for q, name, target in ((0.5, "p50", 50.0), (0.99, "p99", 250.0)):
        emit(f"restart_latency_{name}", pct(ours, q), "us", target=target,
             baseline=pct(base, q), baseline_source=_ASYNCIO, **extra)  # fmt: skip


async def bench_spawn() -> None:
    base = min([await baseline_spawn(SPAWNS) for _ in range(3)])
    ours = min([await with_runtime(lambda rt: lmvisor_spawn(rt, SPAWNS)) for _ in range(3)])
    emit("spawn_idle_actor", ours / SPAWNS * 1e6, "us", target=15.0,
         baseline=base / SPAWNS * 1e6, baseline_source=_ASYNCIO,
         stat=f"best of 3, {SPAWNS} actors")  # fmt: skip
    base_mem = await baseline_memory(SPAWNS)
    mem = await with_runtime(lambda rt: lmvisor_memory(rt, SPAWNS))
    emit("idle_actor_memory", mem / 1024, "KiB", target=3.0, baseline=base_mem / 1024,
         baseline_source=_ASYNCIO, method=f"tracemalloc over {SPAWNS}")  # fmt: skip


async def bench_dynamic_terminate() -> None:
    async def ours(count: int, newest_first: bool) -> float:
        return min([float(await with_runtime(lambda rt: lmvisor_terminate(rt, count, newest_first)))
                    for _ in range(3)])  # fmt: skip

    async def base(count: int, newest_first: bool) -> float:
        return min([await baseline_terminate(count, newest_first) for _ in range(3)])

    newest, oldest = await ours(10_000, True), await ours(10_000, False)
    base_newest, base_oldest = await base(10_000, True), await base(10_000, False)
    emit("dynamic_terminate_newest_vs_oldest", newest / oldest, "x", target=1.5,
         baseline=base_newest / base_oldest, baseline_source=_ASYNCIO + " (tasks in a dict)",
         newest_us=round(newest * 1e6, 3), oldest_us=round(oldest * 1e6, 3),
         children=10_000)  # fmt: skip
    small, base_small = await ours(1_000, True), await base(1_000, True)
    emit("dynamic_terminate_10k_vs_1k", newest / small, "x", target=2.0,
         baseline=base_newest / base_small, baseline_source=_ASYNCIO + " (tasks in a dict)",
         us_among_1k=round(small * 1e6, 3), us_among_10k=round(newest * 1e6, 3))  # fmt: skip


async def main() -> None:
    await bench_messages()
    await bench_restarts()
    await bench_spawn()
    await bench_dynamic_terminate()


if __name__ == "__main__":
    asyncio.run(main())
