"""Time as a dependency: the runtime reads monotonic time and sleeps through a `Clock`.

`SystemClock` is the loop's clock; `MockClock` is advanced by hand so restart
windows, backoff and breaker timers are tested without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol, final

__all__ = ["Clock", "MockClock", "SystemClock"]

_ASYNCIO_TIME = asyncio.BaseEventLoop.time
_monotonic = time.monotonic


class Clock(Protocol):
    """Monotonic seconds and an awaitable sleep on the same time line."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after `seconds` have passed on this clock."""
        ...


@final
class SystemClock:
    """The running event loop's monotonic clock."""

    __slots__ = ()

    def monotonic(self) -> float:
        loop = asyncio.get_running_loop()
        # asyncio's own loops read `time.monotonic()`: call it without their Python `time`
        # frame (this runs a few times per LM call); another loop (uvloop) keeps its own.
        return _monotonic() if type(loop).time is _ASYNCIO_TIME else loop.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


@final
class MockClock:
    """A clock that moves only when `advance()` is called.

    Sleepers wake in deadline order when time is advanced past their deadline.
    A zero or negative sleep yields once and returns, like `asyncio.sleep(0)`.
    """

    __slots__ = ("_now", "_seq", "_sleepers")

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed.

        Raises:
            ValueError: if `seconds` is negative.
        """
        if seconds < 0:
            raise ValueError(f"MockClock.advance: seconds must be >= 0, got {seconds!r}")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting for time to advance."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    def __repr__(self) -> str:
        return f"MockClock(now={self._now!r}, sleepers={self.sleepers})"
