"""Property test: random crashes, stops and child operations on random trees keep the invariants.

Invariants after every step, once the tree has settled: every permanent child
is running (unless explicitly terminated) or its supervisor escalated; every
registered name points at a live actor that its supervisor lists; and after
the runtime exits no task is left.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from lmvisor.runtime.actor import ActorRef, ActorStatus, ChildStatistics
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.errors import ActorExited, StartError, SupervisorGaveUp
from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.runtime import Runtime
from lmvisor.runtime.supervisor import (
    Supervisor,
    delete_child,
    restart_child,
    start_child,
    terminate_child,
)

from .helpers import Counter, Crash, StopMe

T = TypeVar("T")

_restarts = st.sampled_from(["permanent", "transient", "temporary"])
_strategies = st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"])
_picks = st.integers(min_value=0, max_value=10_000)


def _worker_spec(child_id: str, restart: str) -> ChildSpec:
    return ChildSpec(child_id, Counter, restart=restart, name=("w", child_id))  # type: ignore[arg-type]


def _sup_spec(child_id: str, specs: list[ChildSpec], strategy: str, max_restarts: int) -> ChildSpec:
    def start() -> Supervisor:
        return Supervisor(specs, strategy=strategy, max_restarts=max_restarts)  # type: ignore[arg-type]

    return ChildSpec(child_id, start, type="supervisor")


async def _settle(runtime: Runtime) -> None:
    """Yield until every actor is idle in its mailbox three checks in a row (no time used)."""
    quiet = 0
    for _ in range(20_000):
        await asyncio.sleep(0)
        idle = all(
            p.status is ActorStatus.RUNNING and p._waiter is not None and not p._queue
            for p in runtime._procs
        )
        quiet = quiet + 1 if idle else 0
        if quiet >= 3:
            return
    raise AssertionError("the tree did not settle")


_SYSTEM_NAMES = frozenset({"config", "event_store"})


class SupervisionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.stack = contextlib.ExitStack()
        self.stack.enter_context(capture_logs())
        self.loop = asyncio.new_event_loop()
        self.context = Runtime.open(namespace="machine", clock=MockClock())
        self.runtime = self.run(self.context.__aenter__())
        self.counter = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def fresh_id(self) -> str:
        self.counter += 1
        return f"c{self.counter}"

    @initialize(
        layout=st.lists(st.tuples(st.booleans(), _restarts, _strategies), min_size=1, max_size=4),
        strategy=_strategies,
    )
    def build(self, layout: list[tuple[bool, str, str]], strategy: str) -> None:
        specs = []
        for is_sup, restart, sub_strategy in layout:
            if is_sup:
                workers = [_worker_spec(self.fresh_id(), restart) for _ in range(2)]
                specs.append(_sup_spec(self.fresh_id(), workers, sub_strategy, 2))
            else:
                specs.append(_worker_spec(self.fresh_id(), restart))
        self.run(self.runtime.start_child(_sup_spec("top", specs, strategy, 4)))

    # --- views of the live tree, read from statistics only ---

    def supervisors(self) -> list[ActorRef]:
        found: list[ActorRef] = []
        pending = [self.runtime.root] if self.runtime.root.alive else []
        while pending:
            ref = pending.pop()
            found.append(ref)
            for child in ref.statistics().children or ():
                if ref is self.runtime.root and child.id == "system":
                    continue  # the runtime's own services are not part of the model
                if child.type == "supervisor" and child.ref is not None and child.ref.alive:
                    pending.append(child.ref)
        return found

    def entries(self) -> list[tuple[ActorRef, ChildStatistics]]:
        return [(sup, c) for sup in self.supervisors() for c in sup.statistics().children or ()]

    def workers(self) -> list[ActorRef]:
        return [
            c.ref
            for _, c in self.entries()
            if c.type == "worker" and c.ref is not None and c.ref.alive
        ]

    async def act(self, coro: Coroutine[Any, Any, object]) -> None:
        with contextlib.suppress(ValueError, ActorExited, StartError):
            await coro
        await _settle(self.runtime)

    # --- rules ---

    @rule(pick=_picks)
    def crash(self, pick: int) -> None:
        workers = self.workers()
        if workers:
            ref = workers[pick % len(workers)]
            ref.cast_nowait(Crash())
            self.run(self.act(ref.wait_exit()))

    @rule(pick=_picks)
    def stop_normally(self, pick: int) -> None:
        workers = self.workers()
        if workers:
            ref = workers[pick % len(workers)]
            ref.cast_nowait(StopMe("normal"))
            self.run(self.act(ref.wait_exit()))

    @rule(pick=_picks)
    def terminate(self, pick: int) -> None:
        entries = self.entries()
        if entries:
            sup, child = entries[pick % len(entries)]
            self.run(self.act(terminate_child(sup, child.id)))

    @rule(pick=_picks)
    def restart(self, pick: int) -> None:
        entries = self.entries()
        if entries:
            sup, child = entries[pick % len(entries)]
            self.run(self.act(restart_child(sup, child.id)))

    @rule(pick=_picks)
    def delete(self, pick: int) -> None:
        entries = self.entries()
        if entries:
            sup, child = entries[pick % len(entries)]
            self.run(self.act(delete_child(sup, child.id)))

    @rule(pick=_picks, restart=_restarts)
    def start_new(self, pick: int, restart: str) -> None:
        sups = self.supervisors()
        if sups:
            sup = sups[pick % len(sups)]
            self.run(self.act(start_child(sup, _worker_spec(self.fresh_id(), restart))))

    # --- invariants ---

    @invariant()
    def permanent_children_run_or_supervisor_escalated(self) -> None:
        for _, child in self.entries():
            assert child.status != "restarting"
            if child.restart == "permanent" and child.status != "terminated":
                assert child.ref is not None and child.ref.alive, child

    @invariant()
    def names_point_only_at_live_listed_actors(self) -> None:
        listed = {c.ref for _, c in self.entries() if c.ref is not None}
        for name, ref in self.runtime.registry._unique.items():
            assert ref.alive, name
            assert ref in listed or name in _SYSTEM_NAMES, name

    def teardown(self) -> None:
        try:
            root_gave_up = not self.runtime.root.alive
            try:
                self.run(self.context.__aexit__(None, None, None))
            except SupervisorGaveUp as exc:
                # escalations reached the root: the owner is told which child of it gave out
                assert root_gave_up
                assert exc.child_id is not None and exc.child_id != "system"
            else:
                assert not root_gave_up
            leftover = self.run(_other_tasks())
            assert leftover == set(), leftover
            assert not self.runtime.root.alive
        finally:
            self.loop.close()
            self.stack.close()


async def _other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


SupervisionMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSupervisionMachine = SupervisionMachine.TestCase
