"""`gather_steps`: concurrent steps that never outlive a failure."""

from __future__ import annotations

import asyncio

import pytest

from lmvisor.optimizers._gather import gather_steps


class TestGatherSteps:
    async def test_results_in_the_steps_order(self) -> None:
        """Results come back in argument order, whatever order the steps finish in."""

        async def step(value: int, delay: float) -> int:
            await asyncio.sleep(delay)
            return value

        assert await gather_steps(step(1, 0.02), step(2, 0.0), step(3, 0.01)) == [1, 2, 3]

    async def test_a_failure_waits_for_the_others_to_end(self) -> None:
        """The first failure propagates as itself (not an exception group) once every other
        step has ended on its own (their work kept); asyncio.gather left them running."""
        ended: list[str] = []

        async def slow(name: str) -> None:
            await asyncio.sleep(0.02)
            ended.append(name)

        async def failing() -> None:
            await asyncio.sleep(0)
            raise LookupError("refused write")

        with pytest.raises(LookupError, match=r"^refused write$"):
            await gather_steps(slow("a"), failing(), slow("b"))
        assert sorted(ended) == ["a", "b"]
        assert all(t.done() for t in asyncio.all_tasks() if t is not asyncio.current_task())

    async def test_the_callers_cancellation_ends_every_step(self) -> None:
        """Cancelling the caller cancels the steps and waits for them."""
        ended: list[int] = []

        async def slow(i: int) -> None:
            try:
                await asyncio.sleep(10)
            finally:
                ended.append(i)

        task = asyncio.ensure_future(gather_steps(slow(1), slow(2)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sorted(ended) == [1, 2]
