"""What every supervisor does to one child: start it, stop it, remember it, report on it.

Private to the runtime: `Supervisor` and `DynamicSupervisor` share these.
Starting checks that `start` built a fresh actor (a start function that
returns an instance that already ran can never restart it, so that is a
`ValueError` naming the child, not a start failure to retry). Stopping asks
for a `"shutdown"` exit and kills after the spec's shutdown time; a child
that had to be killed exits `"killed"` and is reported as a `shutdown_error`
(a brutal_kill child is killed by design and is not).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lmvisor.runtime.actor import Actor, ChildStatistics
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.errors import StartError, SupervisorGaveUp
from lmvisor.runtime.messages import is_shutdown_exit

if TYPE_CHECKING:
    from lmvisor.runtime._process import _Process

__all__ = [
    "Child",
    "GaveUp",
    "check_flags",
    "report_exit",
    "start_process",
    "stop_process",
    "stop_processes_at_once",
]


@dataclass(frozen=True, slots=True)
class GaveUp:
    """Why a supervisor gave up: the child, its last exit reason, and the child's own give-up."""

    child_id: str
    reason: object
    inner: GaveUp | None = None

    def error(self, supervisor: str) -> SupervisorGaveUp:
        """The `SupervisorGaveUp` for `supervisor`, chained to the innermost cause."""
        error = SupervisorGaveUp(supervisor=supervisor, child_id=self.child_id, reason=self.reason)
        if self.inner is not None:
            error.__cause__ = self.inner.error(repr(self.child_id))
        elif isinstance(self.reason, BaseException):
            error.__cause__ = self.reason
        return error


@dataclass(slots=True, eq=False)
class Child:
    """A supervisor's record of one child: its spec, current process and history.

    `last_reason` is the last abnormal exit (shown by `tree()`); `last_exit`
    the last exit of any kind, and `gave_up` why it gave up when the child is
    a supervisor that did (both for the root's `SupervisorGaveUp`).
    """

    spec: ChildSpec
    proc: _Process | None = None
    status: str = "stopped"
    restarts: int = 0
    last_reason: object = None
    last_exit: object = None
    gave_up: GaveUp | None = None

    def statistics(self) -> ChildStatistics:
        """This child as `tree()` and `which_children` see it."""
        return ChildStatistics(
            id=self.spec.id,
            ref=None if self.proc is None else self.proc.ref,
            type=self.spec.type,
            restart=self.spec.restart,
            status=self.status,
            restarts=self.restarts,
            last_reason=self.last_reason,
        )


def check_flags(max_restarts: object, max_seconds: object, owner: str) -> None:
    """Validate the restart intensity flags of `owner` ("Supervisor", ...).

    Raises:
        ValueError: naming the flag and the value.
    """
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"{owner}.max_restarts must be an int >= 0, got {max_restarts!r}")
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, int | float)
        or not max_seconds > 0
    ):
        raise ValueError(f"{owner}.max_seconds must be a number > 0, got {max_seconds!r}")


async def start_process(owner: Actor, spec: ChildSpec) -> _Process:
    """Build, register and start `spec`'s actor; wait for its `started()`.

    Raises:
        ValueError: `start` returned an actor that already ran (it must build
            a new one on every call); nothing was started.
        StartError: `start` failed or returned a non-Actor, the name is taken,
            or `started()` raised. The cause is chained.
    """
    sup = owner._process
    try:
        actor = spec.start()
    except Exception as exc:
        raise StartError(supervisor=sup.name, child_id=spec.id, reason=exc) from exc
    if isinstance(actor, Actor) and actor._running_process is not None:
        raise ValueError(
            f"ChildSpec.start of child {spec.id!r} returned a {type(actor).__qualname__} "
            "that already ran; start must build a new actor on every call "
            "(pass a class or a factory, not an instance)"
        )
    try:
        if not isinstance(actor, Actor):
            raise TypeError(f"ChildSpec.start of {spec.id!r} returned {actor!r}, not an Actor")
        proc = sup.runtime._new_process(actor)
        if spec.name is not None:
            sup.runtime.registry.register(spec.name, proc.ref)
        proc.start(sup)
        await proc.wait_started()
    except Exception as exc:
        raise StartError(supervisor=sup.name, child_id=spec.id, reason=exc) from exc
    sup.runtime.reports.supervisor_progress(supervisor=sup.name, started=spec.id)
    return proc


async def stop_process(owner: Actor, spec: ChildSpec, proc: _Process) -> None:
    """Stop a child per its spec's shutdown: ask, wait that long, then kill.

    Its exit is not reported to `owner` as a `ChildExit` (the owner is the
    one stopping it); a failure while stopping is reported as `shutdown_error`.
    """
    _ask_to_stop(spec, proc)
    await proc.wait_done(spec.shutdown_timeout)
    _report_shutdown(owner, spec, proc.exit_reason)


async def stop_processes_at_once(
    owner: Actor, stopping: Sequence[tuple[ChildSpec, _Process]]
) -> None:
    """Stop many children together, as OTP and Elixir stop dynamic children.

    Every child is asked at once; each is killed when its own spec's shutdown
    time, counted from that moment, runs out, so stopping N children takes
    as long as the slowest allowance rather than the sum of them.
    """
    loop = asyncio.get_running_loop()
    begun = loop.time()
    for spec, proc in stopping:
        _ask_to_stop(spec, proc)
    allowances = sorted({t for spec, _ in stopping if (t := spec.shutdown_timeout) is not None})
    for allowance in allowances:
        late = [p for s, p in stopping if s.shutdown_timeout == allowance and not p.notified]
        if late:
            left = max(0.0, begun + allowance - loop.time())
            await asyncio.wait([p.exit_future() for p in late], timeout=left)
            for proc in late:
                if not proc.notified:
                    proc.kill()
    for spec, proc in stopping:
        # killed ones end within the reap bound; "infinity" ones whenever they finish
        await proc.wait_done(None if spec.shutdown_timeout is None else 0.0)
        _report_shutdown(owner, spec, proc.exit_reason)


def report_exit(owner: Actor, spec: ChildSpec, reason: object) -> None:
    """Report a child's exit as `child_terminated`, unless it was orderly and allowed.

    As OTP's `do_restart` does, a permanent child is reported whatever its
    reason ("normal" and "shutdown" included): it was never meant to exit.
    """
    if spec.restart != "permanent" and is_shutdown_exit(reason):
        return
    sup = owner._process
    sup.runtime.reports.supervisor_report(
        supervisor=sup.name, context="child_terminated", reason=reason, offender=spec.id
    )


def _ask_to_stop(spec: ChildSpec, proc: _Process) -> None:
    proc.detach()
    if spec.shutdown_timeout == 0.0:
        proc.kill()
    else:
        proc.request_stop("shutdown")


def _report_shutdown(owner: Actor, spec: ChildSpec, reason: object) -> None:
    # OTP: a shutdown answered by `shutdown` is fine; a brutal_kill child is killed by
    # design; anything else, a kill after the deadline included, is a shutdown_error
    if is_shutdown_exit(reason) or (reason == "killed" and spec.shutdown_timeout == 0.0):
        return
    sup = owner._process
    sup.runtime.reports.supervisor_report(
        supervisor=sup.name, context="shutdown_error", reason=reason, offender=spec.id
    )
