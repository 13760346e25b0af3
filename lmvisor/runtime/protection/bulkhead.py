"""The bulkhead: at most `max_concurrent` calls run, `max_queued` wait, the rest fail fast.

A slot freed by a finishing call passes straight to the longest waiter, so
the running count never dips and newcomers cannot overtake the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar, final

from lmvisor.runtime.errors import BulkheadFull

__all__ = ["Bulkhead", "BulkheadStatistics"]

T = TypeVar("T")


@final
@dataclass(frozen=True, slots=True)
class BulkheadStatistics:
    """A snapshot of one bulkhead."""

    name: str
    max_concurrent: int
    max_queued: int
    running: int
    queued: int
    admitted: int
    rejected: int


@final
class Bulkhead:
    """Bounds the calls running at once through it; use `async with bulkhead:` or `call(fn)`.

    Raises:
        ValueError: if `max_concurrent` < 1 or `max_queued` < 0.
    """

    __slots__ = (
        "_admitted",
        "_rejected",
        "_running",
        "_waiters",
        "max_concurrent",
        "max_queued",
        "name",
    )

    def __init__(self, name: str, *, max_concurrent: int, max_queued: int = 0) -> None:
        _check_bounds(max_concurrent, max_queued)
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self._running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._admitted = 0
        self._rejected = 0

    def try_acquire(self) -> bool:
        """Take a free slot without waiting: False when every slot is busy or callers queue.

        A False leaves the counters as they were; the caller may `acquire()` instead.
        """
        if self._running < self.max_concurrent and not self._waiters:
            self._running += 1
            self._admitted += 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, queueing if all are busy.

        On cancellation while queued, the caller leaves the queue (or passes
        on a slot handed to it in the meantime).

        Raises:
            BulkheadFull: if every slot is busy and the queue is full.
        """
        if self._running < self.max_concurrent and not self._waiters:
            self._running += 1
            self._admitted += 1
            return
        if len(self._waiters) >= self.max_queued:
            self._rejected += 1
            raise BulkheadFull(
                name=self.name, max_concurrent=self.max_concurrent, max_queued=self.max_queued
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        self._admitted += 1

    def release(self) -> None:
        """Give back a slot taken by `acquire`: to the next waiter, else to the pool.

        Raises:
            RuntimeError: if no slot is taken.
        """
        if self._running == 0:
            raise RuntimeError(f"bulkhead {self.name!r}: release() without acquire()")
        # Handed on only within the bound: after `resize` lowered it, slots above it end.
        while self._waiters and self._running <= self.max_concurrent:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._running -= 1

    def resize(self, *, max_concurrent: int, max_queued: int) -> None:
        """Take new bounds in place, for the callers holding this bulkhead: raised, queued
        callers are let in at once; lowered, running calls finish and the next ones wait
        until fewer than the new bound run. A queue longer than `max_queued` keeps its
        callers (only new ones are refused).

        Raises:
            ValueError: as the constructor does (nothing changes).
        """
        _check_bounds(max_concurrent, max_queued)
        self.max_concurrent, self.max_queued = max_concurrent, max_queued
        while self._waiters and self._running < max_concurrent:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._running += 1
                waiter.set_result(None)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await `fn()` holding a slot.

        Raises:
            BulkheadFull: if no slot or queue place is free; `fn` is not called.
        """
        await self.acquire()
        try:
            return await fn()
        finally:
            self.release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def statistics(self) -> BulkheadStatistics:
        """A snapshot of slots and counters."""
        return BulkheadStatistics(
            name=self.name,
            max_concurrent=self.max_concurrent,
            max_queued=self.max_queued,
            running=self._running,
            queued=sum(1 for waiter in self._waiters if not waiter.done()),
            admitted=self._admitted,
            rejected=self._rejected,
        )

    def __repr__(self) -> str:
        return (
            f"Bulkhead({self.name!r}, running={self._running}/{self.max_concurrent}, "
            f"queued={len(self._waiters)}/{self.max_queued})"
        )


def _check_bounds(max_concurrent: int, max_queued: int) -> None:
    if max_concurrent < 1:
        raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent!r}")
    if max_queued < 0:
        raise ValueError(f"max_queued must be >= 0, got {max_queued!r}")
