"""Tests for lmvisor.runtime.task_supervisor: one-off tasks and bounded map."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from lmvisor.runtime.actor import ActorRef
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.correlation import correlation_scope, current_scope
from lmvisor.runtime.deadline import current_deadline
from lmvisor.runtime.errors import ActorExited
from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.runtime import Runtime
from lmvisor.runtime.task_supervisor import (
    TaskSupervisor,
    TaskSupervisorStatistics,
    map_tasks,
    start_task,
    task_context,
)

_CALLERS: contextvars.ContextVar[str] = contextvars.ContextVar("test_caller", default="unset")


async def _tasks(runtime: Runtime) -> tuple[ActorRef, TaskSupervisor]:
    actor = TaskSupervisor()
    ref = await runtime.start_child(ChildSpec("tasks", lambda: actor, type="supervisor"))
    return ref, actor


class TestStartTask:
    async def test_task_result_and_failure(self, runtime: Runtime) -> None:
        """A task's result is awaited; a failing task is reported and the supervisor lives."""
        ref, actor = await _tasks(runtime)

        async def ok() -> int:
            return 7

        async def bad() -> int:
            raise ValueError("task failed")

        assert await (await start_task(ref, ok)) == 7
        with capture_logs() as logs:
            task = await start_task(ref, bad)
            with pytest.raises(ValueError, match=r"^task failed$"):
                await task
            await asyncio.sleep(0)
        assert [e["event"] for e in logs] == ["task.crashed"]
        assert ref.alive
        assert actor.statistics() == TaskSupervisorStatistics(running=0, started=2, failed=1)

    async def test_tasks_are_cancelled_when_supervisor_stops(self, runtime: Runtime) -> None:
        """Stopping the task supervisor cancels its running tasks."""
        ref, _ = await _tasks(runtime)
        task = await start_task(ref, asyncio.Event().wait)
        await runtime.terminate_child("tasks")
        assert task.cancelled()


class TestTaskContext:
    async def test_a_task_runs_in_the_supervisors_context_under_the_callers_scope(
        self, runtime: Runtime
    ) -> None:
        """The caller's own context variables stay behind; its correlation scope goes along."""
        ref, _ = await _tasks(runtime)

        async def seen() -> tuple[str, str | None]:
            scope = current_scope()
            return _CALLERS.get(), None if scope is None else scope.id

        token = _CALLERS.set("caller")
        try:
            with correlation_scope("c-1"):
                assert await (await start_task(ref, seen)) == ("unset", "c-1")
        finally:
            _CALLERS.reset(token)

    async def test_a_new_scope_and_a_deadline_are_set_as_the_task_is_made(
        self, runtime: Runtime
    ) -> None:
        """correlation_id opens a scope whose parent is the caller's; deadline bounds the task."""
        ref, _ = await _tasks(runtime)

        async def seen() -> tuple[str | None, str | None, float | None]:
            scope = current_scope()
            assert scope is not None
            return scope.id, scope.parent_id, current_deadline()

        with correlation_scope("outer"):
            task = await start_task(ref, seen, correlation_id="inner", deadline=123.5)
        assert await task == ("inner", "outer", 123.5)
        with pytest.raises(ValueError, match=r"^start_task: deadline must not be NaN$"):
            await start_task(ref, seen, deadline=float("nan"))

    async def test_a_prepared_context_serves_every_task_started_with_it(
        self, runtime: Runtime
    ) -> None:
        """What a caller set once in a `task_context` copy, each task started with it sees,
        and a task's own changes stay in its own copy."""
        ref, _ = await _tasks(runtime)
        prepared = await task_context(ref)
        prepared.run(_CALLERS.set, "prepared")

        async def seen_then_change() -> str:
            value = _CALLERS.get()
            _CALLERS.set("changed by the task")
            return value

        first = await start_task(ref, seen_then_change, context=prepared)
        second = await start_task(ref, seen_then_change, context=prepared)
        assert (await first, await second) == ("prepared", "prepared")
        assert prepared.get(_CALLERS) == "prepared"

    async def test_starting_on_a_stopped_supervisor_fails(self, runtime: Runtime) -> None:
        """A supervisor that stopped starts nothing: ActorExited, the work never runs."""
        ref, actor = await _tasks(runtime)
        await runtime.terminate_child("tasks")
        ran = asyncio.Event()

        async def work() -> None:
            ran.set()

        with pytest.raises(ActorExited):
            await start_task(ref, work)
        with pytest.raises(ActorExited):
            await task_context(ref)
        assert not ran.is_set()
        assert actor.statistics().started == 0


class TestMapTasks:
    async def test_map_keeps_order_and_bounds_concurrency(self, runtime: Runtime) -> None:
        """map_tasks returns results in input order with at most `concurrency` running."""
        ref, _ = await _tasks(runtime)
        running = 0
        peak = 0

        async def square(x: int) -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)
            running -= 1
            return x * x

        assert await map_tasks(ref, square, range(10), concurrency=3) == [x * x for x in range(10)]
        assert peak == 3
        assert await map_tasks(ref, square, [], concurrency=2) == []

    async def test_map_reraises_first_failure(self, runtime: Runtime) -> None:
        """The first exception cancels the remaining work and is re-raised."""
        ref, _ = await _tasks(runtime)

        async def fail_on_three(x: int) -> int:
            if x == 3:
                raise KeyError(x)
            await asyncio.sleep(0)
            return x

        with capture_logs(), pytest.raises(KeyError):
            await map_tasks(ref, fail_on_three, range(8), concurrency=2)

    async def test_cancelling_the_caller_while_starting_workers_cancels_them(
        self, runtime: Runtime
    ) -> None:
        """A worker already started when the caller is cancelled mid-start is cancelled too."""
        ref, _ = await _tasks(runtime)
        caller: asyncio.Task[list[None]] | None = None
        seen: list[asyncio.Task[object]] = []

        async def block(x: int) -> None:
            current = asyncio.current_task()
            assert current is not None and caller is not None
            seen.append(current)
            caller.cancel()  # lands while the caller still starts the other workers
            await asyncio.Event().wait()

        caller = asyncio.ensure_future(map_tasks(ref, block, range(4), concurrency=2))
        with pytest.raises(asyncio.CancelledError):
            await caller
        done, _ = await asyncio.wait(seen, timeout=5.0)
        assert seen and done == set(seen)
        assert all(task.cancelled() for task in seen)

    async def test_map_rejects_bad_concurrency(self, runtime: Runtime) -> None:
        """concurrency < 1 raises ValueError naming it."""
        ref, _ = await _tasks(runtime)

        async def ident(x: int) -> int:
            return x

        with pytest.raises(
            ValueError, match=r"^map_tasks: concurrency must be an int >= 1, got 0$"
        ):
            await map_tasks(ref, ident, [1], concurrency=0)
