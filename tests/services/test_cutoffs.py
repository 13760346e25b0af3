"""Tests for lmvisor.services._cutoffs: one timer cancelling executions past their cutoff."""

from __future__ import annotations

import asyncio
from typing import Any

from lmvisor.services import _cutoffs
from lmvisor.services._cutoffs import ExecutionCutoffs


async def _parked() -> None:
    await asyncio.Event().wait()


class TestExecutionCutoffs:
    async def test_watched_tasks_are_cancelled_at_their_cutoffs_forgotten_ones_never(
        self,
    ) -> None:
        """Each watched task is cancelled once its cutoff has passed, none before; a task
        forgotten first is left alone."""
        loop = asyncio.get_running_loop()
        cutoffs = ExecutionCutoffs()
        tasks = [asyncio.create_task(_parked()) for _ in range(6)]
        start = loop.time()
        at = [start + 0.02 * (i + 1) for i in range(6)]
        cancelled_at: dict[int, float] = {}
        for i, (task, cutoff) in enumerate(zip(tasks, reversed(at), strict=True)):
            task.add_done_callback(lambda _, i=i: cancelled_at.setdefault(i, loop.time()))
            cutoffs.watch(task, cutoff)
        cutoffs.forget(tasks[0])  # the latest cutoff
        cutoffs.forget(tasks[3])
        await asyncio.wait(tasks[1:3] + tasks[4:], timeout=5.0)
        for i in (1, 2, 4, 5):
            assert tasks[i].cancelled() and cancelled_at[i] >= list(reversed(at))[i]
        await asyncio.sleep(at[-1] + 2 * _cutoffs._STEP - loop.time())
        assert not tasks[0].done() and not tasks[3].done()
        for task in (tasks[0], tasks[3]):
            task.cancel()

    async def test_a_firing_looks_only_at_what_is_due(self) -> None:
        """When the timer fires it takes out the slots that are due and no other watched
        task: executions that keep ending near their cutoffs cost a firing each, not a scan
        of every execution in flight (as a single sorted-by-nothing table would)."""
        loop = asyncio.get_running_loop()
        cutoffs = ExecutionCutoffs()
        later = [asyncio.create_task(_parked()) for _ in range(2_000)]
        for task in later:
            cutoffs.watch(task, loop.time() + 60.0)
        soon = asyncio.create_task(_parked())
        cutoffs.watch(soon, loop.time() + 0.01)
        slots = cutoffs._slots = _CountingSlots(cutoffs._slots)
        await asyncio.wait([soon], timeout=5.0)
        assert soon.cancelled() and not any(task.done() for task in later)
        assert slots.taken == 1
        for task in later:
            task.cancel()

    async def test_executions_in_one_slot_share_it(self) -> None:
        """Executions that follow one another within a slot reuse it: no new set and no
        new heap entry each (the slot emptied by one is the next one's)."""
        loop = asyncio.get_running_loop()
        cutoffs = ExecutionCutoffs()
        task = asyncio.create_task(_parked())
        cutoff = loop.time() + 60.0
        for _ in range(100):
            cutoffs.watch(task, cutoff)
            cutoffs.forget(task)
        assert len(cutoffs._slots) == 1 and len(cutoffs._due) == 1
        task.cancel()

    async def test_executions_that_end_first_leave_nothing_behind(self) -> None:
        """Executions forgotten before their cutoffs (an hour off, each in its own slot)
        leave no slot and only a bounded number of stale heap entries, however many ran;
        a later execution is still cancelled at its cutoff."""
        loop = asyncio.get_running_loop()
        cutoffs = ExecutionCutoffs()
        task = asyncio.create_task(_parked())
        for i in range(5_000):
            cutoffs.watch(task, loop.time() + 3600.0 + i * _cutoffs._STEP)
            cutoffs.forget(task)
        # The latest watch's slot stays for the next execution; no other.
        assert list(cutoffs._slots.values()) == [set()] and cutoffs._slot_of == {}
        assert len(cutoffs._due) <= _cutoffs._STALE_LIMIT + 2
        cutoffs.watch(task, loop.time() + 0.01)
        await asyncio.wait([task], timeout=5.0)
        assert task.cancelled() and cutoffs._slots == {}


class _CountingSlots(dict[int, set["asyncio.Task[Any]"]]):
    """The cutoffs' slot table, counting the tasks taken out of it."""

    taken = 0

    def pop(self, key: int, default: Any = None) -> Any:
        found = super().pop(key, default)
        self.taken += len(found or ())
        return found
