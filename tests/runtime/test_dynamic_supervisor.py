"""Tests for lmvisor.runtime.dynamic_supervisor: run-time children, max_children, restarts."""

from __future__ import annotations

import pytest

from lmvisor.runtime.actor import ActorRef
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.dynamic_supervisor import DynamicSupervisor
from lmvisor.runtime.errors import StartError
from lmvisor.runtime.messages import Shutdown
from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.runtime import Runtime
from lmvisor.runtime.supervisor import (
    ChildCounts,
    count_children,
    start_child,
    terminate_child,
    which_children,
)

from .helpers import Add, Counter, Crash, Get, StopMe


async def _dyn(runtime: Runtime, **flags: object) -> ActorRef:
    return await runtime.start_child(
        ChildSpec("dyn", lambda: DynamicSupervisor(**flags), type="supervisor")  # type: ignore[arg-type]
    )


class TestDynamicSupervisor:
    async def test_start_and_terminate_children(self, runtime: Runtime) -> None:
        """Children start at run time, may share an id, and terminate_child forgets them."""
        sup = await _dyn(runtime)
        a = await start_child(sup, ChildSpec("w", Counter))
        b = await start_child(sup, ChildSpec("w", Counter))
        assert a != b
        assert await a.call(Add(1)) == 1
        assert await count_children(sup) == ChildCounts(specs=2, active=2, supervisors=0, workers=2)
        await terminate_child(sup, a)
        assert not a.alive
        assert [c.ref for c in await which_children(sup)] == [b]
        with pytest.raises(ValueError, match=r"^DynamicSupervisor<\d+> has no child <ActorRef"):
            await terminate_child(sup, a)

    async def test_max_children_is_enforced(self, runtime: Runtime) -> None:
        """A start beyond max_children fails with StartError (reason max_children)."""
        sup = await _dyn(runtime, max_children=1)
        await start_child(sup, ChildSpec("w", Counter))
        with pytest.raises(StartError, match=r"failed to start child 'x': 'max_children'$"):
            await start_child(sup, ChildSpec("x", Counter))

    async def test_children_restart_by_type(self, runtime: Runtime) -> None:
        """A permanent child is restarted; a transient one that exits normally is dropped."""
        sup = await _dyn(runtime)
        perm = await start_child(sup, ChildSpec("p", Counter))
        trans = await start_child(sup, ChildSpec("t", Counter, restart="transient"))
        with capture_logs():
            await perm.cast(Crash())
            await perm.wait_exit()
        await trans.cast(StopMe("normal"))
        await trans.wait_exit()
        infos = await which_children(sup)
        assert [i.id for i in infos] == ["p"]
        assert infos[0].ref is not None and infos[0].ref != perm
        assert await infos[0].ref.call(Get()) == 0

    async def test_intensity_escalates(self, runtime: Runtime, mock_clock: MockClock) -> None:
        """Too many restarts stop the dynamic supervisor with the escalation reason."""
        sup = await _dyn(runtime, max_restarts=0)
        ref = await start_child(sup, ChildSpec("p", Counter))
        with capture_logs():
            await ref.cast(Crash())
            assert await sup.wait_exit() == Shutdown("reached_max_restart_intensity")

    def test_invalid_max_children(self) -> None:
        """A negative max_children raises ValueError naming it."""
        with pytest.raises(ValueError, match=r"^DynamicSupervisor\.max_children must be"):
            DynamicSupervisor(max_children=-1)
