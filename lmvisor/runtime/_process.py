"""The runtime side of one actor incarnation: its task, message loop, exit and links.

Private to the runtime: users hold `ActorRef`s and subclass `Actor`; the
runtime, supervisors and refs drive a `_Process`. An exit has two halves:
`exiting` fails pending callers before `terminate()` runs; the task's
done-callback (`die`, then the notices), once it has returned, frees names and
notifies links, monitors and the parent supervisor. As in OTP, a dead process leaves
nothing behind in others: its links and the monitors it held are removed
from the other side, and the monitors on it are consumed by their `Down`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from lmvisor.runtime._inline import InlineCall, end_inline_calls

# The statuses as module constants: an Enum member read through its class costs
# ~80 ns on 3.11 (see actor.py), and spawn, stop and exit read them.
from lmvisor.runtime.actor import _DEAD as _DEAD_STATUS
from lmvisor.runtime.actor import _RUNNING as _RUNNING_STATUS
from lmvisor.runtime.actor import _STARTING as _STARTING_STATUS
from lmvisor.runtime.actor import _STOPPING as _STOPPING_STATUS
from lmvisor.runtime.actor import (
    Actor,
    ActorRef,
    ActorStatistics,
    Deferred,
    ErrorReply,
)
from lmvisor.runtime.correlation import CorrelationScope
from lmvisor.runtime.correlation import _scope as _correlation_var
from lmvisor.runtime.errors import ActorExited
from lmvisor.runtime.mailbox import Mailbox
from lmvisor.runtime.messages import ChildExit, Down, Exit, is_normal_exit, is_shutdown_exit
from lmvisor.runtime.observe.logs import set_log_actor

if TYPE_CHECKING:
    from lmvisor.runtime.runtime import Runtime

__all__: list[str] = []

_FAIR_BUDGET = 256  # messages handled back to back before yielding to other tasks
_REAP_TIMEOUT = 1.0


class _Process(Mailbox):
    """The runtime side of one actor incarnation: task, links, exit handling.

    It *is* the actor's mailbox (a `Mailbox` subclass), so spawning allocates
    one runtime object besides the task and the ref.
    """

    __slots__ = (
        "_slot_waiter",
        "actor",
        "children",
        "deferred",
        "exit_reason",
        "exit_waiters",
        "handled",
        "handlers",
        "inline",
        "killed",
        "last",
        "linked_exit",
        "links",
        "max_in_flight",
        "monitoring",
        "names",
        "notified",
        "orphans",
        "owned",
        "parent",
        "pid",
        "policy_fails_fast",
        "ready",
        "ref",
        "runtime",
        "status",
        "stop_reason",
        "task",
        "watchers",
    )

    def __init__(self, runtime: Runtime, actor: Actor, pid: int) -> None:
        loop = runtime._loop
        self.runtime = runtime
        self.actor = actor
        self.pid = pid
        self.handlers = type(actor)._handlers
        Mailbox.__init__(
            self, self, capacity=actor.mailbox_capacity, policy=actor.mailbox_policy, loop=loop
        )
        self.policy_fails_fast = self._policy == "fail_fast"
        self.max_in_flight = max_in_flight = actor.max_in_flight
        if type(max_in_flight) is not int or max_in_flight < 1:
            raise ValueError(f"max_in_flight must be an int >= 1, got {max_in_flight!r}")
        self.ref = ActorRef(self)
        self.status = _STARTING_STATUS
        self.stop_reason: object = None
        self.exit_reason: object = None
        self.linked_exit = False
        self.killed = False
        self.handled = 0
        self.last: tuple[object, asyncio.Future[Any] | None, CorrelationScope | None] | None = None
        self.deferred: dict[asyncio.Task[Any], asyncio.Future[Any] | None] | None = None
        self.inline: dict[InlineCall, None] | None = None
        self._slot_waiter: asyncio.Future[None] | None = None
        self.links: set[_Process] | None = None
        self.watchers: dict[_Process, int] | None = None
        self.monitoring: dict[_Process, None] | None = None
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
            self.status = _RUNNING_STATUS
        else:
            self.ready = self._loop.create_future()
        runtime = self.runtime
        # A context of its own, as every task has (`_run` names the actor in it once
        # it first wakes); the process itself is the done-callback (`__call__`), so
        # an idle actor keeps no bound method.
        task = self._loop.create_task(self._run(), context=runtime._context.copy())
        task.add_done_callback(self, context=runtime._context)
        self.task = task

    async def wait_started(self) -> None:
        """Wait for `started()` to return; re-raise what it raised."""
        if self.ready is not None:
            await self.ready

    async def _run(self) -> None:
        # the whole life in one coroutine frame: start, the message loop, then finish
        mailbox: Mailbox = self
        loop = self._loop
        ready = self.ready
        if ready is not None:
            set_log_actor(self)  # before started(), whose lines name the actor too
            if not await self._start():
                return
        if not mailbox._queue and self.stop_reason is None:
            # An idle actor parks before it has a deque (the first item makes it) or,
            # without started(), a name in its context (a variable set per actor)
            waiter = mailbox._waiter = loop.create_future()
            await waiter
        if ready is None:
            set_log_actor(self)  # log lines name the actor from its first message or stop on
        queue = mailbox._queue
        if type(queue) is not deque:
            queue = mailbox._queue = deque()  # a stop before any item: the loop will not run
        handlers = self.handlers
        actor = self.actor
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
                    self.runtime.reports.unexpected_message(actor=self.name, message=msg)
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
                if type(result) is Deferred:
                    await self._start_deferred(result, fut, scope)
                elif fut is not None:
                    _answer(fut, result)
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
        self.status = _RUNNING_STATUS
        if not self.ready.done():
            self.ready.set_result(None)
        return True

    async def _finish(self, reason: object, *, crashed: bool) -> None:
        # Callers are failed now, but the process stays alive (stopping) until
        # terminate() returns: as in OTP, a monitor or link set meanwhile gets the real
        # reason, and its names stay taken, so no restart can hold them before it is done.
        self.exiting(reason)
        if crashed:
            self._report_crash(reason)
        try:
            await self.actor.terminate(reason)
        except Exception as exc:
            self.runtime.reports.terminate_failed(actor=self.name, reason=exc)
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
        if isinstance(exc, Exception):
            self.die(exc)
        else:
            # cancelled: by `request_stop` (exit with its reason) or by a kill
            self.die(self.stop_reason if self.stop_reason is not None else "killed")
        if self.ready is not None and not self.ready.done():
            if not isinstance(exc, Exception):
                exc = ActorExited(actor=self.name, reason="stopped while starting")
            self.ready.set_exception(exc)

    # --- the message loop helpers --------------------------------------------------------

    async def _dispatch_scoped(
        self, fn: Callable[..., Any], is_async: int, msg: object, scope: CorrelationScope
    ) -> Any:
        token = _correlation_var.set(scope)
        try:
            return (await fn(self.actor, msg)) if is_async else fn(self.actor, msg)
        finally:
            _correlation_var.reset(token)

    # --- deferred replies -------------------------------------------------------------

    async def _start_deferred(
        self,
        deferred: Deferred[Any],
        fut: asyncio.Future[Any] | None,
        scope: CorrelationScope | None = None,
    ) -> None:
        if self.deferred is None:
            self.deferred = {}
        try:
            while len(self.deferred) >= self.max_in_flight and self.stop_reason is None:
                self._slot_waiter = self._loop.create_future()
                try:
                    await self._slot_waiter
                finally:
                    self._slot_waiter = None
        except BaseException:
            # killed while waiting for a slot: this caller is in no queue `die` can reach
            deferred.coro.close()
            self.last = (None, fut, None)
            raise
        if self.stop_reason is not None:
            deferred.coro.close()
            if fut is not None and not fut.done():
                fut.set_exception(ActorExited(actor=self.name, reason=self.stop_reason))
            return
        if deferred.with_caller and fut is not None and fut.done():
            deferred.coro.close()  # its caller gave up while it waited for a slot
            return
        coro = deferred.coro if fut is None else _replying(deferred.coro, fut)
        if scope is None:
            task = self._loop.create_task(coro)
        else:
            # The deferred task runs under the caller's correlation id, like the handler did.
            token = _correlation_var.set(scope)
            try:
                task = self._loop.create_task(coro)
            finally:
                _correlation_var.reset(token)
        self.deferred[task] = fut
        task.add_done_callback(self._deferred_done)
        if deferred.with_caller and fut is not None:
            # The task answers from inside (`_replying`) and is done by the time this runs,
            # so only a caller that gave up first (timeout, cancellation) cancels it.
            fut.add_done_callback(lambda _: task.cancel())

    def own_task(
        self,
        coro: Coroutine[Any, Any, Any],
        on_error: Callable[[asyncio.Task[Any], BaseException], None] | None = None,
    ) -> asyncio.Task[Any]:
        """Start a task owned by this actor, cancelled when it dies.

        Without `on_error` an exception in the task crashes the actor (see
        `Actor.spawn_task`); with it, `on_error(task, exc)` is called instead.
        """
        if self._closed:  # exiting (in terminate) or dead: nothing would cancel it
            coro.close()
            raise ActorExited(actor=self.name, reason=self.exit_reason)
        task = self._loop.create_task(coro)
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
        if self.status is _DEAD_STATUS or self.stop_reason is not None:
            return
        self.stop_reason = reason
        if self.status is _RUNNING_STATUS:
            self.status = _STOPPING_STATUS
        self.wake()
        waiter = self._slot_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        task = self.task
        if (
            self.status is _STARTING_STATUS
            and task is not None
            and task is not asyncio.current_task()
        ):
            task.cancel()  # stopped from outside during started(): nothing to hand over

    def kill(self) -> None:
        """Cancel the task now; the exit reason becomes "killed" (even mid-`terminate`).

        `terminate` does not run if it has not started.
        """
        if self.task is not None and not self.task.done():
            self.killed = True
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
                self.kill()
                await asyncio.wait((exited,), timeout=_REAP_TIMEOUT)
        await self._reap_orphans()

    def exit_future(self) -> asyncio.Future[None]:
        """A future resolved once the exit has been fully handled (links, parent, names)."""
        fut: asyncio.Future[None] = self._loop.create_future()
        if self.notified:
            fut.set_result(None)
        else:
            if self.exit_waiters is None:
                self.exit_waiters = []
            self.exit_waiters.append(fut)
        return fut

    def exiting(self, reason: object) -> None:
        """Fail every pending caller and cancel owned work at once; still alive; idempotent.

        The exit's first half, before `terminate()`: the status becomes stopping
        and the reason is decided, but names, links and monitors stay until `die`.
        """
        if self._closed:
            return
        if self.status is _RUNNING_STATUS:
            self.status = _STOPPING_STATUS
        if self.stop_reason is None:
            self.stop_reason = reason  # a stop asked meanwhile changes nothing
        self.exit_reason = reason
        if self.parent is None and self.runtime._root_proc is self:
            # before any caller hears of it: the owner learns first (Runtime.open)
            self.runtime._root_died()
        for item in self.close(reason):
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
        if self.inline:
            end_inline_calls(self.inline, reason)  # the callers' own tasks: no orphans
        if orphans:
            self.orphans = orphans

    def die(self, reason: object) -> None:
        """Mark dead (after `exiting`, if it has not run) and free the names; idempotent.

        The reason is the one `exiting` decided, if it ran. Calls queued while
        `terminate()` ran fail now, with that reason.
        """
        if self.status is _DEAD_STATUS:
            return
        if self._closed:
            reason = self.exit_reason
            for item in self.close(reason):
                if type(item) is tuple:
                    self._fail(item[1], reason)
        else:
            self.exiting(reason)
        self.status = _DEAD_STATUS
        self.runtime.registry._forget(self)

    def _fail(self, fut: asyncio.Future[Any] | None, reason: object) -> None:
        if fut is not None and not fut.done():
            err = ActorExited(actor=self.name, reason=reason)
            if isinstance(reason, BaseException):
                err.__cause__ = reason
            fut.set_exception(err)

    def __call__(self, task: asyncio.Task[None]) -> None:
        """The task's done-callback: record the exit and notify links, monitors and parent."""
        if task.cancelled():
            reason: object = "killed"
        else:
            exc = task.exception()
            reason = exc if exc is not None else "normal"
        self.die(reason)
        if self.killed and task.cancelled():
            # killed while stopping (a shutdown deadline overrun): OTP's reason is `killed`
            self.exit_reason = "killed"
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
                if watcher.monitoring is not None:
                    watcher.monitoring.pop(self, None)
                watcher.deliver_system(Down(ref=ref, reason=reason))
            self.watchers = None
        if self.monitoring:
            # the monitors this process held die with it
            for target in self.monitoring:
                if target.watchers is not None:
                    target.watchers.pop(self, None)
            self.monitoring = None
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
        """Queue a runtime notice regardless of capacity; dropped if dead (or in terminate)."""
        if self.status is not _DEAD_STATUS:
            self.put_system(msg)

    # --- links and monitors ---------------------------------------------------------

    def link(self, other: _Process) -> None:
        if other is self:
            return
        if other.status is _DEAD_STATUS:
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
        if target.status is _DEAD_STATUS:
            self.deliver_system(Down(ref=target.ref, reason="noproc"))
            return
        if target.watchers is None:
            target.watchers = {}
        target.watchers[self] = target.watchers.get(self, 0) + 1
        if self.monitoring is None:
            self.monitoring = {}
        self.monitoring[target] = None

    def demonitor(self, target: _Process, *, flush: bool = False) -> None:
        watchers = target.watchers
        if watchers is not None and self in watchers:
            watchers[self] -= 1
            if watchers[self] <= 0:
                del watchers[self]
                if self.monitoring is not None:
                    self.monitoring.pop(target, None)
        if flush:
            self._flush_down(target.ref)

    def _flush_down(self, ref: ActorRef) -> None:
        """Drop the `Down`s for `ref` still queued (OTP's ``demonitor(Ref, [flush])``)."""
        queue = self._queue
        if type(queue) is not deque or not queue:
            return
        kept = [item for item in queue if type(item) is not Down or item.ref is not ref]
        dropped = len(queue) - len(kept)
        if dropped:
            # in place: the message loop holds this deque
            queue.clear()
            queue.extend(kept)
            for _ in range(dropped):
                if self._putters:
                    self._wake_putter()

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
        self.runtime.reports.actor_crashed(
            actor=self.name,
            last_message=None if last is None else last[0],
            state=state,
            reason=reason,
            caller=None if last is None else last[2],
        )

    def actor_statistics(self) -> ActorStatistics:
        """The `ActorStatistics` snapshot behind `ActorRef.statistics()`."""
        return ActorStatistics(
            name=self.name,
            actor_type=type(self.actor).__qualname__,
            status=self.status,
            mailbox=Mailbox.statistics(self),
            handled=self.handled,
            in_flight=len(self.deferred or ()) + len(self.inline or ()),
            exit_reason=self.exit_reason,
            children=self.actor._child_statistics(),
        )

    @property
    def name(self) -> str:
        """``ClassName<pid>``, built on demand so spawning formats nothing."""
        return f"{type(self.actor).__name__}<{self.pid}>"

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<_Process {self.name} {self.status.value}>"


async def _replying(coro: Coroutine[Any, Any, Any], fut: asyncio.Future[Any]) -> Any:
    """Run a deferred reply and answer the caller from inside the task.

    The caller wakes one loop turn sooner than if the done-callback answered it;
    the done-callback still does the bookkeeping (and answers on cancellation).
    """
    try:
        result = await coro
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        if not fut.done():
            fut.set_exception(exc)
        raise
    if not fut.done():
        fut.set_result(result)
    return result


def _answer(fut: asyncio.Future[Any], result: object) -> None:
    """Reply to a waiting caller (one that gave up, by timeout or cancellation, is skipped)."""
    if fut.done():
        return
    if type(result) is ErrorReply:
        fut.set_exception(result.error)
    else:
        fut.set_result(result)
