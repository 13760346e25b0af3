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
  logged, every pending caller (queued, in progress or deferred) gets
  `ActorExited` immediately, deferred tasks are cancelled, then
  `terminate(reason)` runs. `terminate` runs on every stop except a kill.
- A Call handler may `return self.defer(coro)`: the actor owns the task, whose
  result (or exception) becomes the reply, so one actor serves many calls at
  once. At most `max_in_flight` deferred tasks run; further deferrals wait for
  a slot, which holds back the mailbox (back-pressure).
- A Call handler may `return ErrorReply(exc)` to make the caller raise `exc`
  while the actor keeps running.
- `link(ref)`: when either dies abnormally the other stops with the same
  reason, unless it has `trap_exits = True`, in which case it gets an `Exit`
  message. `monitor(ref)` delivers `Down(ref, reason)` when `ref` exits.
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
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, final

from lmvisor.runtime import reports
from lmvisor.runtime.correlation import CorrelationScope
from lmvisor.runtime.correlation import _scope as _correlation_var
from lmvisor.runtime.errors import ActorExited, CallTimeout
from lmvisor.runtime.mailbox import Mailbox, MailboxPolicy, MailboxStatistics
from lmvisor.runtime.messages import (
    Call,
    Cast,
    ChildExit,
    Down,
    Exit,
    is_normal_exit,
    is_shutdown_exit,
)

if TYPE_CHECKING:
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
_FAIR_BUDGET = 256  # messages handled back to back before yielding to other tasks
_REAP_TIMEOUT = 1.0
_Entry = tuple[Callable[..., Any], bool]


class ActorStatus(enum.Enum):
    """Where an actor is in its life: starting -> running -> stopping -> dead."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    DEAD = "dead"


@final
class Deferred(Generic[R]):
    """A reply handed to a task the actor owns; build it with `Actor.defer`."""

    __slots__ = ("coro",)

    def __init__(self, coro: Coroutine[Any, Any, R]) -> None:
        self.coro = coro


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


def handler(fn: F) -> F:
    """Mark an actor method as the handler of the message class its argument is annotated with."""
    setattr(fn, _HANDLER_MARK, True)
    return fn


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
            table[msg_type] = (fn, inspect.iscoroutinefunction(fn))
    return table


class Actor:
    """Base class of every actor; see the module docstring for the contract."""

    mailbox_capacity: int = 1000
    mailbox_policy: MailboxPolicy = "backpressure"
    max_in_flight: int = 64
    trap_exits: bool = False

    _handlers: ClassVar[dict[type, _Entry]] = {}
    _lmv_process: _Process | None = None

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
        proc = self._lmv_process
        if proc is None:
            raise RuntimeError(f"{type(self).__qualname__} is not running under a runtime")
        return proc

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

    def defer(self, coro: Coroutine[Any, Any, R]) -> Deferred[R]:
        """Hand the reply to a task this actor owns; return the result from a Call handler."""
        return Deferred(coro)

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
        """Receive `Down(ref, reason)` when `ref` exits (at once, "noproc", if it is dead)."""
        self._process.monitor(ref._proc)

    def demonitor(self, ref: ActorRef) -> None:
        """Stop monitoring `ref`; a Down already queued is still delivered."""
        self._process.demonitor(ref._proc)

    def _child_statistics(self) -> tuple[ChildStatistics, ...] | None:
        return None


def _expire(fut: asyncio.Future[Any], actor: str, msg: object, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(
            CallTimeout(actor=actor, message_type=type(msg).__qualname__, timeout=timeout)
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
        """False once the actor has died (it may still be running `terminate`)."""
        return self._proc.status is not ActorStatus.DEAD

    @property
    def exit_reason(self) -> object:
        """The exit reason once dead, else None."""
        return self._proc.exit_reason

    def statistics(self) -> ActorStatistics:
        """A snapshot of status, mailbox and in-flight work (sync; never waits)."""
        return self._proc.statistics()

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
            timeout: seconds to wait for the reply, None for no limit.

        Raises:
            TypeError: the actor has no handler for ``type(msg)``.
            ActorExited: the actor is dead, or died before replying.
            CallTimeout: no reply within `timeout`; the actor may still handle it.
            MailboxFull: the mailbox is full and its policy is "fail_fast".
            RuntimeError: an actor called itself (it would wait forever).

        Cancellation abandons the reply; the actor may still handle the message.
        """
        proc = self._proc
        if proc.status is ActorStatus.DEAD:
            raise ActorExited(actor=proc.name, reason=proc.exit_reason)
        if type(msg) not in proc.handlers:
            raise proc.rejection(msg)
        if proc.task is asyncio.current_task():
            raise RuntimeError(f"{proc.name} called itself with {type(msg).__qualname__}")
        loop = proc.loop
        fut: asyncio.Future[R] = loop.create_future()
        item = (msg, fut, _correlation_var.get())
        mailbox = proc.mailbox
        if len(mailbox._queue) < mailbox._capacity or proc.policy_fails_fast:
            mailbox.put_nowait(item)
        else:
            await mailbox.put(item)
        if timeout is None:
            return await fut
        timer = loop.call_later(timeout, _expire, fut, proc.name, msg, timeout)
        try:
            return await fut
        finally:
            timer.cancel()

    async def cast(self, msg: Cast) -> None:
        """Queue `msg`; wait for room if the mailbox is full under "backpressure".

        Raises:
            TypeError: the actor has no handler for ``type(msg)``.
            ActorExited: the actor is dead (or died while the sender waited).
            MailboxFull: the mailbox is full and its policy is "fail_fast".
        """
        proc = self._proc
        if proc.status is ActorStatus.DEAD:
            raise ActorExited(actor=proc.name, reason=proc.exit_reason)
        if type(msg) not in proc.handlers:
            raise proc.rejection(msg)
        mailbox = proc.mailbox
        if len(mailbox._queue) < mailbox._capacity or proc.policy_fails_fast:
            mailbox.put_nowait(msg)
        else:
            await mailbox.put(msg)

    def cast_nowait(self, msg: Cast) -> None:
        """Queue `msg` without waiting.

        Raises:
            TypeError: the actor has no handler for ``type(msg)``.
            ActorExited: the actor is dead.
            MailboxFull: the mailbox is full (whatever the policy).
        """
        proc = self._proc
        if proc.status is ActorStatus.DEAD:
            raise ActorExited(actor=proc.name, reason=proc.exit_reason)
        if type(msg) not in proc.handlers:
            raise proc.rejection(msg)
        proc.mailbox.put_nowait(msg)

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


class _Process:
    """The runtime side of one actor incarnation: task, mailbox, links, exit handling."""

    __slots__ = (
        "_slot_waiter",
        "actor",
        "children",
        "deferred",
        "exit_reason",
        "exit_waiters",
        "handled",
        "handlers",
        "last",
        "linked_exit",
        "links",
        "loop",
        "mailbox",
        "max_in_flight",
        "name",
        "names",
        "notified",
        "orphans",
        "owned",
        "parent",
        "policy_fails_fast",
        "ready",
        "ref",
        "runtime",
        "status",
        "stop_reason",
        "task",
        "watchers",
    )

    def __init__(self, runtime: Runtime, actor: Actor, name: str) -> None:
        loop = runtime._loop
        self.runtime = runtime
        self.actor = actor
        self.name = name
        self.loop = loop
        self.handlers = type(actor)._handlers
        self.mailbox = Mailbox(
            name, capacity=actor.mailbox_capacity, policy=actor.mailbox_policy, loop=loop
        )
        self.policy_fails_fast = actor.mailbox_policy == "fail_fast"
        self.max_in_flight = actor.max_in_flight
        if type(self.max_in_flight) is not int or self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be an int >= 1, got {self.max_in_flight!r}")
        self.ref = ActorRef(self)
        self.status = ActorStatus.STARTING
        self.stop_reason: object = None
        self.exit_reason: object = None
        self.linked_exit = False
        self.handled = 0
        self.last: tuple[object, asyncio.Future[Any] | None, CorrelationScope | None] | None = None
        self.deferred: dict[asyncio.Task[Any], asyncio.Future[Any] | None] | None = None
        self._slot_waiter: asyncio.Future[None] | None = None
        self.links: set[_Process] | None = None
        self.watchers: dict[_Process, int] | None = None
        self.children: dict[_Process, None] | None = None
        self.owned: set[asyncio.Task[Any]] | None = None
        self.orphans: list[asyncio.Task[Any]] | None = None
        self.notified = False
        self.exit_waiters: list[asyncio.Future[None]] | None = None
        self.names: list[tuple[bool, object]] | None = None
        self.parent: _Process | None = None
        self.ready: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    # --- start -------------------------------------------------------------------

    def start(self, parent: _Process | None) -> None:
        """Create the task; the caller awaits `wait_started()` if `ready` is set."""
        if parent is not None:
            self.parent = parent
            if parent.children is None:
                parent.children = {}
            parent.children[self] = None
        actor = self.actor
        actor._lmv_process = self
        self.runtime._procs[self] = None
        if type(actor).started is Actor.started:
            self.status = ActorStatus.RUNNING
        else:
            self.ready = self.loop.create_future()
        runtime = self.runtime
        task = self.loop.create_task(self._run(), context=runtime._context.copy())
        task.add_done_callback(self._on_done, context=runtime._context)
        self.task = task

    async def wait_started(self) -> None:
        """Wait for `started()` to return; re-raise what it raised."""
        if self.ready is not None:
            await self.ready

    async def _run(self) -> None:
        # the whole life in one coroutine frame: start, the message loop, then finish
        if self.ready is not None and not await self._start():
            return
        mailbox = self.mailbox
        queue = mailbox._queue
        handlers = self.handlers
        actor = self.actor
        loop = self.loop
        budget = _FAIR_BUDGET
        try:
            while self.stop_reason is None:
                if not queue:
                    # Mailbox.park() inlined: one coroutine fewer per idle actor and per wait
                    waiter = mailbox._waiter = loop.create_future()
                    await waiter
                    budget = _FAIR_BUDGET
                    continue
                item = queue.popleft()
                if mailbox._putters:
                    mailbox._wake_putter()
                if type(item) is tuple:
                    msg, fut, scope = item
                else:
                    msg, fut, scope = item, None, None
                entry = handlers.get(type(msg))
                if entry is None:
                    reports.unexpected_message(self.runtime.namespace, self.name, msg)
                    continue
                fn, is_async = entry
                try:
                    if scope is not None:
                        result = await self._dispatch_scoped(fn, is_async, msg, scope)
                    elif is_async:
                        result = await fn(actor, msg)
                    else:
                        result = fn(actor, msg)
                except BaseException:
                    self.last = (msg, fut, scope)
                    raise
                self.handled += 1
                if fut is not None:
                    kind = type(result)
                    if kind is Deferred:
                        await self._start_deferred(result, fut)
                    elif kind is ErrorReply:
                        if not fut.done():
                            fut.set_exception(result.error)
                    elif not fut.done():
                        fut.set_result(result)
                elif type(result) is Deferred:
                    await self._start_deferred(result, None)
                budget -= 1
                if not budget:
                    budget = _FAIR_BUDGET
                    await asyncio.sleep(0)
        except Exception as exc:
            await self._finish(exc, crashed=True)
            return
        await self._finish(self.stop_reason, crashed=False)

    async def _start(self) -> bool:
        assert self.ready is not None
        try:
            await self.actor.started()
        except BaseException as exc:
            self._start_failed(exc)
            if not isinstance(exc, Exception):
                raise
            return False
        self.status = ActorStatus.RUNNING
        if not self.ready.done():
            self.ready.set_result(None)
        return True

    async def _finish(self, reason: object, *, crashed: bool) -> None:
        self.die(reason)
        if crashed:
            self._report_crash(reason)
        try:
            await self.actor.terminate(reason)
        except Exception as exc:
            reports.terminate_failed(self.runtime.namespace, self.name, exc)
        await self._reap_orphans()

    async def _reap_orphans(self) -> None:
        # tasks cancelled at death get a bounded moment to unwind, so none outlives the actor
        orphans = self.orphans
        if orphans:
            pending = [t for t in orphans if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=_REAP_TIMEOUT)

    def _start_failed(self, exc: BaseException) -> None:
        self.detach()  # the starter handles the failure, not the exit path
        self.die(exc)
        if self.ready is not None and not self.ready.done():
            if not isinstance(exc, Exception):
                exc = ActorExited(actor=self.name, reason="stopped while starting")
            self.ready.set_exception(exc)

    # --- the message loop helpers --------------------------------------------------------

    async def _dispatch_scoped(
        self, fn: Callable[..., Any], is_async: bool, msg: object, scope: CorrelationScope
    ) -> Any:
        token = _correlation_var.set(scope)
        try:
            return (await fn(self.actor, msg)) if is_async else fn(self.actor, msg)
        finally:
            _correlation_var.reset(token)

    # --- deferred replies -------------------------------------------------------------

    async def _start_deferred(
        self, deferred: Deferred[Any], fut: asyncio.Future[Any] | None
    ) -> None:
        if self.deferred is None:
            self.deferred = {}
        while len(self.deferred) >= self.max_in_flight and self.stop_reason is None:
            self._slot_waiter = self.loop.create_future()
            try:
                await self._slot_waiter
            finally:
                self._slot_waiter = None
        if self.stop_reason is not None:
            deferred.coro.close()
            if fut is not None and not fut.done():
                fut.set_exception(ActorExited(actor=self.name, reason=self.stop_reason))
            return
        task = self.loop.create_task(deferred.coro)
        self.deferred[task] = fut
        task.add_done_callback(self._deferred_done)

    def own_task(
        self,
        coro: Coroutine[Any, Any, Any],
        on_error: Callable[[asyncio.Task[Any], BaseException], None] | None = None,
    ) -> asyncio.Task[Any]:
        """Start a task owned by this actor, cancelled when it dies.

        Without `on_error` an exception in the task crashes the actor (see
        `Actor.spawn_task`); with it, `on_error(task, exc)` is called instead.
        """
        if self.status is ActorStatus.DEAD:
            coro.close()
            raise ActorExited(actor=self.name, reason=self.exit_reason)
        task = self.loop.create_task(coro)
        if on_error is None:
            if self.deferred is None:
                self.deferred = {}
            self.deferred[task] = None
            task.add_done_callback(self._deferred_done)
            return task
        if self.owned is None:
            self.owned = set()
        owned = self.owned
        owned.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            owned.discard(task)
            if not task.cancelled() and (exc := task.exception()) is not None:
                on_error(task, exc)

        task.add_done_callback(done)
        return task

    def _deferred_done(self, task: asyncio.Task[Any]) -> None:
        pending = self.deferred
        if pending is None or task not in pending:
            if not task.cancelled():
                task.exception()  # retrieved: the caller already got ActorExited
            return
        fut = pending.pop(task)
        waiter = self._slot_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if task.cancelled():
            if fut is not None and not fut.done():
                fut.set_exception(ActorExited(actor=self.name, reason="deferred task cancelled"))
            return
        exc = task.exception()
        if fut is None:
            if exc is not None:
                self.last = ("deferred task", None, None)
                self.request_stop(exc)
                self._report_crash(exc)
        elif fut.done():
            return
        elif exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(task.result())

    # --- stop and exit ----------------------------------------------------------------

    def request_stop(self, reason: object) -> None:
        """Stop after the current handler; a no-op once stopping or dead."""
        if self.status is ActorStatus.DEAD or self.stop_reason is not None:
            return
        self.stop_reason = reason
        if self.status is ActorStatus.RUNNING:
            self.status = ActorStatus.STOPPING
        self.mailbox.wake()
        waiter = self._slot_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.status is ActorStatus.STARTING and self.task is not None:
            self.task.cancel()  # stopping during started(): nothing to hand over

    def kill(self) -> None:
        """Cancel the task now; `terminate` does not run if it has not started."""
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def wait_done(self, timeout: float | None) -> None:  # noqa: ASYNC109 (deadline, then kill)
        """Wait for the task to end; after `timeout` seconds kill it and wait again."""
        task = self.task
        if task is None:
            return
        if not self.notified:
            exited = self.exit_future()
            await asyncio.wait((exited,), timeout=timeout)
            while not exited.done():
                task.cancel()
                await asyncio.wait((exited,), timeout=_REAP_TIMEOUT)
        await self._reap_orphans()

    def exit_future(self) -> asyncio.Future[None]:
        """A future resolved once the exit has been fully handled (links, parent, names)."""
        fut: asyncio.Future[None] = self.loop.create_future()
        if self.notified:
            fut.set_result(None)
        else:
            if self.exit_waiters is None:
                self.exit_waiters = []
            self.exit_waiters.append(fut)
        return fut

    def die(self, reason: object) -> None:
        """Mark dead and fail every pending caller at once; idempotent."""
        if self.status is ActorStatus.DEAD:
            return
        self.status = ActorStatus.DEAD
        self.exit_reason = reason
        self.runtime.registry._forget(self)
        for item in self.mailbox.close(reason):
            if type(item) is tuple:
                self._fail(item[1], reason)
        if self.last is not None:
            self._fail(self.last[1], reason)
        orphans: list[asyncio.Task[Any]] = []
        if self.deferred:
            pending, self.deferred = self.deferred, None
            for task, fut in pending.items():
                self._fail(fut, reason)
                task.cancel()
                orphans.append(task)
        if self.owned:
            for task in self.owned:
                task.cancel()
                orphans.append(task)
        if orphans:
            self.orphans = orphans

    def _fail(self, fut: asyncio.Future[Any] | None, reason: object) -> None:
        if fut is not None and not fut.done():
            err = ActorExited(actor=self.name, reason=reason)
            if isinstance(reason, BaseException):
                err.__cause__ = reason
            fut.set_exception(err)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            reason: object = "killed"
        else:
            exc = task.exception()
            reason = exc if exc is not None else "normal"
        self.die(reason)
        reason = self.exit_reason
        self.runtime._forget(self)
        self._notify_exit(reason)
        self.notified = True
        if self.exit_waiters:
            for fut in self.exit_waiters:
                if not fut.done():
                    fut.set_result(None)
            self.exit_waiters = None

    def _notify_exit(self, reason: object) -> None:
        ref = self.ref
        if self.links:
            for other in self.links:
                if other.links is not None:
                    other.links.discard(self)
                other.on_link_exit(ref, reason)
            self.links = None
        if self.watchers:
            for watcher in self.watchers:
                watcher.deliver_system(Down(ref=ref, reason=reason))
            self.watchers = None
        if self.children:
            for child in list(self.children):
                child.parent = None
                child.request_stop(reason if not is_normal_exit(reason) else "shutdown")
            self.children = None
        parent = self.parent
        if parent is not None:
            self.parent = None
            if parent.children is not None:
                parent.children.pop(self, None)
            parent.deliver_system(ChildExit(ref=ref, reason=reason))

    def detach(self) -> None:
        """Stop reporting this actor's exit to its parent (the parent is stopping it)."""
        parent = self.parent
        if parent is not None:
            self.parent = None
            if parent.children is not None:
                parent.children.pop(self, None)

    def deliver_system(self, msg: object) -> None:
        """Queue a runtime notice regardless of capacity; dropped if dead."""
        if self.status is not ActorStatus.DEAD:
            self.mailbox.put_system(msg)

    # --- links and monitors ---------------------------------------------------------

    def link(self, other: _Process) -> None:
        if other is self:
            return
        if other.status is ActorStatus.DEAD:
            self.on_link_exit(other.ref, "noproc")
            return
        for a, b in ((self, other), (other, self)):
            if a.links is None:
                a.links = set()
            a.links.add(b)

    def unlink(self, other: _Process) -> None:
        if self.links is not None:
            self.links.discard(other)
        if other.links is not None:
            other.links.discard(self)

    def on_link_exit(self, ref: ActorRef, reason: object) -> None:
        if self.actor.trap_exits:
            self.deliver_system(Exit(ref=ref, reason=reason))
        elif not is_normal_exit(reason):
            self.linked_exit = True
            self.request_stop(reason)

    def monitor(self, target: _Process) -> None:
        if target.status is ActorStatus.DEAD:
            self.deliver_system(Down(ref=target.ref, reason="noproc"))
            return
        if target.watchers is None:
            target.watchers = {}
        target.watchers[self] = target.watchers.get(self, 0) + 1

    def demonitor(self, target: _Process) -> None:
        watchers = target.watchers
        if watchers is not None and self in watchers:
            watchers[self] -= 1
            if watchers[self] <= 0:
                del watchers[self]

    # --- reporting -------------------------------------------------------------------

    def rejection(self, msg: object) -> TypeError:
        """The TypeError for a message type this actor has no handler for."""
        accepted = ", ".join(sorted(t.__qualname__ for t in self.handlers)) or "nothing"
        return TypeError(
            f"{self.name} has no handler for {type(msg).__qualname__}; it accepts: {accepted}"
        )

    def _report_crash(self, reason: object) -> None:
        if self.linked_exit or is_shutdown_exit(reason):
            return
        last = self.last
        try:
            state = self.actor.format_status()
        except Exception as exc:
            state = f"format_status failed: {exc!r}"
        scope = None if last is None else last[2]
        reports.actor_crashed(
            self.runtime.namespace,
            actor=self.name,
            last_message=None if last is None else last[0],
            state=state,
            reason=reason,
            caller=None if scope is None else scope.id,
        )

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            name=self.name,
            actor_type=type(self.actor).__qualname__,
            status=self.status,
            mailbox=self.mailbox.statistics(),
            handled=self.handled,
            in_flight=0 if self.deferred is None else len(self.deferred),
            exit_reason=self.exit_reason,
            children=self.actor._child_statistics(),
        )

    def __repr__(self) -> str:
        return f"<_Process {self.name} {self.status.value}>"
