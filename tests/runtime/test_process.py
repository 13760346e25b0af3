"""Tests for lmvisor.runtime._process: what a dead actor leaves behind, how a kill exits, and
that an actor stays alive (monitors, links, names, calls) until its terminate() returns."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from lmvisor.runtime.actor import Actor, ActorRef, handler
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.errors import ActorExited, NameAlreadyRegistered
from lmvisor.runtime.messages import Cast, Down, Exit
from lmvisor.runtime.runtime import Runtime

from .helpers import Counter, Crash, CrashCall, Get, Watcher, eventually


@dataclass(frozen=True, slots=True)
class Watch(Cast):
    target: ActorRef


class ShortLived(Actor):
    """Monitors a target, then stops (normally) on the next message."""

    def __init__(self) -> None:
        self.notes = ["some", "state"]

    @handler
    def watch(self, msg: Watch) -> None:
        self.monitor(msg.target)
        self.stop("normal")


class Hang(Actor):
    """A terminate() that never finishes on its own."""

    async def terminate(self, reason: object) -> None:
        await asyncio.Event().wait()


async def _watch_and_die(runtime: Runtime, server: ActorRef, count: int) -> None:
    refs = [runtime.spawn_nowait(ShortLived()) for _ in range(count)]
    for ref in refs:
        ref.cast_nowait(Watch(server))
    for ref in refs:
        await ref.wait_exit()


class TestDeathReleasesMonitors:
    async def test_a_thousand_dead_watchers_leave_nothing_on_the_server(
        self, runtime: Runtime
    ) -> None:
        """Monitors held by dead actors are removed from the target: no memory stays reachable."""
        server = await runtime.spawn(Counter())
        await _watch_and_die(runtime, server, 50)  # warm every allocation path first
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await _watch_and_die(runtime, server, 1000)
            await asyncio.sleep(0)
            gc.collect()
            retained = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert not server._proc.watchers
        # before the fix each dead watcher kept ~2.3 KB reachable from the server
        assert retained / 1000 < 200, f"{retained / 1000:.0f} bytes kept per dead watcher"
        assert await server.call(Get()) == 0

    async def test_a_demonitor_then_death_leaves_no_entry(self, runtime: Runtime) -> None:
        """Monitoring twice and demonitoring once still leaves nothing after the watcher dies."""
        target = await runtime.spawn(Counter())
        watcher = Watcher()
        ref = await runtime.spawn(watcher)
        watcher.monitor(target)
        watcher.monitor(target)
        watcher.demonitor(target)
        assert target._proc.watchers == {ref._proc: 1}
        await ref.stop()
        assert not target._proc.watchers

    async def test_a_dead_target_is_forgotten_by_its_watcher(self, runtime: Runtime) -> None:
        """When the monitored actor dies, the watcher keeps no reference to it after the Down."""
        target = await runtime.spawn(Counter())
        watcher = Watcher()
        ref = await runtime.spawn(watcher)
        watcher.monitor(target)
        await target.stop()
        await eventually(lambda: watcher.seen != [])
        assert watcher.seen == [Down(ref=target, reason="normal")]
        assert not ref._proc.monitoring

    async def test_links_are_removed_from_both_sides(self, runtime: Runtime) -> None:
        """A dead actor's links disappear from its partners, which keep running (trapping)."""
        partner = Watcher()
        partner_ref = await runtime.spawn(partner)
        short = await runtime.spawn(Counter())
        partner.link(short)
        assert partner_ref._proc.links == {short._proc}
        await short.stop()
        await eventually(lambda: partner.seen != [])
        assert not partner_ref._proc.links
        assert partner_ref.alive


class TestKill:
    async def test_killed_while_stopping_exits_killed(self, runtime: Runtime) -> None:
        """An actor killed because terminate() overran its stop timeout exits "killed"."""
        watcher = Watcher()
        await runtime.spawn(watcher)
        ref = await runtime.spawn(Hang())
        watcher.monitor(ref)
        await ref.stop("shutdown", timeout=0.01)
        assert ref.exit_reason == "killed"
        await eventually(lambda: watcher.seen != [])
        assert watcher.seen == [Down(ref=ref, reason="killed")]

    async def test_a_stop_that_finishes_in_time_keeps_its_reason(self, runtime: Runtime) -> None:
        """A graceful stop within the timeout exits with the reason asked for."""
        ref = await runtime.spawn(Counter())
        await ref.stop("shutdown", timeout=1.0)
        assert ref.exit_reason == "shutdown"


class Idle(Actor):
    """No state, no started(): what the runtime itself holds for an actor."""

    @handler
    def get(self, msg: Get) -> int:
        return 0


async def _parked(fut: asyncio.Future[None]) -> None:
    await fut


async def _new_tracked(start: Callable[[], object], count: int) -> int:
    """GC-tracked objects still alive after `count` calls of `start` and one loop turn.

    The collector is paused, so every object made since the young generation was
    emptied is still in it, whether or not it is garbage.
    """
    gc.collect(0)
    gc.disable()
    try:
        kept = [start() for _ in range(count)]
        await asyncio.sleep(0)  # every new task runs to its first wait
        return len(gc.get_objects(0)) - 1 if kept else 0  # less `kept` itself
    finally:
        gc.enable()


class TestIdleFootprint:
    async def test_idle_actor_adds_three_tracked_objects_to_a_parked_task(
        self, runtime: Runtime
    ) -> None:
        """An idle actor holds three GC-tracked objects more than a parked asyncio task
        (the actor, its process, its ref): no mailbox deque, bound method or context
        variable of its own, so a burst of spawns wakes the collector less."""
        loop = asyncio.get_running_loop()
        count = 300
        futures: list[asyncio.Future[None]] = []

        def park() -> asyncio.Task[None]:
            futures.append(loop.create_future())
            return loop.create_task(_parked(futures[-1]))

        task = await _new_tracked(park, count)
        for future in futures:
            future.set_result(None)
        actor = await _new_tracked(lambda: runtime.spawn_nowait(Idle()), count)
        assert 2.9 < (actor - task) / count < 3.1, (actor, task)


@dataclass(frozen=True, slots=True)
class Link(Cast):
    target: ActorRef


class Observer(Watcher):
    """A trapping Watcher that monitors or links to a target from its own handlers."""

    @handler
    def watch(self, msg: Watch) -> None:
        self.monitor(msg.target)

    @handler
    def link_to(self, msg: Link) -> None:
        self.link(msg.target)


class SlowTerminate(Counter):
    """A Counter whose terminate() waits for `gate`; `inside` is set once it is waiting."""

    def __init__(self, log: list[str], gate: asyncio.Event, label: str = "slow") -> None:
        super().__init__(log, label)
        self.gate = gate
        self.inside = asyncio.Event()

    async def terminate(self, reason: object) -> None:
        self.inside.set()
        await self.gate.wait()
        self.log.append(f"{self.label}:terminated")


async def _crashed_in_terminate(runtime: Runtime) -> tuple[SlowTerminate, ActorRef, RuntimeError]:
    """A SlowTerminate crashed by a handler and now held inside its terminate()."""
    actor = SlowTerminate([], asyncio.Event())
    ref = await runtime.spawn(actor)
    with pytest.raises(ActorExited) as caught:
        await ref.call(CrashCall("boom"))
    await actor.inside.wait()
    reason = caught.value.reason
    assert isinstance(reason, RuntimeError)
    return actor, ref, reason


class TestAliveUntilTerminateReturns:
    async def test_monitor_set_during_terminate_gets_the_real_reason(
        self, runtime: Runtime
    ) -> None:
        """A monitor placed from another actor while terminate() runs gets Down(real reason)."""
        actor, ref, reason = await _crashed_in_terminate(runtime)
        observer = Observer()
        await runtime.spawn(observer)
        observer.ref.cast_nowait(Watch(ref))
        await eventually(lambda: ref._proc.watchers is not None)
        assert ref.alive and ref.exit_reason is None
        actor.gate.set()
        await eventually(lambda: observer.seen != [])
        assert observer.seen == [Down(ref=ref, reason=reason)]
        assert ref.exit_reason is reason

    async def test_link_set_during_terminate_gets_the_real_reason(self, runtime: Runtime) -> None:
        """A trapping actor linking while terminate() runs gets Exit(real reason), not noproc."""
        actor, ref, reason = await _crashed_in_terminate(runtime)
        observer = Observer()
        await runtime.spawn(observer)
        observer.ref.cast_nowait(Link(ref))
        await eventually(lambda: ref._proc.links is not None)
        actor.gate.set()
        await eventually(lambda: observer.seen != [])
        assert observer.seen == [Exit(ref=ref, reason=reason)]

    async def test_call_during_terminate_waits_then_fails_with_the_real_reason(
        self, runtime: Runtime
    ) -> None:
        """A call made while terminate() runs waits for it, then raises ActorExited(reason)."""
        actor, ref, reason = await _crashed_in_terminate(runtime)
        call = asyncio.ensure_future(ref.call(Get(), timeout=None))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not call.done()
        actor.gate.set()
        with pytest.raises(ActorExited, match=r"^actor SlowTerminate<\d+> exited before") as exc:
            await call
        assert exc.value.reason is reason
        assert actor.log[-1] == "slow:terminated"

    async def test_name_is_held_until_terminate_returns(self, runtime: Runtime) -> None:
        """whereis finds an actor in terminate(); the name is free once it has returned."""
        gate = asyncio.Event()
        actor = SlowTerminate([], gate)
        ref = await runtime.spawn(actor, name="slow")
        await ref.cast(Crash("boom"))
        await actor.inside.wait()
        assert runtime.registry.whereis("slow") is ref
        with pytest.raises(NameAlreadyRegistered):
            await runtime.spawn(Counter(), name="slow")
        gate.set()
        await ref.wait_exit()
        assert runtime.registry.whereis("slow") is None

    async def test_restart_registers_the_name_after_the_old_terminate(
        self, runtime: Runtime
    ) -> None:
        """A supervisor's restart of a named child takes the name only after the old
        incarnation's terminate() has returned; meanwhile whereis gives the old one."""
        log: list[str] = []
        gate = asyncio.Event()
        made: list[SlowTerminate] = []

        def start() -> SlowTerminate:
            # what the name points to as the restart is built (it registers it next)
            log.append(f"build{len(made)}:{runtime.registry.whereis('slow')}")
            made.append(SlowTerminate(log, gate, label=f"slow{len(made)}"))
            return made[-1]

        old = await runtime.start_child(ChildSpec("slow", start, name="slow"))
        old.cast_nowait(Crash("boom"))
        await made[0].inside.wait()
        for _ in range(20):
            await asyncio.sleep(0)
        assert runtime.registry.whereis("slow") is old and len(made) == 1
        gate.set()
        await eventually(lambda: "slow1:started" in log)
        assert log == [
            "build0:None",
            "slow0:started",
            "slow0:terminated",
            "build1:None",
            "slow1:started",
        ]
        assert runtime.registry.whereis("slow") is made[1].ref
