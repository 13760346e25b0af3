"""Tests for lmvisor.runtime.dynamic_supervisor: run-time children, max_children, restarts."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from lmvisor.runtime.actor import Actor, ActorRef
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


class Busy(Actor):
    """Records when its terminate() begins and when it is killed in it."""

    def __init__(self, log: list[str], n: int) -> None:
        self.log, self.n = log, n

    async def terminate(self, reason: object) -> None:
        self.log.append(f"begin {self.n}")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.log.append(f"killed {self.n}")
            raise


class TestConcurrentShutdown:
    async def test_every_child_is_told_at_once_under_one_timer(self, runtime: Runtime) -> None:
        """Stopping the supervisor asks all ten busy children before the first is killed."""
        log: list[str] = []
        sup = await _dyn(runtime)
        refs = [
            await start_child(sup, ChildSpec(f"b{n}", lambda n=n: Busy(log, n), shutdown=0.05))
            for n in range(10)
        ]
        with capture_logs() as logs:
            await runtime.terminate_child("dyn")
        first_kill = next(i for i, line in enumerate(log) if line.startswith("killed"))
        assert sorted(log[:first_kill]) == sorted(f"begin {n}" for n in range(10))
        assert sorted(log[first_kill:]) == sorted(f"killed {n}" for n in range(10))
        assert all(ref.exit_reason == "killed" for ref in refs)
        errors = [e for e in logs if e["event"] == "supervisor.report"]
        assert [(e["context"], e["reason"]) for e in errors] == [("shutdown_error", "killed")] * 10

    async def test_each_child_keeps_its_own_allowance(self, runtime: Runtime) -> None:
        """A brutal_kill child is killed at once while a patient one finishes gracefully."""
        log: list[str] = []
        sup = await _dyn(runtime)
        brutal = await start_child(
            sup, ChildSpec("x", lambda: Busy(log, 0), shutdown="brutal_kill")
        )
        patient = await start_child(sup, ChildSpec("p", lambda: Counter(log, "p"), shutdown=5.0))
        await runtime.terminate_child("dyn")
        assert brutal.exit_reason == "killed" and "begin 0" not in log
        assert patient.exit_reason == "shutdown" and "p:terminate:'shutdown'" in log


class TestTerminateChildCost:
    async def test_cost_does_not_depend_on_the_child_targeted(self, runtime: Runtime) -> None:
        """Terminating the newest children costs about what terminating the oldest does."""
        sup = await _dyn(runtime)
        refs = [await start_child(sup, ChildSpec("w", Counter)) for _ in range(3000)]
        newest, oldest = refs[::-1], list(refs)
        spent: dict[str, list[float]] = {"newest": [], "oldest": []}
        # interleaved chunks, compared by median, so a pause of a shared machine
        # (or a collection) lands in one chunk and not in the verdict
        for _ in range(20):
            for side, pool in (("newest", newest), ("oldest", oldest)):
                began = time.perf_counter()
                for _ in range(10):
                    await terminate_child(sup, pool.pop(0))
                spent[side].append(time.perf_counter() - began)
        ratio = statistics.median(spent["newest"]) / statistics.median(spent["oldest"])
        # a scan of a list (the old lookup) made newest-first ~5-8x slower at this size
        assert ratio < 2.5, spent
        assert (await count_children(sup)).specs == 3000 - 400
