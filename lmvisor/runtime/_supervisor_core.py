"""What `Supervisor` and `DynamicSupervisor` share: the child-query messages and their
records, the statistics snapshot, and `_SupervisorCore` (the restart intensity window,
the queries over the children and the reports they make). `lmvisor.runtime.supervisor`
re-exports the public names; the contract is in its docstring.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import final

from lmvisor.runtime._children import (
    Child,
    GaveUp,
    report_exit,
    start_process,
)
from lmvisor.runtime._process import _Process
from lmvisor.runtime.actor import (
    Actor,
    ActorRef,
    ChildStatistics,
    ErrorReply,
    handler,
)
from lmvisor.runtime.child_spec import ChildSpec, add_restart
from lmvisor.runtime.errors import StartError
from lmvisor.runtime.messages import Call, Shutdown, is_shutdown_exit

__all__ = [
    "ChildCounts",
    "ChildInfo",
    "CountChildren",
    "DeleteChild",
    "RestartChild",
    "StartChild",
    "SupervisorStatistics",
    "TerminateChild",
    "WhichChildren",
]

ESCALATION = Shutdown("reached_max_restart_intensity")


# --- messages --------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One child as `which_children` reports it (OTP's ``{Id, Child, Type, Modules}``)."""

    id: str
    ref: ActorRef | None
    type: str
    restart: str
    status: str


@final
@dataclass(frozen=True, slots=True)
class ChildCounts:
    """`count_children`: specs held, children running, and specs by type."""

    specs: int
    active: int
    supervisors: int
    workers: int


@final
@dataclass(frozen=True, slots=True)
class StartChild(Call[ActorRef]):
    """Start a child from `spec` and add it last; replies with its ref."""

    spec: ChildSpec


@final
@dataclass(frozen=True, slots=True)
class TerminateChild(Call[None]):
    """Stop a child (by id, or by ref) without restarting it; its spec stays."""

    child: str | ActorRef


@final
@dataclass(frozen=True, slots=True)
class RestartChild(Call[ActorRef]):
    """Start a stopped child again from its spec; replies with the new ref."""

    id: str


@final
@dataclass(frozen=True, slots=True)
class DeleteChild(Call[None]):
    """Forget a stopped child's spec."""

    id: str


@final
@dataclass(frozen=True, slots=True)
class WhichChildren(Call[list[ChildInfo]]):
    """List every child spec in start order, with ref=None when not running."""


@final
@dataclass(frozen=True, slots=True)
class CountChildren(Call[ChildCounts]):
    """Count specs, running children, supervisors and workers."""


@final
@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    """A supervisor's flags, its restart history and each child (sync snapshot)."""

    strategy: str
    max_restarts: int
    max_seconds: float
    total_restarts: int
    recent_restarts: int
    children: tuple[ChildStatistics, ...]


class _SupervisorCore(Actor):
    """What `Supervisor` and `DynamicSupervisor` share: the restart intensity
    window, the queries over the children and the reports they make.

    A subclass sets every attribute declared here in its `__init__`. Children
    are held in start order in a dict (a `Child` hashes by identity), so
    forgetting one costs the same wherever it sits.
    """

    _children: dict[Child, None]
    _restart_times: deque[float]
    _max_restarts: int
    _max_seconds: float
    _total_restarts: int
    _gave_up: GaveUp | None

    def _keep(self, child: Child) -> None:
        """Hold `child` after every child held now."""
        self._children[child] = None

    def _forget(self, child: Child) -> None:
        """Drop `child`'s record (a no-op if it is not held)."""
        self._children.pop(child, None)

    @handler
    def _on_which_children(self, msg: WhichChildren) -> list[ChildInfo]:
        return [
            ChildInfo(
                id=child.spec.id,
                ref=None if child.proc is None else child.proc.ref,
                type=child.spec.type,
                restart=child.spec.restart,
                status=child.status,
            )
            for child in self._children
        ]

    @handler
    def _on_count_children(self, msg: CountChildren) -> ChildCounts:
        kinds = [child.spec.type for child in self._children]
        return ChildCounts(
            specs=len(kinds),
            active=sum(1 for child in self._children if child.proc is not None),
            supervisors=kinds.count("supervisor"),
            workers=kinds.count("worker"),
        )

    async def _add_child(self, spec: ChildSpec) -> ActorRef | ErrorReply:
        """Start `spec` and keep it as running; a failed start is the caller's error."""
        try:
            proc = await start_process(self, spec)
        except (StartError, ValueError) as err:
            return ErrorReply(err)
        self._keep(Child(spec, proc, "running"))
        return proc.ref

    def _child_exited(self, child: Child, ref: ActorRef, reason: object) -> None:
        """Forget the exited process, report it (see `report_exit`), keep an abnormal reason."""
        child.proc = None
        report_exit(self, child.spec, reason)
        child.last_exit = reason
        child.gave_up = getattr(ref._proc.actor, "_gave_up", None)
        if not is_shutdown_exit(reason):
            child.last_reason = reason

    def _intensity_ok(self, child: Child) -> bool:
        """Count a restart; past the intensity, report it and stop with `ESCALATION`."""
        ok = add_restart(
            self._restart_times,
            self.runtime.clock.monotonic(),
            self._max_restarts,
            self._max_seconds,
        )
        if not ok:
            self._give_up(child, ESCALATION, "reached_max_restart_intensity")
        return ok

    def _give_up(self, child: Child, exit_reason: object, why: object) -> None:
        """Report `shutdown` for `child`, remember why (for the root's owner), and exit."""
        self._gave_up = GaveUp(child.spec.id, child.last_exit, child.gave_up)
        sup = self._process
        self.runtime.reports.supervisor_report(
            supervisor=sup.name, context="shutdown", reason=why, offender=child.spec.id
        )
        self.stop(exit_reason)

    def _start_failed(self, child: Child, err: StartError | ValueError) -> bool:
        """Report a failed (re)start; say whether to retry it (a reused actor never is)."""
        reason = err.reason if isinstance(err, StartError) else err
        child.last_reason = child.last_exit = reason
        child.gave_up = None
        sup = self._process
        self.runtime.reports.supervisor_report(
            supervisor=sup.name, context="start_error", reason=reason, offender=child.spec.id
        )
        if isinstance(err, ValueError):
            self._give_up(child, err, err)
            return False
        return self._intensity_ok(child)

    def _restarted(self, child: Child, proc: _Process) -> None:
        child.proc, child.status = proc, "running"
        child.restarts += 1
        self._total_restarts += 1

    def _statistics(self, strategy: str) -> SupervisorStatistics:
        now = self.runtime.clock.monotonic() if self._running_process is not None else 0.0
        return SupervisorStatistics(
            strategy=strategy,
            max_restarts=self._max_restarts,
            max_seconds=self._max_seconds,
            total_restarts=self._total_restarts,
            recent_restarts=sum(1 for t in self._restart_times if now - t <= self._max_seconds),
            children=self._child_statistics(),
        )

    def _child_statistics(self) -> tuple[ChildStatistics, ...]:
        return tuple(child.statistics() for child in self._children)
