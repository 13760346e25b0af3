"""Actors: typed handlers over a bounded mailbox, one asyncio task per actor.

Contract:

- Subclass `Actor`; mark methods `@handler`. A handler takes one message and
  is keyed by its annotated message class (a `Call[R]` or `Cast` subclass);
  the table is built once per class. Handlers may be `async def` or plain `def`
  (plain is cheaper). Messages are handled one at a time, in arrival order.
- `ActorRef` names one incarnation and comes only from the runtime
  (`Runtime.spawn`, a supervisor's `start_child`). `await ref.call(msg,
  timeout=5.0)` returns the handler's reply; `await ref.cast(msg)` returns once
  the message is queued (waiting while a back-pressure mailbox is full, raising
  `MailboxFull` under "fail_fast"); `ref.cast_nowait(msg)` never waits. A
  message type the actor has no handler for raises `TypeError` at the sender.
  A call to a dead actor raises `ActorExited` at once; a call that gets no
  reply in time raises `CallTimeout` (the callee may still act on it).
- A handler's exception crashes only its actor: an `actor.crashed` report is
  made (a log line and an event, written just after the exit), every pending
  caller (queued, in progress or deferred) gets `ActorExited` immediately,
  deferred tasks are cancelled, then `terminate(reason)` runs. `terminate`
  runs on every stop except a kill.
- As in OTP, an actor is alive until `terminate` returns (and the tasks it
  owned have unwound): `ref.alive` holds, its status is "stopping", its names
  stay taken (`whereis` finds it; a supervisor's restart registers them only
  afterwards), a monitor or link set meanwhile brings `Down`/`Exit` with the
  real reason, and a call made meanwhile waits, then raises `ActorExited` with
  it. Casts made meanwhile are dropped; inline calls and `spawn_task` raise
  `ActorExited` at once; `ref.exit_reason` is None until it is dead.
- A Call handler may `return self.defer(coro)`: the actor owns the task, whose
  result (or exception) becomes the reply, so one actor serves many calls at
  once. At most `max_in_flight` deferred tasks run; further deferrals wait for
  a slot, which holds back the mailbox (back-pressure).
- An `async def` Call handler marked `@handler(inline=True)` runs in the
  caller's task instead: it never waits in the mailbox and runs alongside the
  actor's other work, as a deferred reply does, without the task hop, for an
  actor whose calls mostly wait on I/O (an LM provider). Its exception is
  raised at the caller only; the caller's cancellation or timeout cancels the
  work itself; the incarnation's death ends every inline call in progress with
  `ActorExited` at once. A call made while the actor is starting waits for
  `started()` (the timeout counts); one made while it stops raises
  `ActorExited`. Inline calls count in `statistics().in_flight` but not
  against `max_in_flight` (bound them inside, with a `Bulkhead`); the
  handler's log lines name its caller's actor, not this one.
- A Call handler may `return ErrorReply(exc)` to make the caller raise `exc`
  while the actor keeps running.
- `self.spawn_task(coro)` runs a task the actor owns (cancelled when it dies;
  an exception in it crashes the actor).
- `ref.stop(reason)` stops after the current handler: queued callers get
  `ActorExited`, `terminate` runs, and after `timeout` the actor is killed
  (its exit reason is then "killed", whatever stop reason was asked).
  `self.stop(reason)` does the same from inside. `await ref.wait_exit()`
  returns the exit reason once the exit is fully handled.
- `link(ref)`: when either dies abnormally the other stops with the same
  reason, unless it has `trap_exits = True`, in which case it gets an `Exit`
  message. It stops as `stop` does: after its current handler, running
  `terminate` (OTP's exit signal kills a non-trapping process at once; a
  handler here is not interrupted, so one stuck in an await keeps it alive).
  `monitor(ref)` delivers `Down(ref, reason)` when `ref` exits;
  `demonitor(ref, flush=True)` also drops a `Down` already queued. A
  Down/Exit for an actor with no handler for it is reported and dropped. As
  in OTP, an actor's links and the monitors it holds die with it.
- Exit reasons: "normal", "shutdown", `Shutdown(detail)`, "killed" (cancelled)
  or the exception; only exceptions are reported as crashes.
- The caller's correlation scope travels with each message, so a handler (and
  the tasks it defers to) runs under the caller's correlation id.
- Class attributes (override per class, or per instance in `__init__`):
  `mailbox_capacity` (1000), `mailbox_policy` ("backpressure"),
  `max_in_flight` (64), `trap_exits` (False).
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import typing
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar, final, overload

from lmvisor.runtime._inline import finish_inline, inline_ended, start_inline
from lmvisor.runtime.correlation import _scope as _correlation_var
from lmvisor.runtime.errors import ActorExited, CalledSelf, CallTimeout
from lmvisor.runtime.mailbox import MailboxPolicy, MailboxStatistics
from lmvisor.runtime.messages import (
    Call,
    Cast,
)

if TYPE_CHECKING:
    from lmvisor.runtime._process import _Process
    from lmvisor.runtime.runtime import Runtime

__all__ = [
    "Actor",
    "ActorRef",
    "ActorStatistics",
    "ActorStatus",
    "ChildStatistics",
    "Deferred",
    "ErrorReply",
    "handler",
]

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

_HANDLER_MARK = "__lmvisor_handler__"
# How a handler runs, the second item of its table entry: whether the message loop
# awaits it (any truthy kind), and `_INLINE` for one `ActorRef.call` runs in the caller's task.
_SYNC: Final = False
_ASYNC: Final = True
_INLINE: Final = 2
_Entry = tuple[Callable[..., Any], int]


class ActorStatus(enum.Enum):
    """Where an actor is in its life: starting -> running -> stopping -> dead."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    DEAD = "dead"


# Read on every call: on 3.11 a class attribute of an Enum goes through the metaclass's
# `__getattr__` hook (~100 ns a read), a module constant is a dict hit (~10 ns).
_STARTING: Final = ActorStatus.STARTING
_RUNNING: Final = ActorStatus.RUNNING
_STOPPING: Final = ActorStatus.STOPPING
_DEAD: Final = ActorStatus.DEAD


@final
class Deferred(Generic[R]):
    """A reply handed to a task the actor owns; build it with `Actor.defer`."""

    __slots__ = ("coro", "with_caller")

    def __init__(self, coro: Coroutine[Any, Any, R], *, with_caller: bool = False) -> None:
        self.coro = coro
        self.with_caller = with_caller


@final
@dataclass(frozen=True, slots=True)
class ErrorReply:
    """Returned by a Call handler: the caller raises `error`; the actor keeps running."""

    error: BaseException


@final
@dataclass(frozen=True, slots=True)
class ChildStatistics:
    """One child as its supervisor sees it (read by `tree()`)."""

    id: str
    ref: ActorRef | None
    type: str
    restart: str
    status: str
    restarts: int
    last_reason: object


@final
@dataclass(frozen=True, slots=True)
class ActorStatistics:
    """A snapshot of one actor: status, mailbox, deferred work, and children if it supervises."""

    name: str
    actor_type: str
    status: ActorStatus
    mailbox: MailboxStatistics
    handled: int
    in_flight: int
    exit_reason: object
    children: tuple[ChildStatistics, ...] | None


@overload
def handler(fn: F, /) -> F: ...


@overload
def handler(*, inline: bool = False) -> Callable[[F], F]: ...


def handler(fn: F | None = None, /, *, inline: bool = False) -> F | Callable[[F], F]:
    """Mark an actor method as the handler of the message class its argument is annotated with.

    Used bare (`@handler`) or as `@handler(inline=True)`: an `async def` handler of
    a `Call` that runs in the caller's task (see the module docstring). The class
    statement raises `TypeError` for an inline handler that is not both.
    """

    def mark(method: F) -> F:
        setattr(method, _HANDLER_MARK, _INLINE if inline else True)
        return method

    return mark if fn is None else mark(fn)


def _message_type(cls: type, name: str, fn: Callable[..., Any]) -> type:
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 2:
        raise TypeError(f"handler {cls.__name__}.{name} must take exactly one message")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        raise TypeError(
            f"handler {cls.__name__}.{name}: cannot resolve its message annotation ({exc})"
        ) from exc
    msg_type = hints.get(params[1].name)
    if not (isinstance(msg_type, type) and issubclass(msg_type, Call | Cast)):
        raise TypeError(
            f"handler {cls.__name__}.{name}: its message must be annotated with a "
            f"Call or Cast subclass, got {msg_type!r}"
        )
    return msg_type


def _build_handlers(cls: type) -> dict[type, _Entry]:
    table: dict[type, _Entry] = {}
    for klass in reversed(cls.__mro__):
        own: dict[type, str] = {}
        for name, fn in vars(klass).items():
            if not getattr(fn, _HANDLER_MARK, False):
                continue
            msg_type = _message_type(klass, name, fn)
            if msg_type in own:
                raise TypeError(
                    f"{klass.__name__} has two handlers for {msg_type.__qualname__}: "
                    f"{own[msg_type]} and {name}"
                )
            own[msg_type] = name
            table[msg_type] = (fn, _handler_kind(klass, name, fn, msg_type))
    return table


def _handler_kind(cls: type, name: str, fn: Callable[..., Any], msg_type: type) -> int:
    is_async = inspect.iscoroutinefunction(fn)
    if getattr(fn, _HANDLER_MARK) != _INLINE:
        return _ASYNC if is_async else _SYNC
    if not is_async or not issubclass(msg_type, Call):
        raise TypeError(
            f"inline handler {cls.__name__}.{name} must be an async def handling a Call"
        )
    return _INLINE


class Actor:
    """Base class of every actor; see the module docstring for the contract."""

    mailbox_capacity: int = 1000
    mailbox_policy: MailboxPolicy = "backpressure"
    max_in_flight: int = 64
    trap_exits: bool = False

    # the runtime's link to the actor is a slot, so an actor without state of its
    # own needs no instance dict (an idle actor stays small)
    __slots__ = ("__dict__", "__weakref__", "_lmv_process")

    _handlers: ClassVar[dict[type, _Entry]] = {}
    _lmv_process: _Process | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handlers = _build_handlers(cls)

    async def started(self) -> None:
        """Runs before the first message; the starter waits for it. Raising fails the start."""

    async def terminate(self, reason: object) -> None:
        """Runs once on every stop (crash and supervisor shutdown included), not on a kill."""

    def format_status(self) -> object:
        """The state shown in crash reports; override to redact. Default: public attributes."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    @property
    def _process(self) -> _Process:
        proc = self._running_process
        if proc is None:
            raise RuntimeError(f"{type(self).__qualname__} is not running under a runtime")
        return proc

    @property
    def _running_process(self) -> _Process | None:
        try:
            return self._lmv_process
        except AttributeError:
            return None

    @property
    def ref(self) -> ActorRef:
        """This incarnation's reference.

        Raises:
            RuntimeError: before the actor is spawned (e.g. inside `__init__`).
        """
        return self._process.ref

    @property
    def runtime(self) -> Runtime:
        """The runtime (namespace) this actor runs in."""
        return self._process.runtime

    def defer(self, coro: Coroutine[Any, Any, R], *, with_caller: bool = False) -> Deferred[R]:
        """Hand the reply to a task this actor owns; return the result from a Call handler.

        As in OTP, the task runs on when its caller stops waiting (a `CallTimeout`, or the
        caller cancelled): its reply is dropped. With `with_caller=True` the task is
        cancelled then instead, for work whose only purpose is that caller's answer and
        that must not take effect once the caller has given up on it (the caller would
        retry and it would happen twice).
        """
        return Deferred(coro, with_caller=with_caller)

    def spawn_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` as a task this actor owns.

        The task is cancelled when the actor dies; if it raises, the actor
        crashes with that exception. It counts toward `max_in_flight`.

        Raises:
            ActorExited: the actor is dead.
        """
        return self._process.own_task(coro)

    def stop(self, reason: object = "normal") -> None:
        """Ask this actor to stop once the current handler returns."""
        self._process.request_stop(reason)

    def link(self, ref: ActorRef) -> None:
        """Link to `ref`; linking to a dead actor delivers its exit ("noproc") at once."""
        self._process.link(ref._proc)

    def unlink(self, ref: ActorRef) -> None:
        """Remove a link made by either side; no-op if there is none."""
        self._process.unlink(ref._proc)

    def monitor(self, ref: ActorRef) -> None:
        """Receive `Down(ref, reason)` when `ref` exits (at once, "noproc", if it is dead).

        There are no monitor references: monitoring `ref` twice still brings
        one `Down`, and it takes two `demonitor` calls to stop it.
        """
        self._process.monitor(ref._proc)

    def demonitor(self, ref: ActorRef, *, flush: bool = False) -> None:
        """Stop monitoring `ref` (once per `monitor` call).

        A `Down` for `ref` already queued is still delivered, unless `flush`
        is set: then it is removed, as OTP's ``demonitor(Ref, [flush])`` does.
        Monitoring `ref` more than once brings one `Down` for all of them (there
        are no monitor references), so a flush removes it whatever the count.
        """
        self._process.demonitor(ref._proc, flush=flush)

    def _child_statistics(self) -> tuple[ChildStatistics, ...] | None:
        return None


async def _until_running(proc: _Process, msg: object, timeout: float | None) -> float | None:  # noqa: ASYNC109 (counts against the call's timeout)
    """Before an inline call: wait out `started()`; what is left of `timeout` after it.

    Raises:
        CallTimeout: `started()` outlasted the timeout.
        ActorExited: the incarnation is not serving (its start failed, or it stops).
        CalledSelf: called from the actor's own `started()`.
    """
    ready = proc.ready
    if proc.status is ActorStatus.STARTING and ready is not None:
        if proc.task is asyncio.current_task():
            # its own started(): `ready` waits for this very call (OTP's calling_self)
            raise CalledSelf(actor=proc.name, message_type=type(msg).__qualname__)
        loop = proc._loop
        began = loop.time()
        try:
            await asyncio.wait_for(asyncio.shield(ready), timeout)
        except TimeoutError:
            raise CallTimeout(
                actor=proc.name, message_type=type(msg).__qualname__, timeout=timeout or 0.0
            ) from None
        except Exception:  # a failed start: the status below says so
            pass
        if timeout is not None:
            timeout = max(0.0, timeout - (loop.time() - began))
    if proc.status is not _RUNNING:
        reason = proc.exit_reason if proc.status is _DEAD else proc.stop_reason
        raise ActorExited(actor=proc.name, reason=reason)
    return timeout


async def _call_by_mailbox(proc: _Process, msg: Call[R], timeout: float | None) -> R:  # noqa: ASYNC109 (the call's)
    """A call through the mailbox: queue the message with a reply future, then wait for
    the reply under a loop timer (not a timeout scope: one timer handle per call)."""
    loop = proc._loop
    fut: asyncio.Future[R] = loop.create_future()
    item = (msg, fut, _correlation_var.get())
    if len(proc._queue) < proc._capacity or proc.policy_fails_fast:
        proc.put_nowait(item)
    elif timeout is None:
        await proc.put(item)
    else:
        return await _call_when_full(proc, msg, item, fut, timeout)
    if timeout is None:
        return await fut
    # The runtime's context, not a copy of the caller's (`_expire` reads no variable).
    timer = loop.call_later(
        timeout, _expire, fut, proc, msg, timeout, context=proc.runtime._context
    )
    try:
        return await fut
    finally:
        timer.cancel()


async def _call_when_full(
    proc: _Process,
    msg: object,
    item: object,
    fut: asyncio.Future[R],
    timeout: float,  # noqa: ASYNC109 (the call's)
) -> R:
    """A call whose message waits for room in a full mailbox: the wait counts against the
    timeout, so the caller never waits past it."""
    loop = proc._loop
    deadline = loop.time() + timeout
    try:
        async with asyncio.timeout_at(deadline):
            await proc.put(item)
    except TimeoutError:
        raise CallTimeout(
            actor=proc.name, message_type=type(msg).__qualname__, timeout=timeout
        ) from None
    timer = loop.call_at(deadline, _expire, fut, proc, msg, timeout, context=proc.runtime._context)
    try:
        return await fut
    finally:
        timer.cancel()


def _expire(fut: asyncio.Future[Any], proc: _Process, msg: object, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(
            CallTimeout(actor=proc.name, message_type=type(msg).__qualname__, timeout=timeout)
        )


@final
class ActorRef:
    """One incarnation of an actor, like an Erlang pid; compares by identity.

    Obtained only from the runtime; a restarted actor has a new, unequal ref.
    """

    __slots__ = ("_proc",)

    def __init__(self, proc: _Process) -> None:
        self._proc = proc

    @property
    def name(self) -> str:
        """A readable id, unique within the runtime: ``ClassName<n>``."""
        return self._proc.name

    @property
    def alive(self) -> bool:
        """True until the actor has died, i.e. until its `terminate` has returned (as in OTP)."""
        return self._proc.status is not _DEAD

    @property
    def exit_reason(self) -> object:
        """The exit reason once dead, else None (also while `terminate` runs)."""
        proc = self._proc
        return proc.exit_reason if proc.status is _DEAD else None

    def statistics(self) -> ActorStatistics:
        """A snapshot of status, mailbox and in-flight work (sync; never waits)."""
        return self._proc.actor_statistics()

    async def wait_exit(self) -> object:
        """Wait until the actor has exited and finished `terminate`; return its exit reason.

        Returns at once for an actor already gone. Cancelling the waiter does
        not affect the actor.
        """
        proc = self._proc
        if proc.task is not None and not proc.notified:
            await proc.exit_future()
        return proc.exit_reason

    async def call(self, msg: Call[R], timeout: float | None = 5.0) -> R:  # noqa: ASYNC109 (DESIGN: call_later timers)
        """Send `msg` and wait for the reply.

        Args:
            msg: the request.
            timeout: seconds to wait for the reply, None for no limit (0 or
                less: the reply must already be due, as with `asyncio.wait_for`).

        Raises:
            ValueError: `timeout` is NaN (checked before anything is sent).
            TypeError: the actor has no handler for ``type(msg)``.
            ActorExited: the actor is dead, or died before replying.
            CallTimeout: no reply within `timeout`; the actor may still handle it.
            MailboxFull: the mailbox is full and its policy is "fail_fast".
            CalledSelf: an actor called itself (it would wait forever), for a
                handler that is not inline, or for any handler from `started()`
                (a `RuntimeError` too).

        Cancellation abandons the reply; the actor may still handle the message.
        An inline handler's work is cancelled instead, on a timeout too.
        """
        if timeout != timeout:  # only NaN is unequal to itself; a timer would never fire
            raise ValueError(f"call timeout must be seconds or None, got {timeout!r}")
        proc = self._proc
        if proc.status is _DEAD:
            raise ActorExited(actor=proc.name, reason=proc.exit_reason)
        entry = proc.handlers.get(type(msg))
        if entry is None:
            raise proc.rejection(msg)
        if entry[1] == _INLINE:
            # In this task, the inline call's own frame (see `_inline`): no frame of a helper.
            wait = timeout
            if proc.status is not _RUNNING:
                wait = await _until_running(proc, msg, timeout)
            call = start_inline(proc, wait)
            try:
                result: R = await entry[0](proc.actor, msg)
            except BaseException as exc:
                ended = inline_ended(proc, call, exc, msg, timeout) if call.state else None
                if ended is not None:
                    raise ended from None
                raise
            else:
                if call.state:
                    call.task.uncancel()  # the handler swallowed our cancellation, answered
                return result
            finally:
                finish_inline(proc, call)
        if proc.task is asyncio.current_task():
            raise CalledSelf(actor=proc.name, message_type=type(msg).__qualname__)
        return await _call_by_mailbox(proc, msg, timeout)

    async def cast(self, msg: Cast) -> None:
        """Queue `msg`; wait for room if the mailbox is full under "backpressure".

        Raises:
            TypeError: the actor has no handler for ``type(msg)``.
            ActorExited: the actor is dead (or died while the sender waited).
            MailboxFull: the mailbox is full and its policy is "fail_fast".
        """
        proc = self._proc
        if proc.status is _DEAD:
            raise ActorExited(actor=proc.name, reason=proc.exit_reason)
        if type(msg) not in proc.handlers:
            raise proc.rejection(msg)
        scope = _correlation_var.get()
        item = msg if scope is None else (msg, None, scope)
        if len(proc._queue) < proc._capacity or proc.policy_fails_fast:
            proc.put_nowait(item)
        else:
            await proc.put(item)

    def cast_nowait(self, msg: Cast) -> None:
        """Queue `msg` without waiting.

        Raises:
            TypeError: the actor has no handler for ``type(msg)``.
            ActorExited: the actor is dead.
            MailboxFull: the mailbox is full (whatever the policy).
        """
        proc = self._proc
        if proc.status is _DEAD:
            raise ActorExited(actor=proc.name, reason=proc.exit_reason)
        if type(msg) not in proc.handlers:
            raise proc.rejection(msg)
        scope = _correlation_var.get()
        proc.put_nowait(msg if scope is None else (msg, None, scope))

    async def stop(self, reason: object = "normal", *, timeout: float | None = 5.0) -> None:  # noqa: ASYNC109 (DESIGN: call_later timers)
        """Stop the actor and wait until it has finished `terminate`.

        Queued and pending callers get `ActorExited`. If it is not done within
        `timeout` seconds it is killed (cancelled). A no-op on a dead actor.
        From inside the actor itself, it only requests the stop and returns.
        """
        proc = self._proc
        proc.request_stop(reason)
        if proc.task is not asyncio.current_task():
            await proc.wait_done(timeout)

    def __repr__(self) -> str:
        return f"<ActorRef {self._proc.name} {self._proc.status.value}>"
