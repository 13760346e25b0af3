"""Tests for lmvisor.services.cache_store: the single-flight record of a call in progress."""

from __future__ import annotations

import asyncio
import gc

import pytest

from lmvisor.programs.lm import LMResponse
from lmvisor.services.cache_store import Flight


class TestFlight:
    async def test_every_caller_that_joined_gets_the_answer(self) -> None:
        """Each joined caller gets the answer; one that stopped waiting is left out."""
        flight = Flight()
        first, second, gone = flight.join(), flight.join(), flight.join()
        gone.cancel()
        answer = LMResponse(outputs=["x"])
        flight.succeed(answer)
        assert (first.result(), second.result()) == (answer, answer)
        assert gone.cancelled()

    async def test_a_failure_reaches_every_caller_that_joined(self) -> None:
        """fail() hands the error to each waiting caller."""
        flight = Flight()
        waiter = flight.join()
        flight.fail(RuntimeError("upstream down"))
        with pytest.raises(RuntimeError, match=r"^upstream down$"):
            await waiter

    async def test_a_call_nobody_joined_settles_without_futures(self) -> None:
        """With no caller joined, succeed and fail have nothing to hand out (and say so)."""
        flight = Flight()
        flight.succeed(LMResponse(outputs=["x"]))
        flight.fail(RuntimeError("late"))
        assert repr(flight) == "Flight(waiters=0)"
        gc.collect()  # no future holding an unread error is left behind
        await asyncio.sleep(0)
