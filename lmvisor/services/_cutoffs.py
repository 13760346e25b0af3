"""`ExecutionCutoffs`: cancels module executions that outlive their deadline, with one loop
timer for all of them instead of a timer scheduled and cancelled per execution."""

from __future__ import annotations

import asyncio
import math
from typing import Any, final

__all__ = ["ExecutionCutoffs"]


@final
class ExecutionCutoffs:
    """Cancels each watched execution task at its cutoff, with one loop timer for them all.

    The timer is armed for the earliest cutoff that was ever the earliest; when it fires,
    the tasks past their cutoff are cancelled and it is armed again for the earliest of the
    rest. A task that ends first is only forgotten: per execution, a dict entry instead of
    a timer scheduled and cancelled (most executions end long before their deadline).
    """

    __slots__ = ("_armed", "_loop", "_tasks", "_timer")

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[Any], float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed = math.inf  # the timer's time; inf: no timer
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, task: asyncio.Task[Any], cutoff: float) -> None:
        """Cancel `task` at `cutoff` (loop time) unless it is forgotten first."""
        self._tasks[task] = cutoff
        if cutoff < self._armed:
            self._arm(cutoff)

    def forget(self, task: asyncio.Task[Any]) -> None:
        """Stop watching `task` (ended, or its caller gave up on it)."""
        self._tasks.pop(task, None)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = self._loop = asyncio.get_running_loop()
        self._armed = at
        self._timer = loop.call_at(at, self._expire)

    def _expire(self) -> None:
        self._timer, self._armed = None, math.inf
        assert self._loop is not None
        now = self._loop.time()
        earliest = math.inf
        for task, cutoff in list(self._tasks.items()):
            if cutoff <= now:
                del self._tasks[task]
                task.cancel()
            elif cutoff < earliest:
                earliest = cutoff
        if earliest < math.inf:
            self._arm(earliest)
