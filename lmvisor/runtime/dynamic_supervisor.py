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

from lmvisor.runtime.actor import ActorRef, ErrorReply, handler
from lmvisor.runtime.child_spec import should_restart
from lmvisor.runtime.errors import StartError
from lmvisor.runtime.messages import Cast, ChildExit
from lmvisor.runtime.supervisor import (
    StartChild,
    SupervisorStatistics,
    TerminateChild,
    _check_flags,
    _Child,
    _start_process,
    _stop_process,
    _SupervisorCore,
)

__all__ = ["DynamicSupervisor"]


@final
@dataclass(frozen=True, slots=True)
class _RetryStart(Cast):
    child: _Child


@final
class DynamicSupervisor(_SupervisorCore):
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
        return await self._add_child(spec)

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
    async def _on_child_exit(self, msg: ChildExit) -> None:
        child = self._find(msg.ref)
        if child is None:
            return
        self._child_exited(child, msg.reason)
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
        if not self._intensity_ok(child.spec.id):
            return
        try:
            proc = await _start_process(self, child.spec)
        except StartError as err:
            self._report_start_error(child.spec.id, err)
            self._process.deliver_system(_RetryStart(child))
            return
        self._restarted(child, proc)

    def statistics(self) -> SupervisorStatistics:
        """Flags, restart counts and each child's state; sync, reads no other actor."""
        return self._statistics("one_for_one")

    def __repr__(self) -> str:
        return f"<DynamicSupervisor children={len(self._children)} max={self._max_children}>"
