"""A supervisor for children started at run time, all alike and independent.

`DynamicSupervisor` starts with no children; `start_child(ref, spec)` adds
one (ids need not be unique), up to `max_children`. Each child is restarted
on its own by its spec's restart type (one_for_one), within the intensity
`max_restarts` in `max_seconds` (escalating like `Supervisor`). Terminating
a child forgets it; children are found by their current process in a dict,
so `terminate_child` costs the same whichever child it targets, among ten
or ten thousand. On stop, as in OTP and Elixir, every child is told to stop
at once and each is killed when its spec's shutdown time runs out, so the
stop takes the longest allowance, not their sum. Use the client functions
of `lmvisor.runtime.supervisor` (`start_child`, `terminate_child` with a
ref, `which_children`, `count_children`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import final

from lmvisor.runtime._children import (
    Child,
    check_flags,
    start_process,
    stop_process,
    stop_processes_at_once,
)
from lmvisor.runtime._process import _Process
from lmvisor.runtime._supervisor_core import (
    StartChild,
    SupervisorStatistics,
    TerminateChild,
    _SupervisorCore,
)
from lmvisor.runtime.actor import ActorRef, ErrorReply, handler
from lmvisor.runtime.child_spec import should_restart
from lmvisor.runtime.errors import StartError
from lmvisor.runtime.messages import Cast, ChildExit

__all__ = ["DynamicSupervisor"]


@final
@dataclass(frozen=True, slots=True)
class _RetryStart(Cast):
    child: Child


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
        check_flags(max_restarts, max_seconds, "DynamicSupervisor")
        self._max_children = max_children
        self._max_restarts = max_restarts
        self._max_seconds = float(max_seconds)
        self._children: dict[Child, None] = {}
        self._by_process: dict[_Process, Child] = {}
        self._restart_times: deque[float] = deque()
        self._total_restarts = 0
        self._gave_up = None

    def format_status(self) -> object:
        return {"children": len(self._children), "max_children": self._max_children}

    def _keep(self, child: Child) -> None:
        super()._keep(child)
        if child.proc is not None:
            self._by_process[child.proc] = child

    def _forget(self, child: Child) -> None:
        super()._forget(child)
        if child.proc is not None:
            self._by_process.pop(child.proc, None)

    def _restarted(self, child: Child, proc: _Process) -> None:
        super()._restarted(child, proc)
        self._by_process[proc] = child

    async def terminate(self, reason: object) -> None:
        stopping = [(c.spec, c.proc) for c in reversed(self._children) if c.proc is not None]
        self._children.clear()
        self._by_process.clear()
        await stop_processes_at_once(self, stopping)

    def _find(self, ref: object) -> Child | None:
        proc = ref._proc if isinstance(ref, ActorRef) else None
        return None if proc is None else self._by_process.get(proc)

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
        self._forget(child)
        proc, child.proc = child.proc, None
        if proc is not None:
            await stop_process(self, child.spec, proc)
        return None

    @handler
    async def _on_child_exit(self, msg: ChildExit) -> None:
        child = self._find(msg.ref)
        if child is None:
            return
        self._by_process.pop(msg.ref._proc, None)
        self._child_exited(child, msg.ref, msg.reason)
        if not should_restart(child.spec.restart, msg.reason):
            self._forget(child)
            return
        child.status = "restarting"
        await self._restart(child)

    @handler
    async def _on_retry(self, msg: _RetryStart) -> None:
        if msg.child in self._children and msg.child.proc is None:
            await self._start_again(msg.child)

    async def _restart(self, child: Child) -> None:
        if self._intensity_ok(child):
            await self._start_again(child)

    async def _start_again(self, child: Child) -> None:
        try:
            proc = await start_process(self, child.spec)
        except (StartError, ValueError) as err:
            # a failed attempt counts against the intensity (in `_start_failed`)
            if self._start_failed(child, err):
                self._process.deliver_system(_RetryStart(child))
            return
        self._restarted(child, proc)

    def statistics(self) -> SupervisorStatistics:
        """Flags, restart counts and each child's state; sync, reads no other actor."""
        return self._statistics("one_for_one")

    def __repr__(self) -> str:
        return f"<DynamicSupervisor children={len(self._children)} max={self._max_children}>"
