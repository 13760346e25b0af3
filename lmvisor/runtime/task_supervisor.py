"""A supervisor of one-off tasks: run coroutines it owns, never restart them.

`start_task(sup, fn)` runs ``fn()`` as a task owned by the `TaskSupervisor`
and returns the `asyncio.Task` to await. A task that raises is reported
(`task.crashed`) and does not affect the supervisor or its siblings; awaiting
it re-raises. When the supervisor stops (or is killed) its tasks are cancelled.
`map_tasks(sup, fn, items, concurrency=n)` applies ``fn`` to every item with at
most ``n`` running at once, returning results in input order.

Starting a task is an inline call (`@handler(inline=True)`): it runs in the
caller's task, never waits in the supervisor's mailbox, and costs one task
creation. The task still belongs to the supervisor (counted, reported, cancelled
with it) and runs in the supervisor's own context (its runtime, its name on log
lines) under the caller's correlation scope, as if the supervisor had started it.
A start may name a new correlation id and a deadline for the task instead, set
in its context as it is made (no `with` block inside the task). A caller that
starts many tasks with the same context variables (an LM, a policy) sets them
once in a copy of that context (`task_context`) and passes it with each start:
the task runs in a copy of it.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast, final

from lmvisor.runtime.actor import Actor, ActorRef, ActorStatus, handler
from lmvisor.runtime.correlation import CorrelationScope
from lmvisor.runtime.correlation import _scope as _correlation_var
from lmvisor.runtime.deadline import _deadline as _deadline_var
from lmvisor.runtime.errors import ActorExited
from lmvisor.runtime.messages import Call

__all__ = [
    "StartTask",
    "TaskContext",
    "TaskSupervisor",
    "TaskSupervisorStatistics",
    "map_tasks",
    "start_task",
    "task_context",
]

T = TypeVar("T")
U = TypeVar("U")


@final
@dataclass(frozen=True, slots=True)
class StartTask(Call["asyncio.Task[Any]"]):
    """Run ``fn()`` as a task owned by the supervisor; replies with the task.

    `context`: run it in a copy of this context (one `TaskContext` returned, then
    changed) instead of a copy of the supervisor's own. `correlation_id`: run it in
    a new scope with this id (its parent the caller's scope) rather than the
    caller's scope. `deadline`: the absolute deadline (loop time) it runs under.
    """

    fn: Callable[[], Awaitable[Any]]
    context: contextvars.Context | None = None
    correlation_id: str | None = None
    deadline: float | None = None


@final
@dataclass(frozen=True, slots=True)
class TaskContext(Call[contextvars.Context]):
    """A copy of the context the supervisor runs its tasks in, for `StartTask.context`."""


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
        self._context = contextvars.Context()  # the incarnation's own, from started()

    async def started(self) -> None:
        # The context this incarnation's task runs in: its runtime, its name on log lines.
        self._context = contextvars.copy_context()

    @handler(inline=True)
    async def _on_start_task(self, msg: StartTask) -> asyncio.Task[Any]:
        return self._start(msg.fn, msg.context, msg.correlation_id, msg.deadline)

    def _start(
        self,
        fn: Callable[[], Awaitable[Any]],
        context: contextvars.Context | None,
        correlation_id: str | None,
        deadline: float | None,
    ) -> asyncio.Task[Any]:
        """Start the task now; called in the caller's task, so its scope is the current one."""
        made = (self._context if context is None else context).copy()
        scope = _correlation_var.get()
        if correlation_id is not None:
            parent_id = None if scope is None else scope.id
            made.run(_correlation_var.set, CorrelationScope(id=correlation_id, parent_id=parent_id))
        elif made.get(_correlation_var) is not scope:
            made.run(_correlation_var.set, scope)
        if deadline is not None:
            made.run(_deadline_var.set, deadline)
        task = made.run(self._process.own_task, _as_coroutine(fn), self._task_failed)
        self._started += 1
        return task

    @handler(inline=True)
    async def _on_task_context(self, msg: TaskContext) -> contextvars.Context:
        return self._context.copy()

    def _task_failed(self, task: asyncio.Task[Any], exc: BaseException) -> None:
        self._failed += 1
        self.runtime.reports.task_crashed(
            supervisor=self._process.name, task=task.get_name(), reason=exc
        )

    async def terminate(self, reason: object) -> None:
        # The incarnation's death cancelled them; wait until every one has unwound.
        running = [t for t in self._running() if not t.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)

    def _running(self) -> set[asyncio.Task[Any]]:
        # The tasks this incarnation owns (`own_task` keeps them until they end): only ours.
        return self._process.owned or set()

    def statistics(self) -> TaskSupervisorStatistics:
        """Running, started and failed task counts (sync)."""
        return TaskSupervisorStatistics(
            running=len(self._running()), started=self._started, failed=self._failed
        )

    def format_status(self) -> object:
        return {"running": len(self._running()), "started": self._started}


async def _as_coroutine(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


async def start_task(
    sup: ActorRef,
    fn: Callable[[], Awaitable[T]],
    *,
    context: contextvars.Context | None = None,
    correlation_id: str | None = None,
    deadline: float | None = None,
) -> asyncio.Task[T]:
    """Run ``fn()`` under the task supervisor `sup`; return the task to await.

    Args:
        sup: the task supervisor.
        fn: makes the awaitable the task runs (called in the task).
        context: the task runs in a copy of it (one `task_context` returned, then
            changed); by default in a copy of the supervisor's own context.
        correlation_id: the task runs in a new correlation scope with this id (its
            parent the caller's scope); by default in the caller's scope.
        deadline: the absolute deadline (loop time) the task runs under
            (`current_deadline()` in it); by default none.

    Never waits in the supervisor's mailbox (only while the supervisor is starting).

    Raises:
        ActorExited: the supervisor is dead or stopping.
        ValueError: `deadline` is NaN.
    """
    if deadline is not None and math.isnan(deadline):
        raise ValueError("start_task: deadline must not be NaN")
    proc = sup._proc
    actor = proc.actor
    if proc.status is ActorStatus.RUNNING and type(actor) is TaskSupervisor:
        # What the inline call would do, without its bookkeeping: nothing here can wait.
        started: asyncio.Task[T] = actor._start(fn, context, correlation_id, deadline)
        return started
    task = await sup.call(StartTask(fn, context, correlation_id, deadline), None)
    return cast("asyncio.Task[T]", task)


async def task_context(sup: ActorRef) -> contextvars.Context:
    """A copy of the context the supervisor `sup` runs tasks in, to change and pass to
    `start_task` (set there what every task started with it shares).

    Raises:
        ActorExited: the supervisor is dead or stopping.
    """
    return await sup.call(TaskContext(), None)


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
