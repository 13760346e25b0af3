"""Tests for lmvisor.runtime._threads: worker-thread work a cancellation cannot abandon."""

from __future__ import annotations

import asyncio
import threading

import pytest

from lmvisor.runtime._threads import run_to_completion


async def _turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class TestRunToCompletion:
    async def test_result_and_errors_pass_through(self) -> None:
        """The function's result is returned and what it raises is raised."""
        assert await run_to_completion(lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(ZeroDivisionError):
            await run_to_completion(lambda: 1 / 0)

    async def test_a_cancelled_caller_waits_for_the_thread(self) -> None:
        """Cancelled while the function runs, the caller gets CancelledError only once it
        has returned (anyio's run_sync returned at once, the thread running on)."""
        release, finished = threading.Event(), threading.Event()

        def work() -> None:
            release.wait(10)
            finished.set()

        caller = asyncio.ensure_future(run_to_completion(work))
        await _turns()
        caller.cancel()
        await _turns()
        assert not caller.done()
        caller.cancel()  # a second cancellation is held back too
        await _turns()
        assert not caller.done()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert finished.is_set()
