"""A supervisor of one-off tasks: run coroutines it owns, never restart them.

`start_task(sup, fn)` runs ``fn()`` as a task owned by the `TaskSupervisor`
and returns the `asyncio.Task` to await. A task that raises is reported
(`task.crashed`) and does not affect the supervisor or its siblings; awaiting
it re-raises. When the supervisor stops (or is killed) its tasks are cancelled.
`map_tasks(sup, fn, items, concurrency=n)` applies ``fn`` to every item with at
most ``n`` running at once, returning results in input order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast, final

from lmvisor.runtime.actor import Actor, ActorRef, handler
from lmvisor.runtime.errors import ActorExited
from lmvisor.runtime.messages import Call

__all__ = ["StartTask", "TaskSupervisor", "TaskSupervisorStatistics", "map_tasks", "start_task"]

T = TypeVar("T")
U = TypeVar("U")


@final
@dataclass(frozen=True, slots=True)
class StartTask(Call["asyncio.Task[Any]"]):
    """Run ``fn()`` as a task owned by the supervisor; replies with the task."""

    fn: Callable[[], Awaitable[Any]]


@final
@dataclass(frozen=True, slots=True)
class TaskSupervisorStatistics:
    """Tasks running now, started in total, and how many raised."""

    running: int
    started: int
    failed: int


@final
class TaskSupervisor(Actor):
    """Owns one-off tasks; see the module docstring."""

    def __init__(self) -> None:
        self._started = 0
        self._failed = 0
        self._running: set[asyncio.Task[Any]] = set()

    @handler
    def _on_start_task(self, msg: StartTask) -> asyncio.Task[Any]:
        self._started += 1
        task = self._process.own_task(_as_coroutine(msg.fn), self._task_failed)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    def _task_failed(self, task: asyncio.Task[Any], exc: BaseException) -> None:
        self._failed += 1
        self.runtime.reports.task_crashed(
            supervisor=self._process.name, task=task.get_name(), reason=exc
        )

    async def terminate(self, reason: object) -> None:
        running = [t for t in self._running if not t.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)

    def statistics(self) -> TaskSupervisorStatistics:
        """Running, started and failed task counts (sync)."""
        return TaskSupervisorStatistics(
            running=len(self._running), started=self._started, failed=self._failed
        )

    def format_status(self) -> object:
        return {"running": len(self._running), "started": self._started}


async def _as_coroutine(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


async def start_task(sup: ActorRef, fn: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
    """Run ``fn()`` under the task supervisor `sup`; return the task to await.

    Raises:
        ActorExited: the supervisor is dead.
    """
    task = await sup.call(StartTask(fn), None)
    return cast("asyncio.Task[T]", task)


async def map_tasks(
    sup: ActorRef,
    fn: Callable[[T], Awaitable[U]],
    items: Iterable[T],
    *,
    concurrency: int,
) -> list[U]:
    """Apply `fn` to each item, at most `concurrency` at once, under `sup`.

    Returns the results in input order. The first exception cancels the rest
    and is re-raised (its worker task is also reported as `task.crashed`);
    cancelling the caller cancels every worker.

    Raises:
        ValueError: `concurrency` is not an int >= 1.
        ActorExited: the supervisor is dead (or died during the map).
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"map_tasks: concurrency must be an int >= 1, got {concurrency!r}")
    pending = list(enumerate(items))
    results: list[Any] = [None] * len(pending)
    queue = iter(pending)

    # Workers enrol themselves: a caller cancelled mid-start loses the reply that
    # carries the task it just started, and that worker must still be cancelled.
    enrolled: set[asyncio.Task[Any]] = set()
    done = False

    async def worker() -> None:
        if done:
            return
        task = asyncio.current_task()
        assert task is not None
        enrolled.add(task)
        for index, item in queue:
            results[index] = await fn(item)

    workers: list[asyncio.Task[None]] = []
    try:
        for _ in range(min(concurrency, len(pending))):
            workers.append(await start_task(sup, worker))
        await _first_failure(workers)
    finally:
        done = True
        for task in (*workers, *enrolled):
            task.cancel()
    return cast("list[U]", results)


async def _first_failure(tasks: list[asyncio.Task[Any]]) -> None:
    pending: set[asyncio.Task[Any]] = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.cancelled():
                raise ActorExited(actor="task supervisor", reason="map worker cancelled")
            exc = task.exception()
            if exc is not None:
                raise exc
