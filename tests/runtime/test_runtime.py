"""Tests for lmvisor.runtime.runtime: namespaces, root supervisor, shutdown, tree()."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from lmvisor.config.schema import LmvisorConfig
from lmvisor.runtime.actor import Actor, Deferred, handler
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.correlation import correlation_scope
from lmvisor.runtime.logger import get_logger
from lmvisor.runtime.logging import capture_logs
from lmvisor.runtime.messages import Call
from lmvisor.runtime.runtime import Runtime, RuntimeStatistics, current_runtime
from lmvisor.runtime.supervisor import Supervisor

from .helpers import Counter, Crash, Deferring, Get, Slow, eventually


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
        """Spawning into a closed runtime raises RuntimeError."""
        async with Runtime.open(namespace="gone") as rt:
            pass
        with pytest.raises(RuntimeError, match=r"^runtime 'gone' is closed$"):
            await rt.spawn(Counter())


class TestShutdown:
    async def test_exit_stops_tree_in_reverse_and_leaves_no_task(self) -> None:
        """On exit children stop in reverse start order and no runtime task remains."""
        before = set(asyncio.all_tasks())
        log: list[str] = []
        async with Runtime.open() as rt:
            for label in "ab":
                await rt.start_child(ChildSpec(label, lambda label=label: Counter(log, label)))
            sub = Supervisor([ChildSpec("c", lambda: Counter(log, "c"))])
            await rt.start_child(ChildSpec("sub", lambda: sub, type="supervisor"))
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


class TestTree:
    async def test_tree_snapshot_shows_ids_status_restarts_and_reason(
        self, runtime: Runtime
    ) -> None:
        """tree() reports each node's id, kind, status, restarts and last crash reason."""
        sub = Supervisor([ChildSpec("w", Counter, name="w")])
        await runtime.start_child(ChildSpec("sub", lambda: sub, type="supervisor"))
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
        sub = Supervisor([ChildSpec("w", Counter, name="w")])
        await runtime.start_child(ChildSpec("sub", lambda: sub, type="supervisor"))
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
