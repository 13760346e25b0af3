"""Tests for lmvisor.runtime.runtime: namespaces, root supervisor, shutdown, tree()."""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass
from typing import Any

import pytest

from lmvisor.config.schema import LmvisorConfig
from lmvisor.runtime.actor import Actor, ActorRef, Deferred, handler
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.correlation import correlation_scope
from lmvisor.runtime.errors import ActorExited, RuntimeClosed, SupervisorGaveUp
from lmvisor.runtime.messages import Call, Shutdown
from lmvisor.runtime.observe.logs import capture_logs, get_logger
from lmvisor.runtime.observe.store import query_events
from lmvisor.runtime.runtime import Runtime, RuntimeStatistics, current_runtime
from lmvisor.runtime.supervisor import Supervisor, which_children
from lmvisor.testing.capture import capture_events

from .helpers import Counter, Crash, CrashCall, Deferring, Get, Slow, eventually


class TestOpen:
    async def test_open_gives_namespace_registry_clock_and_config(self) -> None:
        """Runtime.open stores the config and namespace and starts root and system services."""
        config = LmvisorConfig(server={"port": 1})
        async with Runtime.open(config, "ns1") as rt:
            assert rt.config is config
            assert rt.namespace == "ns1"
            assert rt.registry.namespace == "ns1"
            assert rt.root.alive
            # root, the system supervisor, the config service and the event store
            assert rt.statistics() == RuntimeStatistics(namespace="ns1", actors=4, names=2)
            assert [c.id for c in rt.tree().children] == ["system"]
        assert not rt.root.alive

    async def test_default_namespaces_differ(self) -> None:
        """Two runtimes opened without a namespace get different ones."""
        async with Runtime.open() as a, Runtime.open() as b:
            assert a.namespace != b.namespace

    def test_runtime_is_not_constructed_directly(self) -> None:
        """Runtime() outside open() raises TypeError."""
        with pytest.raises(TypeError, match=r"^Runtime is created by Runtime\.open\(\)"):
            Runtime(object(), config=None, namespace="x", clock=None)  # type: ignore[arg-type]

    async def test_closed_runtime_refuses_spawns(self) -> None:
        """Spawning into a closed runtime raises RuntimeClosed, a RuntimeError too."""
        async with Runtime.open(namespace="gone") as rt:
            pass
        expected = r"^runtime 'gone' is closed: spawning an actor needs a running runtime$"
        with pytest.raises(RuntimeClosed, match=expected) as caught:
            await rt.spawn(Counter())
        assert isinstance(caught.value, RuntimeError)


class TestNamespace:
    @pytest.mark.parametrize("namespace", ["", "   ", 5, b"ns"])
    async def test_namespace_must_be_a_non_empty_string(self, namespace: object) -> None:
        """An empty, blank or non-string namespace is refused before anything starts."""
        with pytest.raises(ValueError, match=r"^Runtime\.open: namespace must be a non-empty str"):
            async with Runtime.open(namespace=namespace):  # type: ignore[arg-type]
                raise AssertionError("the body must not run")

    async def test_config_must_be_a_validated_config(self) -> None:
        """A dict of settings is refused, naming what to pass (it failed later with an
        AttributeError from inside start-up)."""
        with pytest.raises(
            TypeError, match=r"^Runtime\.open: config must be an LmvisorConfig .*got dict$"
        ):
            async with Runtime.open({"data_dir": None}):  # type: ignore[arg-type]
                raise AssertionError("the body must not run")


class TestShutdown:
    async def test_exit_stops_tree_in_reverse_and_leaves_no_task(self) -> None:
        """On exit children stop in reverse start order and no runtime task remains."""
        before = set(asyncio.all_tasks())
        log: list[str] = []
        async with Runtime.open() as rt:
            for label in "ab":
                await rt.start_child(ChildSpec(label, lambda label=label: Counter(log, label)))
            sub = lambda: Supervisor([ChildSpec("c", lambda: Counter(log, "c"))])  # noqa: E731
            await rt.start_child(ChildSpec("sub", sub, type="supervisor"))
            loose = await rt.spawn(Counter(log, "loose"))
            deferring = await rt.spawn(Deferring())
            gate = asyncio.Event()
            pending = asyncio.ensure_future(deferring.call(Slow(gate), timeout=None))
            await eventually(lambda: deferring.statistics().in_flight == 1)
        assert [line.split(":")[0] for line in log if "terminate" in line] == [
            "c",
            "b",
            "a",
            "loose",
        ]
        assert not loose.alive
        assert pending.done()
        assert set(asyncio.all_tasks()) - before == set()


class TestContext:
    async def test_current_runtime_inside_actor(self, runtime: Runtime) -> None:
        """Code running in an actor (and its deferred tasks) finds its runtime."""

        class Probe(Actor):
            @handler
            def get(self, msg: Get) -> Deferred[int]:
                assert current_runtime() is self.runtime
                return self.defer(self._later())

            async def _later(self) -> int:
                return 1 if current_runtime() is self.runtime else 0

        ref = await runtime.spawn(Probe())
        assert await ref.call(Get()) == 1
        assert current_runtime() is runtime  # the plugin's runtime is current in tests

    async def test_spawn_nowait_starts_without_waiting(self, runtime: Runtime) -> None:
        """spawn_nowait returns a ref at once; the actor starts on the next loop turns."""
        log: list[str] = []
        ref = runtime.spawn_nowait(Counter(log), name="quick")
        assert runtime.whereis("quick") is ref
        assert await ref.call(Get()) == 0
        assert log == ["counter:started"]


class TestAsCurrent:
    async def test_current_in_the_block_and_its_tasks_then_not(self) -> None:
        """Inside `as_current()` the runtime is current, in tasks started there too; after,
        the one current before is again."""
        async with Runtime.open() as a, Runtime.open() as b:
            assert current_runtime() is None
            with b.as_current() as entered:
                assert entered is b
                assert current_runtime() is b
                with a.as_current():
                    assert current_runtime() is a
                    assert await asyncio.create_task(_current()) is a
                assert current_runtime() is b
            assert current_runtime() is None

    async def test_library_logs_go_through_its_chain(self) -> None:
        """Library loggers inside the block write through that runtime's chain."""
        async with Runtime.open(namespace="a") as a, Runtime.open(namespace="b"):
            with a.as_current(), capture_logs(a) as logs:
                get_logger("tests.current").info("here")
        (line,) = [e for e in logs if e["event"] == "here"]
        assert line["namespace"] == "a"

    async def test_a_closed_runtime_cannot_be_made_current(self) -> None:
        """Entering a closed runtime raises RuntimeClosed naming it."""
        async with Runtime.open(namespace="gone") as rt:
            pass
        expected = r"^runtime 'gone' is closed: as_current\(\) needs a running runtime$"
        with pytest.raises(RuntimeClosed, match=expected), rt.as_current():
            pass

    async def test_left_in_another_context_restores_the_one_before(self) -> None:
        """Exited from another context than it was entered in, the block still restores
        what was current there before."""
        async with Runtime.open() as rt:
            block = rt.as_current()
            entering = contextvars.copy_context()
            entering.run(block.__enter__)
            assert entering.run(current_runtime) is rt
            leaving = entering.copy()
            leaving.run(block.__exit__, None, None, None)
            assert leaving.run(current_runtime) is None


async def _current() -> Runtime | None:
    return current_runtime()


class TestTree:
    async def test_tree_snapshot_shows_ids_status_restarts_and_reason(
        self, runtime: Runtime
    ) -> None:
        """tree() reports each node's id, kind, status, restarts and last crash reason."""
        sub = lambda: Supervisor([ChildSpec("w", Counter, name="w")])  # noqa: E731
        await runtime.start_child(ChildSpec("sub", sub, type="supervisor"))
        await runtime.start_child(ChildSpec("t", Counter, restart="transient"))
        tree = runtime.tree()
        assert (tree.id, tree.kind, tree.status) == ("root", "supervisor", "running")
        assert [c.id for c in tree.children] == ["system", "sub", "t"]
        assert tree.children[1].kind == "supervisor"
        w = tree.find("w")
        assert w is not None and (w.kind, w.status, w.restarts) == ("worker", "running", 0)
        ref = runtime.whereis("w")
        assert ref is not None
        with capture_logs():
            await ref.cast(Crash("tree"))
            await ref.wait_exit()
        await eventually(lambda: getattr(runtime.tree().find("w"), "status", "") == "running")
        w = runtime.tree().find("w")
        assert w is not None
        assert w.restarts == 1
        assert w.last_reason == "RuntimeError('tree')"
        assert "w [worker] running restarts=1" in runtime.tree().render()
        await runtime.terminate_child("t")
        t = runtime.tree().find("t")
        assert t is not None and (t.status, t.actor, t.mailbox_depth) == ("terminated", None, 0)


@dataclass(frozen=True, slots=True)
class _Say(Call[None]):
    word: str


class _Speaker(Actor):
    @handler
    def say(self, msg: _Say) -> None:
        get_logger("tests.speaker").info("said", word=msg.word, api_key="sk-live-abcdefghijklmnop")


@dataclass(frozen=True, slots=True)
class _Spawn(Call[None]):
    pass


async def _log_later(logger: Any) -> None:
    await asyncio.sleep(0)
    logger.info("from a task")


class TestLogging:
    async def test_actor_log_lines_carry_context_and_are_redacted(self, runtime: Runtime) -> None:
        """A library log line from an actor names the actor, namespace and correlation id."""
        ref = await runtime.spawn(_Speaker())
        with capture_logs() as logs, correlation_scope("corr-1"):
            await ref.call(_Say("hi"))
        (line,) = [e for e in logs if e["event"] == "said"]
        assert line["actor"] == ref.name
        assert line["namespace"] == runtime.namespace
        assert line["correlation_id"] == "corr-1"
        assert "sk-live" not in repr(line)

    async def test_lines_from_started_terminate_and_tasks_name_the_actor(
        self, runtime: Runtime
    ) -> None:
        """Lines from started(), from a terminate() before any message, and from a task a
        handler started all name the actor, though an idle actor is named only once it wakes."""
        logger = get_logger("tests.lifecycle")

        class Starter(Actor):
            async def started(self) -> None:
                logger.info("starting")

        class Quiet(Actor):
            async def terminate(self, reason: object) -> None:
                logger.info("terminating")

        class Spawner(_Speaker):
            @handler
            async def spawn(self, msg: _Spawn) -> None:
                await asyncio.create_task(_log_later(logger))

        with capture_logs() as logs:
            starter = await runtime.spawn(Starter())
            quiet = await runtime.spawn(Quiet())
            await asyncio.sleep(0)  # parked, never sent a message
            await quiet.stop()
            spawner = await runtime.spawn(Spawner())
            await spawner.call(_Spawn())
        named = {e["event"]: e.get("actor") for e in logs if e.get("logger") == "tests.lifecycle"}
        assert named == {
            "starting": starter.name,
            "terminating": quiet.name,
            "from a task": spawner.name,
        }

    async def test_runtimes_log_apart(self) -> None:
        """A capture attached to one runtime sees nothing another runtime logs."""
        async with Runtime.open(namespace="a") as a, Runtime.open(namespace="b") as b:
            speaker_b = await b.spawn(_Speaker())
            with capture_logs(a) as logs:
                await speaker_b.call(_Say("elsewhere"))
        assert [e for e in logs if e["event"] == "said"] == []


class TestMetrics:
    async def test_runtime_figures_are_scraped_from_the_tree(self, runtime: Runtime) -> None:
        """Actors alive and restarts by supervisor come from the live tree at scrape time."""
        sub = lambda: Supervisor([ChildSpec("w", Counter, name="w")])  # noqa: E731
        await runtime.start_child(ChildSpec("sub", sub, type="supervisor"))
        alive = runtime.statistics().actors
        assert runtime.metrics.value("lmvisor_actors_alive") == alive
        ref = runtime.whereis("w")
        assert ref is not None
        with capture_logs():
            await ref.cast(Crash("metrics"))
            await ref.wait_exit()
        await eventually(lambda: getattr(runtime.tree().find("w"), "restarts", 0) == 1)
        assert runtime.metrics.value("lmvisor_supervisor_restarts_total", supervisor="sub") == 1
        assert "lmvisor_actors_alive" in runtime.metrics.render()

    async def test_two_runtimes_keep_metrics_apart(self) -> None:
        """A counter bumped in one runtime's registry does not show in another's."""
        async with Runtime.open(namespace="m1") as a, Runtime.open(namespace="m2") as b:
            a.metrics.record_module("qa", 0.01)
            assert a.metrics.value("lmvisor_module_success_total", module="qa") == 1
            assert b.metrics.value("lmvisor_module_success_total", module="qa") is None


async def _crash_child(rt: Runtime, sup: ActorRef, child_id: str) -> None:
    ref = next(c.ref for c in await which_children(sup) if c.id == child_id)
    assert ref is not None
    ref.cast_nowait(Crash())
    await ref.wait_exit()
    await which_children(sup)  # the exit is handled (and the restart done) before this reply


class TestRootGivesUp:
    async def test_body_is_cancelled_and_open_raises_naming_the_child(self) -> None:
        """Past the root's intensity the body stops at once; open raises with child and reason."""
        reached: list[str] = []
        with capture_logs(), pytest.raises(SupervisorGaveUp) as info:
            async with Runtime.open(clock=MockClock()) as rt:
                await rt.start_child(ChildSpec("w", Counter))
                for _ in range(4):  # the root allows 3 restarts in 5 s
                    await _crash_child(rt, rt.root, "w")
                reached.append("after the crashes")
        error = info.value
        assert reached == []
        assert error.child_id == "w"
        assert isinstance(error.reason, RuntimeError) and str(error.reason) == "boom"
        assert error.__cause__ is error.reason
        assert str(error) == (
            "supervisor root gave up on child 'w' (last exit reason: RuntimeError('boom'))"
        )
        assert error.code == "supervisor_gave_up"
        assert not rt.root.alive and rt.statistics().actors == 0

    async def test_nested_give_up_chains_down_to_the_crash(self) -> None:
        """A supervisor that escalated names its own child: the causes lead to the first crash."""

        def inner() -> Supervisor:
            return Supervisor([ChildSpec("w", Counter)], max_restarts=0)

        with capture_logs(), pytest.raises(SupervisorGaveUp) as info:
            async with Runtime.open(clock=MockClock()) as rt:
                await rt.start_child(ChildSpec("inner", inner, type="supervisor"))
                for _ in range(4):
                    sup = next(c.ref for c in await rt.which_children() if c.id == "inner")
                    assert sup is not None
                    worker = next(c.ref for c in await which_children(sup))
                    assert worker is not None
                    worker.cast_nowait(Crash())
                    await sup.wait_exit()  # max_restarts=0: the first crash is one too many
                    await rt.which_children()
        outer = info.value
        assert (outer.child_id, outer.reason) == (
            "inner",
            Shutdown("reached_max_restart_intensity"),
        )
        inner_error = outer.__cause__
        assert isinstance(inner_error, SupervisorGaveUp)
        assert (inner_error.supervisor, inner_error.child_id) == ("'inner'", "w")
        assert isinstance(inner_error.__cause__, RuntimeError)

    async def test_wait_closed_tells_another_task(self) -> None:
        """A task waiting on wait_closed() gets the same SupervisorGaveUp as the owner."""
        with capture_logs(), pytest.raises(SupervisorGaveUp):
            async with Runtime.open(clock=MockClock()) as rt:
                waiter = asyncio.ensure_future(rt.wait_closed())
                await rt.start_child(ChildSpec("w", Counter))
                for _ in range(4):
                    await _crash_child(rt, rt.root, "w")
        with pytest.raises(SupervisorGaveUp, match=r"^supervisor root gave up on child 'w'"):
            await waiter

    async def test_a_body_that_swallows_the_cancellation_still_gets_the_error(self) -> None:
        """Catching the runtime's cancellation does not hide the failure: open raises on exit."""
        with capture_logs(), pytest.raises(SupervisorGaveUp):
            async with Runtime.open(clock=MockClock()) as rt:
                await rt.start_child(ChildSpec("w", Counter))
                try:
                    for _ in range(4):
                        await _crash_child(rt, rt.root, "w")
                except asyncio.CancelledError:
                    pass

    async def test_a_runtime_whose_root_gave_up_is_closed_before_its_block_exits(self) -> None:
        """Once the root gives up, names resolve to RuntimeClosed even inside the block."""
        seen: list[object] = []
        with capture_logs(), pytest.raises(SupervisorGaveUp):
            async with Runtime.open(namespace="given-up", clock=MockClock()) as rt:
                await rt.start_child(ChildSpec("w", Counter))
                assert not rt.closed
                try:
                    for _ in range(4):
                        await _crash_child(rt, rt.root, "w")
                except asyncio.CancelledError:
                    seen.append(rt.closed)
                    with pytest.raises(RuntimeClosed, match=r"^runtime 'given-up' is closed: "):
                        rt.via("nobody").resolve()
                    seen.append("refused")
        assert seen == [True, "refused"]

    async def test_another_cancellation_still_propagates(self) -> None:
        """If the owner is also cancelled from outside, CancelledError wins, as in asyncio."""
        started = asyncio.Event()

        async def owner() -> None:
            with capture_logs():
                async with Runtime.open(clock=MockClock()) as rt:
                    await rt.start_child(ChildSpec("w", Counter))
                    started.set()
                    await asyncio.Event().wait()

        task = asyncio.ensure_future(owner())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def test_orderly_close_is_no_failure(self) -> None:
        """wait_closed() returns once an orderly exit has shut the tree down."""
        async with Runtime.open() as rt:
            waiter = asyncio.ensure_future(rt.wait_closed())
            await asyncio.sleep(0)
            assert not waiter.done()
        await waiter
        assert waiter.result() is None
        await rt.wait_closed()


class TestReports:
    async def test_crash_reports_land_in_the_event_store_with_fixed_keys(
        self, runtime: Runtime
    ) -> None:
        """actor.crashed and supervisor.report are events too, with the keys of their log lines."""
        sup = await runtime.start_child(
            ChildSpec("sup", lambda: Supervisor([ChildSpec("w", Counter)]), type="supervisor")
        )
        with capture_logs(), capture_events(runtime, ("actor.*", "supervisor.*")) as events:
            with correlation_scope("crash-1"):
                ref = next(c.ref for c in await which_children(sup))
                assert ref is not None
                with pytest.raises(ActorExited):
                    await ref.call(CrashCall())
            await which_children(sup)
        crashed, report = events
        assert crashed.type == "actor.crashed"
        assert set(crashed.data) == {"actor", "last_message", "state", "reason", "caller",
                                     "exception"}  # fmt: skip
        assert crashed.correlation_id == "crash-1" and crashed.data["caller"] == "crash-1"
        assert crashed.data["reason"] == "RuntimeError('boom')"
        assert report.type == "supervisor.report"
        assert report.data == {
            "supervisor": sup.name,
            "context": "child_terminated",
            "reason": "RuntimeError('boom')",
            "offender": "w",
        }
        stored = await query_events(runtime.via("event_store"), type="supervisor.report")
        assert [e.id for e in stored] == [report.id]

    async def test_a_query_sees_reports_made_before_it(self, runtime: Runtime) -> None:
        """Querying the store right after a crash finds its reports (no waiting on the timer)."""
        runtime.reports.delay = 3600.0
        ref = await runtime.spawn(Counter())
        with capture_logs():
            ref.cast_nowait(Crash())
            await ref.wait_exit()
            assert runtime.reports.statistics().pending == 1
            found = await runtime.events.query(type="actor.crashed")
        assert [e.data["actor"] for e in found] == [ref.name]
