"""An actor's bounded mailbox: one deque, one parked receiver future, waiting senders.

Senders never yield while there is room: `put_nowait` appends and wakes the
receiver's parked future. When the mailbox is full, `put` parks the sender
until the receiver takes a message (back-pressure) and `put_nowait` raises
`MailboxFull` (fail fast); the owning actor's `mailbox_policy` picks which one
`ActorRef.cast` uses. System items (exit notices, Down, Exit) bypass capacity so
a done-callback never has to wait. The deque is made by the first item: until
then the queue is a shared empty tuple, so an idle actor allocates none.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal, final

from lmvisor.runtime.errors import ActorExited, MailboxFull

__all__ = ["Mailbox", "MailboxPolicy", "MailboxStatistics"]

MailboxPolicy = Literal["backpressure", "fail_fast"]

_POLICIES: frozenset[str] = frozenset({"backpressure", "fail_fast"})
_UNUSED: Final[tuple[()]] = ()  # the queue of a mailbox that never held a message


@final
@dataclass(frozen=True, slots=True)
class MailboxStatistics:
    """A snapshot of one mailbox.

    Attributes:
        capacity: the most messages the mailbox holds before senders wait or fail.
        depth: messages waiting to be handled now.
        policy: "backpressure" (a full mailbox makes `cast` wait) or "fail_fast".
        received: messages accepted since the actor started.
        waiting_senders: senders parked on a full mailbox.
    """

    capacity: int
    depth: int
    policy: MailboxPolicy
    received: int
    waiting_senders: int


class Mailbox:
    """A bounded FIFO owned by one actor; only that actor's task receives from it.

    Created by the runtime when an actor is spawned; not constructed by users.
    The runtime's per-actor process subclasses it, so an actor's mailbox costs
    no object of its own (this is the one subclass it is built for).
    `owner` is anything whose ``str()`` names the actor in errors (formatted
    only when an error is raised).
    """

    __slots__ = (
        "_capacity",
        "_closed",
        "_loop",
        "_owner",
        "_policy",
        "_putters",
        "_queue",
        "_received",
        "_waiter",
    )

    def __init__(
        self,
        owner: object,
        *,
        capacity: int,
        policy: MailboxPolicy,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        if type(capacity) is not int or capacity < 1:
            raise ValueError(f"mailbox_capacity must be an int >= 1, got {capacity!r}")
        if policy not in _POLICIES:
            raise ValueError(
                f"mailbox_policy must be 'backpressure' or 'fail_fast', got {policy!r}"
            )
        self._owner = owner
        self._capacity = capacity
        self._policy: MailboxPolicy = policy
        self._loop = loop
        self._queue: deque[object] | tuple[()] = _UNUSED
        self._waiter: asyncio.Future[None] | None = None
        self._putters: deque[asyncio.Future[None]] | None = None
        self._received = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the owner began to exit: a waiting `put` fails with `ActorExited`.

        `put_nowait` still queues (a call made while `terminate()` runs waits in
        it until the owner dies and fails it); `ActorRef` refuses sends once dead.
        """
        return self._closed

    def put_nowait(self, item: object) -> None:
        """Append `item` without waiting.

        Raises:
            MailboxFull: the mailbox holds `capacity` messages.
        """
        queue = self._queue
        if len(queue) >= self._capacity:
            raise MailboxFull(actor=str(self._owner), capacity=self._capacity)
        try:
            queue.append(item)  # type: ignore[union-attr]  # a deque, but at the first message
        except AttributeError:
            self._queue = deque((item,))
        self._received += 1
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def put(self, item: object) -> None:
        """Append `item`, waiting for room while the mailbox is full.

        Cancellation while waiting leaves the mailbox unchanged.

        Raises:
            ActorExited: the owner died while the sender waited for room.
        """
        while len(self._queue) >= self._capacity:
            await self._wait_for_room()
        if self._closed:
            raise ActorExited(actor=str(self._owner), reason="mailbox closed")
        self.put_nowait(item)

    async def _wait_for_room(self) -> None:
        if self._closed:
            raise ActorExited(actor=str(self._owner), reason="mailbox closed")
        if self._putters is None:
            self._putters = deque()
        fut = self._loop.create_future()
        self._putters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut in self._putters:
                self._putters.remove(fut)
            elif not self._closed:
                self._wake_putter()  # pass the slot we were given to the next sender
            raise

    def put_system(self, item: object) -> None:
        """Append an item the runtime must deliver even to a full mailbox."""
        try:
            self._queue.append(item)  # type: ignore[union-attr]  # a deque, but at the first item
        except AttributeError:
            self._queue = deque((item,))
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _wake_putter(self) -> None:
        putters = self._putters
        while putters:
            fut = putters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    async def park(self) -> None:
        """Wait until an item is appended; only the owning actor's task calls this."""
        fut = self._loop.create_future()
        self._waiter = fut
        try:
            await fut
        finally:
            self._waiter = None

    def wake(self) -> None:
        """Wake the parked receiver without an item (a stop request arrived)."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def close(self, reason: object) -> list[object]:
        """Refuse further items, fail waiting senders and return what was queued."""
        self._closed = True
        if self._putters:
            for fut in self._putters:
                if not fut.done():
                    fut.set_exception(ActorExited(actor=str(self._owner), reason=reason))
            self._putters.clear()
        items = list(self._queue)
        self._queue = _UNUSED
        return items

    def statistics(self) -> MailboxStatistics:
        """A snapshot of depth, capacity, policy and counters."""
        putters = self._putters
        return MailboxStatistics(
            capacity=self._capacity,
            depth=len(self._queue),
            policy=self._policy,
            received=self._received,
            waiting_senders=0 if putters is None else sum(1 for f in putters if not f.done()),
        )

    def __repr__(self) -> str:
        return (
            f"<Mailbox of {self._owner} depth={len(self._queue)}/{self._capacity} "
            f"policy={self._policy}{' closed' if self._closed else ''}>"
        )
