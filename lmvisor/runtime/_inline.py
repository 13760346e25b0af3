"""Inline calls: an actor's `@handler(inline=True)` run in the caller's own task.

A deferred reply costs a task, a reply future and two loop turns per call; for
an actor whose calls mostly wait on I/O (an LM provider) that hop is most of
its CPU. An inline call skips it: `ActorRef.call` awaits the handler directly,
in the caller's task (between `start_inline` and `finish_inline`, in its own
frame: no helper coroutine), so the caller's cancellation or timeout cancels
the work itself. The incarnation keeps a record (`InlineCall`) of each call in
progress, so that its death can end every one of them at once with
`ActorExited`, as it fails its queued and deferred callers.

Ending a call from outside is a cancellation of the caller's task that this
module takes back (`Task.uncancel`) and turns into the typed error, the way
`asyncio.timeout` turns its own cancellation into `TimeoutError`; a
cancellation someone else asked for at the same time still propagates.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final, final

from lmvisor.runtime.errors import ActorExited, CallTimeout

if TYPE_CHECKING:
    from lmvisor.runtime._process import _Process

__all__: list[str] = []

_RUNNING: Final = 0
_TIMED_OUT: Final = 1
_EXITED: Final = 2


@final
class InlineCall:
    """One inline call in progress: the caller's task, its timer, how the call was ended.

    `state` is falsy while the call runs; `cancelling` is the task's count of
    cancellation requests when the call began (see `inline_ended`).
    """

    __slots__ = ("cancelling", "reason", "state", "task", "timer")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelling = task.cancelling()
        self.state = _RUNNING
        self.reason: object = None
        self.timer: asyncio.TimerHandle | None = None

    def expire(self) -> None:
        """The caller's timeout passed: cancel the work (a no-op once ended)."""
        if self.state == _RUNNING:
            self.state = _TIMED_OUT
            self.task.cancel()

    def end(self, reason: object) -> None:
        """The incarnation died: cancel the work, to be raised as `ActorExited`."""
        if self.state == _RUNNING:
            self.state = _EXITED
            self.reason = reason
            self.task.cancel()


def start_inline(proc: _Process, wait: float | None) -> InlineCall:
    """Record an inline call of the current task on `proc`'s incarnation, timed by `wait`.

    Raises:
        RuntimeError: not called from a task.
    """
    task = asyncio.current_task(proc._loop)
    if task is None:
        raise RuntimeError("an inline call must be awaited in a task")
    call = InlineCall(task)
    calls = proc.inline
    if calls is None:
        calls = proc.inline = {}
    calls[call] = None
    if wait is not None:
        loop = proc._loop
        # The runtime's context, not a copy of the caller's: `expire` reads no context variable.
        call.timer = loop.call_at(loop.time() + wait, call.expire, context=proc.runtime._context)
    return call


def inline_ended(
    proc: _Process,
    call: InlineCall,
    exc: BaseException,
    msg: object,
    timeout: float | None,
) -> Exception | None:
    """The typed error for a call this module ended (its timer, the incarnation's death).

    Takes back the cancellation it asked for; None when `exc` is not that cancellation
    (another was asked for meanwhile, or the handler raised something else): raise `exc`.
    """
    if call.task.uncancel() > call.cancelling or not isinstance(exc, asyncio.CancelledError):
        return None
    if call.state == _TIMED_OUT:
        assert timeout is not None
        return CallTimeout(actor=proc.name, message_type=type(msg).__qualname__, timeout=timeout)
    return ActorExited(actor=proc.name, reason=call.reason)


def finish_inline(proc: _Process, call: InlineCall) -> None:
    """Forget an inline call however it ended."""
    if call.timer is not None:
        call.timer.cancel()
    if proc.inline is not None:
        proc.inline.pop(call, None)
    proc.handled += 1


def end_inline_calls(calls: dict[InlineCall, None], reason: object) -> None:
    """End every inline call of a dead incarnation with `ActorExited(reason)`."""
    for call in list(calls):
        call.end(reason)
