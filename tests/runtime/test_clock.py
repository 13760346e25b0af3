"""Tests for lmvisor.runtime.clock: the system clock follows the running loop's."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from lmvisor.runtime.clock import SystemClock


async def _readings() -> tuple[float, float, float]:
    loop = asyncio.get_running_loop()
    before = loop.time()
    now = SystemClock().monotonic()
    return before, now, loop.time()


class TestSystemClock:
    async def test_reads_the_asyncio_loops_time(self) -> None:
        """On asyncio's loop, a reading lies between two of the loop's own."""
        before, now, after = await _readings()
        assert before <= now <= after

    def test_reads_another_loops_own_time(self) -> None:
        """On uvloop the reading is the loop's own time: between two of the loop's readings,
        and in libuv's whole milliseconds (time.monotonic() has finer steps and another
        origin). uvloop may refresh libuv's time between readings, so they need not be equal."""
        before, now, after = uvloop.run(_readings())
        assert before <= now <= after
        assert abs(now * 1000 - round(now * 1000)) < 1e-6

    def test_needs_a_running_loop(self) -> None:
        """Outside a running loop there is no system clock to read."""
        with pytest.raises(RuntimeError, match=r"^no running event loop$"):
            SystemClock().monotonic()
