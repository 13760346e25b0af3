"""Supervisors: start children in order, restart them by strategy, stop them in reverse.

Contract (OTP's supervisor.erl, with Akka's restart backoff):

- A `Supervisor` is an actor, so it can be another supervisor's child
  (``ChildSpec(..., type="supervisor")``). Its `started()` starts the
  children in order; child N+1 starts only after child N's `started()`
  returned. If one fails, those already started are stopped in reverse and
  the start fails with `StartError` naming the child id (cause chained).
- A child's `start` must build a new actor on every call: a restart that
  gets back an instance that already ran is a programming error, so the
  supervisor reports it (`start_error`, a `ValueError` naming the child) and
  exits at once with that `ValueError` instead of retrying.
- When a child exits, it is reported as `child_terminated` (a permanent
  child whatever its reason, as OTP does; any other only when abnormal) and
  `should_restart` (restart type x reason) decides. A
  restart applies the strategy: "one_for_one" restarts that child;
  "rest_for_one" stops the children started after it (in reverse) and
  restarts it and them in order; "one_for_all" does so with every child.
  As in OTP (`terminate_children` then `start_children` over the group), a
  group restart also starts the group's siblings that were not running,
  such as those stopped with `terminate_child`; temporary siblings are
  stopped and dropped instead.
- A restart that fails is retried through a message to self, so requests
  can get in between, each attempt counted against the intensity:
  "one_for_one" and "rest_for_one" retry from the child that failed;
  "one_for_all" stops the siblings it had already restarted and restarts
  the whole group again (OTP's `one_for_all_other_child_fails_restart`).
  Under "rest_for_one", a pending restart is dropped when a child started
  before its group crashed meanwhile: that child's restart, which covers
  the group, starts them after it.
- Intensity: more than `max_restarts` restarts within `max_seconds` (default
  3 in 5 s, on the runtime's `Clock`) makes the supervisor stop its children
  and exit with ``Shutdown("reached_max_restart_intensity")``; its parent then
  applies its own strategy. When the root gives up, `Runtime.open` raises
  `SupervisorGaveUp`. With `backoff`, each restart waits
  ``backoff.delay(attempt)`` on the clock first; it still counts.
- Shutdown (on any stop of the supervisor) stops children in reverse start
  order, each by its spec's `shutdown`: request a stop, wait that many
  seconds, then kill (the child then exits "killed" and a `shutdown_error`
  is reported); "brutal_kill" kills at once.
- `auto_shutdown`: "never" (default), "any_significant" (stop when a
  significant child exits without restart) or "all_significant" (when all have).

Client functions (`start_child`, `terminate_child`, `restart_child`,
`delete_child`, `which_children`, `count_children`) are thin calls; misuse
(unknown id, duplicate id, child running or restarting) raises `ValueError` at the caller.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, final

from lmvisor.runtime._children import (
    Child,
    check_flags,
    start_process,
    stop_process,
)
from lmvisor.runtime._supervisor_core import (
    ChildCounts,
    ChildInfo,
    CountChildren,
    DeleteChild,
    RestartChild,
    StartChild,
    SupervisorStatistics,
    TerminateChild,
    WhichChildren,
    _SupervisorCore,
)
from lmvisor.runtime.actor import (
    ActorRef,
    ErrorReply,
    handler,
)
from lmvisor.runtime.child_spec import Backoff, ChildSpec, check_child_specs
from lmvisor.runtime.child_spec import should_restart as _should_restart
from lmvisor.runtime.errors import StartError
from lmvisor.runtime.messages import Cast, ChildExit

if TYPE_CHECKING:
    from lmvisor.runtime.clock import Clock

__all__ = [
    "AutoShutdown",
    "ChildCounts",
    "ChildInfo",
    "CountChildren",
    "DeleteChild",
    "RestartChild",
    "StartChild",
    "Strategy",
    "Supervisor",
    "SupervisorStatistics",
    "TerminateChild",
    "WhichChildren",
    "count_children",
    "delete_child",
    "restart_child",
    "start_child",
    "terminate_child",
    "which_children",
]

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
AutoShutdown = Literal["never", "any_significant", "all_significant"]

_STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
_AUTO_SHUTDOWNS = ("never", "any_significant", "all_significant")


# --- messages --------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class _TryAgainRestart(Cast):
    ids: tuple[str, ...]


# --- the supervisor -------------------------------------------------------------------------


@final
class Supervisor(_SupervisorCore):
    """A static supervisor over an ordered list of child specs (see the module docstring).

    Args:
        children: the specs, started in this order.
        strategy: "one_for_one" (default), "one_for_all" or "rest_for_one".
        max_restarts: restarts allowed within `max_seconds` before escalating.
        max_seconds: the intensity window, on the runtime's clock.
        backoff: delay restarts exponentially (None: restart at once).
        auto_shutdown: "never", "any_significant" or "all_significant".

    Raises:
        ValueError: a flag is invalid (the message names it) or specs clash.
        TypeError: a child is not a `ChildSpec`.
    """

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        backoff: Backoff | None = None,
        auto_shutdown: AutoShutdown = "never",
    ) -> None:
        if strategy not in _STRATEGIES:
            raise ValueError(
                "Supervisor.strategy must be one of 'one_for_one', 'one_for_all', "
                f"'rest_for_one', got {strategy!r}"
            )
        check_flags(max_restarts, max_seconds, "Supervisor")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise ValueError(f"Supervisor.backoff must be a Backoff or None, got {backoff!r}")
        if auto_shutdown not in _AUTO_SHUTDOWNS:
            raise ValueError(
                "Supervisor.auto_shutdown must be one of 'never', 'any_significant', "
                f"'all_significant', got {auto_shutdown!r}"
            )
        self._specs = check_child_specs(children)
        self._strategy: Strategy = strategy
        self._max_restarts = max_restarts
        self._max_seconds = float(max_seconds)
        self._backoff = backoff
        self._auto_shutdown: AutoShutdown = auto_shutdown
        self._children: dict[Child, None] = {}
        self._restart_times: deque[float] = deque()
        self._total_restarts = 0
        self._gave_up = None
        self._random = random.Random()

    @property
    def _clock(self) -> Clock:
        return self.runtime.clock

    def format_status(self) -> object:
        return {"strategy": self._strategy, "children": [c.spec.id for c in self._children]}

    # --- lifecycle ---

    async def started(self) -> None:
        for spec in self._specs:
            child = Child(spec)
            try:
                child.proc = await start_process(self, spec)
            except (StartError, ValueError) as err:
                self._report_start_error(spec.id, err)
                await self._stop_all()
                raise
            child.status = "running"
            self._keep(child)
        self._specs = []

    def _report_start_error(self, offender: str, err: StartError | ValueError) -> None:
        self.runtime.reports.supervisor_report(
            supervisor=self._process.name,
            context="start_error",
            reason=err.reason if isinstance(err, StartError) else err,
            offender=offender,
        )

    async def terminate(self, reason: object) -> None:
        await self._stop_all()

    async def _stop_all(self) -> None:
        for child in reversed(self._children):
            await self._stop_child(child)

    async def _stop_child(self, child: Child) -> None:
        proc, child.proc = child.proc, None
        if child.status in ("running", "restarting"):
            child.status = "terminated"
        if proc is not None:
            await stop_process(self, child.spec, proc)

    # --- lookups ---

    def _find(self, key: str | ActorRef) -> Child | None:
        for child in self._children:
            if child.spec.id == key or (child.proc is not None and child.proc.ref is key):
                return child
        return None

    def _missing(self, key: object) -> ErrorReply:
        return ErrorReply(ValueError(f"{self._process.name} has no child {key!r}"))

    def _busy(self, child: Child) -> ErrorReply | None:
        """OTP's ``{error, running}`` / ``{error, restarting}`` for restart and delete."""
        if child.proc is not None:
            return ErrorReply(ValueError(f"child {child.spec.id!r} is running"))
        if child.status == "restarting":
            return ErrorReply(ValueError(f"child {child.spec.id!r} is restarting"))
        return None

    # --- requests ---

    @handler
    async def _on_start_child(self, msg: StartChild) -> ActorRef | ErrorReply:
        spec = msg.spec
        if self._find(spec.id) is not None:
            return ErrorReply(
                ValueError(f"child id {spec.id!r} is already present in {self._process.name}")
            )
        return await self._add_child(spec)

    @handler
    async def _on_terminate_child(self, msg: TerminateChild) -> ErrorReply | None:
        child = self._find(msg.child)
        if child is None:
            return self._missing(msg.child)
        await self._stop_child(child)
        if child.spec.restart == "temporary":
            self._forget(child)
        return None

    @handler
    async def _on_restart_child(self, msg: RestartChild) -> ActorRef | ErrorReply:
        child = self._find(msg.id)
        if child is None:
            return self._missing(msg.id)
        if (busy := self._busy(child)) is not None:
            return busy
        try:
            proc = await start_process(self, child.spec)
        except (StartError, ValueError) as err:
            return ErrorReply(err)
        child.proc, child.status = proc, "running"
        return proc.ref

    @handler
    def _on_delete_child(self, msg: DeleteChild) -> ErrorReply | None:
        child = self._find(msg.id)
        if child is None:
            return self._missing(msg.id)
        if (busy := self._busy(child)) is not None:
            return busy
        self._forget(child)
        return None

    # --- exits and restarts ---

    @handler
    async def _on_child_exit(self, msg: ChildExit) -> None:
        child = self._find(msg.ref)
        if child is None or child.proc is None or child.proc.ref is not msg.ref:
            return
        reason = msg.reason
        self._child_exited(child, msg.ref, reason)
        if not _should_restart(child.spec.restart, reason):
            child.status = "stopped"
            if child.spec.restart == "temporary":
                self._forget(child)
            self._check_auto_shutdown(child)
            return
        await self._restart(child)

    def _check_auto_shutdown(self, child: Child) -> None:
        if not child.spec.significant or self._auto_shutdown == "never":
            return
        # a child awaiting its restart has not exited (OTP counts a `restarting` pid alive)
        if self._auto_shutdown == "any_significant" or not any(
            c.spec.significant and (c.proc is not None or c.status == "restarting")
            for c in self._children
        ):
            self.stop("shutdown")

    def _group(self, child: Child) -> list[Child]:
        """The children a restart of `child` involves, in start order (running or not)."""
        if self._strategy == "one_for_one":
            return [child]
        children = list(self._children)
        return children if self._strategy == "one_for_all" else children[children.index(child) :]

    async def _restart(self, child: Child) -> None:
        if not self._intensity_ok(child):
            return
        group = self._group(child)
        for other in reversed(group):
            if other is not child:
                await self._stop_child(other)
        for other in group:
            if other is not child and other.spec.restart == "temporary":
                self._forget(other)
        ids = tuple(c.spec.id for c in group if c is child or c.spec.restart != "temporary")
        for c in group:
            c.status = "restarting"
        delay = 0.0
        if self._backoff is not None:
            delay = self._backoff.delay(len(self._restart_times) - 1, self._random.random())
        if delay > 0:
            self.spawn_task(self._after(delay, ids))
        else:
            await self._start_group(ids)

    async def _after(self, delay: float, ids: tuple[str, ...]) -> None:
        await self._clock.sleep(delay)
        self._process.deliver_system(_TryAgainRestart(ids))

    @handler
    async def _on_try_again(self, msg: _TryAgainRestart) -> None:
        if self._strategy == "rest_for_one" and self._earlier_restarting(msg.ids):
            return  # that child's own pending restart brings these back after it
        await self._start_group(msg.ids)

    def _earlier_restarting(self, ids: tuple[str, ...]) -> bool:
        """rest_for_one: whether a child started before the group awaits its own restart.

        A delayed restart (backoff, or a retry) can still be pending when a
        child started earlier crashes; that child's group holds every child
        after it, so starting this one first would run them while it is down.
        """
        group = set(ids)
        for child in self._children:
            if child.spec.id in group:
                return False
            if child.status == "restarting":
                return True
        return False

    async def _start_group(self, ids: tuple[str, ...]) -> None:
        started: list[Child] = []
        for index, child_id in enumerate(ids):
            child = self._find(child_id)
            if child is None or child.status != "restarting":
                continue
            try:
                proc = await start_process(self, child.spec)
            except (StartError, ValueError) as err:
                if self._start_failed(child, err):
                    await self._try_again(ids, index, started)
                return
            self._restarted(child, proc)
            started.append(child)

    async def _try_again(self, ids: tuple[str, ...], failed: int, started: list[Child]) -> None:
        if self._strategy != "one_for_all":
            self._process.deliver_system(_TryAgainRestart(ids[failed:]))
            return
        # one_for_all: the group restarts as one, so the siblings already back go down again
        for child in reversed(started):
            await self._stop_child(child)
            child.status = "restarting"
        self._process.deliver_system(_TryAgainRestart(ids))

    # --- statistics ---

    def statistics(self) -> SupervisorStatistics:
        """Flags, restart counts and each child's state; sync, reads no other actor."""
        return self._statistics(self._strategy)

    def __repr__(self) -> str:
        running = sum(1 for c in self._children if c.proc is not None)
        return f"<Supervisor {self._strategy} children={len(self._children)} running={running}>"


# --- client functions -------------------------------------------------------------------------


async def start_child(sup: ActorRef, spec: ChildSpec) -> ActorRef:
    """Start a child under `sup` (static or dynamic supervisor); return its ref.

    Raises:
        StartError: the child failed to start (the supervisor is unaffected).
        ValueError: the id is already present (static supervisor).
        ActorExited: the supervisor is dead.
    """
    return await sup.call(StartChild(spec), None)


async def terminate_child(sup: ActorRef, child: str | ActorRef) -> None:
    """Stop a child by id (or ref) without restart; a static supervisor keeps its spec.

    Raises:
        ValueError: no such child.
    """
    await sup.call(TerminateChild(child), None)


async def restart_child(sup: ActorRef, child_id: str) -> ActorRef:
    """Start a stopped child again from its spec; return the new ref.

    Raises:
        ValueError: no such child, or it is running or awaiting a (backoff) restart.
        StartError: it failed to start.
    """
    return await sup.call(RestartChild(child_id), None)


async def delete_child(sup: ActorRef, child_id: str) -> None:
    """Forget a stopped child's spec.

    Raises:
        ValueError: no such child, or it is running or awaiting a (backoff) restart.
    """
    await sup.call(DeleteChild(child_id), None)


async def which_children(sup: ActorRef) -> list[ChildInfo]:
    """Every child spec in start order, ``ref=None`` for a child not running."""
    return await sup.call(WhichChildren(), None)


async def count_children(sup: ActorRef) -> ChildCounts:
    """Counts of specs, running children, supervisors and workers."""
    return await sup.call(CountChildren(), None)
