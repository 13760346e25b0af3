"""Tests for lmvisor.runtime.protection.bulkhead."""

from __future__ import annotations

import asyncio

import pytest

from lmvisor.runtime.errors import BulkheadFull
from lmvisor.runtime.protection.bulkhead import Bulkhead
from tests.runtime._protection_helpers import until


class TestBulkhead:
    async def test_limits_running_and_queued(self) -> None:
        """max_concurrent run, max_queued wait, the next fails fast with BulkheadFull."""
        bulkhead = Bulkhead("db", max_concurrent=2, max_queued=1)
        gate = asyncio.Event()
        tasks = [asyncio.create_task(bulkhead.call(gate.wait)) for _ in range(3)]
        await until(lambda: bulkhead.statistics().queued == 1)
        assert bulkhead.statistics().running == 2
        with pytest.raises(BulkheadFull, match=r"^bulkhead 'db' is full \(2 running, 1 queued\)$"):
            await bulkhead.acquire()
        gate.set()
        await asyncio.gather(*tasks)
        stats = bulkhead.statistics()
        assert (stats.running, stats.queued, stats.admitted, stats.rejected) == (0, 0, 3, 1)

    async def test_slot_passes_to_the_longest_waiter(self) -> None:
        """A freed slot goes to the queue in arrival order."""
        bulkhead = Bulkhead("db", max_concurrent=1, max_queued=5)
        await bulkhead.acquire()
        order: list[int] = []

        async def enter(n: int) -> None:
            async with bulkhead:
                order.append(n)

        tasks = [asyncio.create_task(enter(n)) for n in range(3)]
        await until(lambda: bulkhead.statistics().queued == 3)
        bulkhead.release()
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2]
        assert bulkhead.statistics().running == 0

    async def test_cancelled_waiter_leaves_queue(self) -> None:
        """A waiter cancelled while queued frees its queue place."""
        bulkhead = Bulkhead("db", max_concurrent=1, max_queued=1)
        await bulkhead.acquire()
        waiter = asyncio.create_task(bulkhead.acquire())
        await until(lambda: bulkhead.statistics().queued == 1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert bulkhead.statistics().queued == 0
        bulkhead.release()
        assert bulkhead.statistics().running == 0

    async def test_cancelled_after_handoff_passes_slot_on(self) -> None:
        """A waiter cancelled after being handed a slot passes it on rather than leaking it."""
        bulkhead = Bulkhead("db", max_concurrent=1, max_queued=2)
        await bulkhead.acquire()
        first = asyncio.create_task(bulkhead.acquire())
        second = asyncio.create_task(bulkhead.acquire())
        await until(lambda: bulkhead.statistics().queued == 2)
        bulkhead.release()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await second
        assert bulkhead.statistics().running == 1
        bulkhead.release()
        assert bulkhead.statistics().running == 0

    async def test_try_acquire_takes_only_a_free_slot(self) -> None:
        """try_acquire takes a free slot at once, and never one a queued caller waits for."""
        bulkhead = Bulkhead("db", max_concurrent=1, max_queued=2)
        assert bulkhead.try_acquire() is True
        assert bulkhead.try_acquire() is False
        waiter = asyncio.create_task(bulkhead.acquire())
        await until(lambda: bulkhead.statistics().queued == 1)
        bulkhead.release()  # handed to the waiter
        await waiter
        assert bulkhead.try_acquire() is False
        bulkhead.release()
        assert bulkhead.try_acquire() is True
        stats = bulkhead.statistics()
        assert (stats.running, stats.admitted, stats.rejected) == (1, 3, 0)

    def test_release_without_acquire(self) -> None:
        """Releasing more than was acquired is a programming error."""
        with pytest.raises(RuntimeError, match=r"^bulkhead 'db': release\(\) without acquire\(\)$"):
            Bulkhead("db", max_concurrent=1).release()

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"max_concurrent": 0}, r"^max_concurrent must be >= 1, got 0$"),
            ({"max_concurrent": 1, "max_queued": -1}, r"^max_queued must be >= 0, got -1$"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, int], message: str) -> None:
        """Bad sizes are rejected at construction with the field named."""
        with pytest.raises(ValueError, match=message):
            Bulkhead("db", **kwargs)


class TestResize:
    async def test_a_raised_bound_lets_the_queue_in_a_lowered_one_holds_the_next(self) -> None:
        """Raised in place, queued callers run at once; lowered, running ones finish and
        the next wait until fewer than the new bound run (a freed slot above it ends)."""
        bulkhead = Bulkhead("api", max_concurrent=1, max_queued=10)
        await bulkhead.acquire()
        waiting = [asyncio.create_task(bulkhead.acquire()) for _ in range(4)]
        await until(lambda: bulkhead.statistics().queued == 4)
        bulkhead.resize(max_concurrent=4, max_queued=10)
        await until(lambda: sum(task.done() for task in waiting) == 3)
        assert (bulkhead.statistics().running, bulkhead.statistics().queued) == (4, 1)
        bulkhead.resize(max_concurrent=2, max_queued=10)
        bulkhead.release()  # 3 left running, above the new bound: the slot ends
        assert (bulkhead.statistics().running, bulkhead.statistics().queued) == (3, 1)
        bulkhead.release()
        assert (bulkhead.statistics().running, bulkhead.statistics().queued) == (2, 1)
        bulkhead.release()  # below the bound now: the queued caller gets the slot
        await asyncio.gather(*waiting)
        assert (bulkhead.statistics().running, bulkhead.statistics().queued) == (2, 0)

    def test_bad_bounds_change_nothing(self) -> None:
        """A bound the constructor would refuse is refused, the old ones kept."""
        bulkhead = Bulkhead("api", max_concurrent=3, max_queued=1)
        with pytest.raises(ValueError, match=r"^max_concurrent must be >= 1, got 0$"):
            bulkhead.resize(max_concurrent=0, max_queued=1)
        assert (bulkhead.max_concurrent, bulkhead.max_queued) == (3, 1)
