"""Inline calls: an actor's `@handler(inline=True)` run in the caller's own task.

A deferred reply costs a task, a reply future and two loop turns per call; for
an actor whose calls mostly wait on I/O (an LM provider) that hop is most of
its CPU. An inline call skips it: `ActorRef.call` awaits the handler directly,
in the caller's task, so the caller's cancellation or timeout cancels the work
itself. The incarnation keeps a record (`InlineCall`) of each call in progress,
so that its death can end every one of them at once with `ActorExited`, as it
fails its queued and deferred callers.

Ending a call from outside is a cancellation of the caller's task that this
module takes back (`Task.uncancel`) and turns into the typed error, the way
`asyncio.timeout` turns its own cancellation into `TimeoutError`; a
cancellation someone else asked for at the same time still propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
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
    """One inline call in progress: the caller's task and how the call was ended, if it was."""

    __slots__ = ("reason", "state", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.state = _RUNNING
        self.reason: object = None

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


async def call_inline(
    proc: _Process,
    fn: Callable[[Any, Any], Coroutine[Any, Any, Any]],
    msg: object,
    timeout: float | None,  # noqa: ASYNC109 (a timer cancels the work, see InlineCall.expire)
    wait: float | None,
) -> Any:
    """Run `fn(actor, msg)` in the current task on behalf of `proc`'s running incarnation.

    `wait` is what is left of the caller's `timeout` (less, if the call waited for
    `started()`); the error names the caller's own `timeout`.

    Raises:
        ActorExited: the incarnation died during the call.
        CallTimeout: the call outlasted the caller's timeout (its work was cancelled).
        RuntimeError: not called from a task.
        Exception: whatever the handler raised.
    """
    task = asyncio.current_task(proc._loop)
    if task is None:
        raise RuntimeError("an inline call must be awaited in a task")
    call = InlineCall(task)
    calls = proc.inline
    if calls is None:
        calls = proc.inline = {}
    calls[call] = None
    cancelling = task.cancelling()
    timer = None
    if wait is not None:
        loop = proc._loop
        # The runtime's context, not a copy of the caller's: `expire` reads no context variable.
        timer = loop.call_at(loop.time() + wait, call.expire, context=proc.runtime._context)
    try:
        result = await fn(proc.actor, msg)
    except BaseException as exc:
        if call.state == _RUNNING:
            raise
        # Ours was a cancellation: take it back; raise the typed error unless another
        # cancellation was asked for meanwhile.
        if task.uncancel() <= cancelling and isinstance(exc, asyncio.CancelledError):
            raise _ended(proc, call, msg, timeout) from None
        raise
    else:
        if call.state != _RUNNING:
            task.uncancel()  # the handler swallowed our cancellation and answered anyway
        return result
    finally:
        if timer is not None:
            timer.cancel()
        del calls[call]
        proc.handled += 1


def _ended(proc: _Process, call: InlineCall, msg: object, timeout: float | None) -> Exception:
    if call.state == _TIMED_OUT:
        assert timeout is not None
        return CallTimeout(actor=proc.name, message_type=type(msg).__qualname__, timeout=timeout)
    return ActorExited(actor=proc.name, reason=call.reason)


def end_inline_calls(calls: dict[InlineCall, None], reason: object) -> None:
    """End every inline call of a dead incarnation with `ActorExited(reason)`."""
    for call in list(calls):
        call.end(reason)
