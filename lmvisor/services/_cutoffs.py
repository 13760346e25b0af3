"""`ExecutionCutoffs`: cancels module executions that outlive their deadline, with one loop
timer for all of them instead of a timer scheduled and cancelled per execution."""

from __future__ import annotations

import asyncio
import heapq
import math
from typing import Any, Final, final

__all__ = ["ExecutionCutoffs"]

_STEP: Final = 0.05
"""Cutoffs are kept in slots of this many seconds: a task is cancelled at the end of its
cutoff's slot, at most this much after the cutoff itself."""
_NEVER: Final = 1e12
"""A cutoff this far off (loop time, some 30,000 years) is not watched: the task runs
unbounded, as with no deadline (an infinite one made the slot number overflow)."""
_STALE_LIMIT: Final = 64
"""Heap entries of emptied slots allowed beyond twice the live slots before the heap is
rebuilt from the live ones (amortized: each rebuild follows as many forgets)."""


@final
class ExecutionCutoffs:
    """Cancels each watched execution task at its cutoff, with one loop timer for them all.

    Watched tasks sit in slots of `_STEP` seconds. The timer is armed for the earliest
    slot; when it fires, the slots that are due are emptied (their tasks cancelled) and
    it is armed for the next one. A task that ends first is only taken out of its slot:
    per execution, two dict entries instead of a timer scheduled and cancelled (most
    executions end long before their deadline), and a firing costs the slots that are
    due, however many executions are in flight. A slot goes with its last task, so what
    is kept grows with the executions in flight, never with their timeouts.
    """

    __slots__ = ("_armed", "_due", "_recent", "_slot_of", "_slots", "_timer")

    def __init__(self) -> None:
        self._slot_of: dict[asyncio.Task[Any], int] = {}
        self._slots: dict[int, set[asyncio.Task[Any]]] = {}
        self._due: list[int] = []  # heap of the slots' numbers (and of some emptied ones)
        self._timer: asyncio.TimerHandle | None = None
        self._armed = math.inf  # the slot the timer is set for; inf: no timer
        self._recent = 0  # the slot of the latest watch: kept when emptied, for the next

    def watch(self, task: asyncio.Task[Any], cutoff: float) -> None:
        """Cancel `task` at `cutoff` (loop time, or up to `_STEP` later) unless forgotten first."""
        if not cutoff < _NEVER:
            return
        slot = math.ceil(cutoff / _STEP)
        if slot != self._recent:
            recent, self._recent = self._recent, slot
            if not self._slots.get(recent, True):
                self._drop(recent)
        tasks = self._slots.get(slot)
        if tasks is None:
            tasks = self._slots[slot] = set()
            heapq.heappush(self._due, slot)
            if slot < self._armed:
                self._arm(slot)
        tasks.add(task)
        self._slot_of[task] = slot

    def forget(self, task: asyncio.Task[Any]) -> None:
        """Stop watching `task` (ended, or its caller gave up on it)."""
        slot = self._slot_of.pop(task, None)
        if slot is None:
            return
        tasks = self._slots[slot]
        tasks.discard(task)
        # An emptied slot goes (its heap entry left stale): kept until due, every
        # execution's slot outlived it by its whole timeout (a daemon held an hour of empty
        # slots under `timeout: 3600`). But for the latest watch's slot: executions that
        # follow one another within 50 ms share it, with no new set and heap entry each;
        # it goes when a watch lands in another slot.
        if not tasks and slot != self._recent:
            self._drop(slot)

    def _drop(self, slot: int) -> None:
        del self._slots[slot]
        if len(self._due) > 2 * len(self._slots) + _STALE_LIMIT:
            self._due = sorted(self._slots)  # a sorted list is a heap

    def _arm(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = slot
        self._timer = asyncio.get_running_loop().call_at(slot * _STEP, self._expire)

    def _expire(self) -> None:
        self._timer, self._armed = None, math.inf
        now = asyncio.get_running_loop().time()
        due = self._due
        while due and due[0] * _STEP <= now:
            for task in self._slots.pop(heapq.heappop(due), ()):
                del self._slot_of[task]
                task.cancel()
        if due:
            self._arm(due[0])
