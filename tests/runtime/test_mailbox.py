"""Tests for lmvisor.runtime.mailbox: capacity, policies, waiting senders, close."""

from __future__ import annotations

import asyncio

import pytest

from lmvisor.runtime.errors import ActorExited, MailboxFull
from lmvisor.runtime.mailbox import Mailbox, MailboxStatistics


def _mailbox(capacity: int = 2) -> Mailbox:
    return Mailbox(
        "A<1>", capacity=capacity, policy="backpressure", loop=asyncio.get_running_loop()
    )


class TestMailbox:
    async def test_put_nowait_until_full(self) -> None:
        """put_nowait appends until capacity, then raises MailboxFull."""
        box = _mailbox()
        box.put_nowait("a")
        box.put_nowait("b")
        with pytest.raises(MailboxFull, match=r"^mailbox of A<1> is full \(capacity 2\)$"):
            box.put_nowait("c")
        assert box.statistics() == MailboxStatistics(
            capacity=2, depth=2, policy="backpressure", received=2, waiting_senders=0
        )

    async def test_put_waits_for_room(self) -> None:
        """put parks while full and proceeds when the receiver takes an item."""
        box = _mailbox(1)
        box.put_nowait("a")
        sender = asyncio.ensure_future(box.put("b"))
        await asyncio.sleep(0)
        assert not sender.done()
        assert box.statistics().waiting_senders == 1
        box._queue.popleft()
        box._wake_putter()
        await sender
        assert list(box._queue) == ["b"]

    async def test_close_fails_waiting_senders_and_returns_items(self) -> None:
        """close() returns queued items and fails parked senders with ActorExited."""
        box = _mailbox(1)
        box.put_nowait("a")
        sender = asyncio.ensure_future(box.put("b"))
        await asyncio.sleep(0)
        assert box.close("crash") == ["a"]
        with pytest.raises(ActorExited):
            await sender
        with pytest.raises(ActorExited):
            await box.put("c")
        assert box.closed

    async def test_park_wakes_on_put(self) -> None:
        """A parked receiver wakes when an item arrives, including system items past capacity."""
        box = _mailbox(1)
        box.put_nowait("x")
        receiver = asyncio.ensure_future(box.park())
        await asyncio.sleep(0)
        box.put_system("sys")
        await receiver
        assert list(box._queue) == ["x", "sys"]

    async def test_first_item_of_either_kind_starts_the_queue(self) -> None:
        """A mailbox that never held an item closes empty; its first item, a system one
        or not, is queued, and later items queue behind it."""
        assert _mailbox().close("shutdown") == []
        for first in ("system", "message"):
            box = _mailbox(1)
            assert box.statistics().depth == 0
            if first == "system":
                box.put_system(first)
            else:
                box.put_nowait(first)
            box.put_system("next")
            assert list(box._queue) == [first, "next"]
            assert box.close("shutdown") == [first, "next"]
            assert box.statistics().depth == 0

    async def test_invalid_options(self) -> None:
        """Bad capacity or policy raise ValueError naming the option."""
        loop = asyncio.get_running_loop()
        with pytest.raises(ValueError, match=r"^mailbox_capacity must be an int >= 1, got 0$"):
            Mailbox("a", capacity=0, policy="backpressure", loop=loop)
        with pytest.raises(ValueError, match=r"^mailbox_policy must be 'backpressure' or"):
            Mailbox("a", capacity=1, policy="drop", loop=loop)  # type: ignore[arg-type]
