"""A supervisor for children started at run time, all alike and independent.

`DynamicSupervisor` starts with no children; `start_child(ref, spec)` adds
one (ids need not be unique), up to `max_children`. Each child is restarted
on its own by its spec's restart type (one_for_one), within the intensity
`max_restarts` in `max_seconds` (escalating like `Supervisor`). Terminating
a child forgets it. On stop, children are stopped in reverse start order,
each bounded by its spec's shutdown. Use the client functions of
`lmvisor.runtime.supervisor` (`start_child`, `terminate_child` with a ref,
`which_children`, `count_children`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import final

from lmvisor.runtime import reports
from lmvisor.runtime.actor import Actor, ActorRef, ChildStatistics, ErrorReply, handler
from lmvisor.runtime.child_spec import add_restart, should_restart
from lmvisor.runtime.errors import StartError
from lmvisor.runtime.messages import Cast, ChildExit, is_shutdown_exit
from lmvisor.runtime.supervisor import (
    ESCALATION,
    ChildCounts,
    ChildInfo,
    CountChildren,
    StartChild,
    SupervisorStatistics,
    TerminateChild,
    WhichChildren,
    _check_flags,
    _Child,
    _report_exit,
    _start_process,
    _stop_process,
)

__all__ = ["DynamicSupervisor"]


@final
@dataclass(frozen=True, slots=True)
class _RetryStart(Cast):
    child: _Child


@final
class DynamicSupervisor(Actor):
    """Children added at run time, restarted one for one.

    Args:
        max_children: the most children held at once (None: no limit); a start
            beyond it fails with `StartError` (reason "max_children").
        max_restarts: restarts allowed within `max_seconds` before escalating.
        max_seconds: the intensity window, on the runtime's clock.

    Raises:
        ValueError: a flag is invalid (the message names it).
    """

    def __init__(
        self, *, max_children: int | None = None, max_restarts: int = 3, max_seconds: float = 5.0
    ) -> None:
        if max_children is not None and (
            isinstance(max_children, bool) or not isinstance(max_children, int) or max_children < 0
        ):
            raise ValueError(
                f"DynamicSupervisor.max_children must be an int >= 0 or None, got {max_children!r}"
            )
        _check_flags(max_restarts, max_seconds, "DynamicSupervisor")
        self._max_children = max_children
        self._max_restarts = max_restarts
        self._max_seconds = float(max_seconds)
        self._children: list[_Child] = []
        self._restart_times: deque[float] = deque()
        self._total_restarts = 0

    def format_status(self) -> object:
        return {"children": len(self._children), "max_children": self._max_children}

    async def terminate(self, reason: object) -> None:
        for child in reversed(self._children):
            proc, child.proc = child.proc, None
            if proc is not None:
                await _stop_process(self, child.spec, proc)
        self._children.clear()

    def _find(self, ref: object) -> _Child | None:
        for child in self._children:
            if child.proc is not None and child.proc.ref is ref:
                return child
        return None

    @handler
    async def _on_start_child(self, msg: StartChild) -> ActorRef | ErrorReply:
        spec = msg.spec
        if self._max_children is not None and len(self._children) >= self._max_children:
            return ErrorReply(
                StartError(supervisor=self._process.name, child_id=spec.id, reason="max_children")
            )
        try:
            proc = await _start_process(self, spec)
        except StartError as err:
            return ErrorReply(err)
        self._children.append(_Child(spec, proc, "running"))
        return proc.ref

    @handler
    async def _on_terminate_child(self, msg: TerminateChild) -> ErrorReply | None:
        child = self._find(msg.child)
        if child is None:
            return ErrorReply(ValueError(f"{self._process.name} has no child {msg.child!r}"))
        self._children.remove(child)
        proc, child.proc = child.proc, None
        if proc is not None:
            await _stop_process(self, child.spec, proc)
        return None

    @handler
    def _on_which_children(self, msg: WhichChildren) -> list[ChildInfo]:
        return [child.info() for child in self._children]

    @handler
    def _on_count_children(self, msg: CountChildren) -> ChildCounts:
        kinds = [child.spec.type for child in self._children]
        return ChildCounts(
            specs=len(kinds),
            active=sum(1 for child in self._children if child.proc is not None),
            supervisors=kinds.count("supervisor"),
            workers=kinds.count("worker"),
        )

    @handler
    async def _on_child_exit(self, msg: ChildExit) -> None:
        child = self._find(msg.ref)
        if child is None:
            return
        child.proc = None
        _report_exit(self, child.spec.id, msg.reason)
        if not is_shutdown_exit(msg.reason):
            child.last_reason = msg.reason
        if not should_restart(child.spec.restart, msg.reason):
            self._children.remove(child)
            return
        child.status = "restarting"
        await self._restart(child)

    @handler
    async def _on_retry(self, msg: _RetryStart) -> None:
        if any(c is msg.child for c in self._children) and msg.child.proc is None:
            await self._restart(msg.child)

    async def _restart(self, child: _Child) -> None:
        ok = add_restart(
            self._restart_times,
            self.runtime.clock.monotonic(),
            self._max_restarts,
            self._max_seconds,
        )
        if not ok:
            reports.supervisor_report(
                self.runtime.namespace,
                supervisor=self._process.name,
                context="shutdown",
                reason="reached_max_restart_intensity",
                offender=child.spec.id,
            )
            self.stop(ESCALATION)
            return
        try:
            proc = await _start_process(self, child.spec)
        except StartError as err:
            reports.supervisor_report(
                self.runtime.namespace,
                supervisor=self._process.name,
                context="start_error",
                reason=err.reason,
                offender=child.spec.id,
            )
            self._process.deliver_system(_RetryStart(child))
            return
        child.proc, child.status = proc, "running"
        child.restarts += 1
        self._total_restarts += 1

    def statistics(self) -> SupervisorStatistics:
        """Flags, restart counts and each child's state; sync, reads no other actor."""
        now = self.runtime.clock.monotonic() if self._running_process is not None else 0.0
        return SupervisorStatistics(
            strategy="one_for_one",
            max_restarts=self._max_restarts,
            max_seconds=self._max_seconds,
            total_restarts=self._total_restarts,
            recent_restarts=sum(1 for t in self._restart_times if now - t < self._max_seconds),
            children=self._child_statistics(),
        )

    def _child_statistics(self) -> tuple[ChildStatistics, ...]:
        return tuple(child.statistics() for child in self._children)

    def __repr__(self) -> str:
        return f"<DynamicSupervisor children={len(self._children)} max={self._max_children}>"
