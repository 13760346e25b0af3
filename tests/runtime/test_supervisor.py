"""Tests for lmvisor.runtime.supervisor: OTP start/stop order, strategies, intensity, backoff."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from lmvisor.runtime.actor import Actor, ActorRef
from lmvisor.runtime.child_spec import Backoff, ChildSpec
from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.errors import ActorExited, StartError
from lmvisor.runtime.messages import Shutdown
from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.runtime import Runtime
from lmvisor.runtime.supervisor import (
    ChildCounts,
    Supervisor,
    count_children,
    delete_child,
    restart_child,
    start_child,
    terminate_child,
    which_children,
)

from .helpers import Add, Counter, Crash, Get, StopMe, eventually


def _spec(log: list[str], label: str, **kw: object) -> ChildSpec:
    return ChildSpec(label, lambda: Counter(log, label), **kw)  # type: ignore[arg-type]


async def _start_sup(runtime: Runtime, specs: list[ChildSpec], **flags: object) -> ActorRef:
    return await runtime.start_child(
        ChildSpec("sup", lambda: Supervisor(specs, **flags), type="supervisor")  # type: ignore[arg-type]
    )


async def _refs(sup: ActorRef) -> dict[str, ActorRef | None]:
    return {c.id: c.ref for c in await which_children(sup)}


async def _crash(ref: ActorRef) -> None:
    with capture_logs():
        await ref.cast(Crash())
        await ref.wait_exit()


class TestStartAndStop:
    async def test_children_start_in_order_and_stop_in_reverse(self, runtime: Runtime) -> None:
        """Child N+1 starts after N's started(); shutdown terminates in reverse order."""
        log: list[str] = []
        sup = await _start_sup(runtime, [_spec(log, x) for x in "abc"])
        assert log == ["a:started", "b:started", "c:started"]
        await runtime.terminate_child("sup")
        assert log[3:] == [
            "c:terminate:'shutdown'",
            "b:terminate:'shutdown'",
            "a:terminate:'shutdown'",
        ]
        assert not sup.alive

    async def test_failed_child_start_stops_started_siblings(self, runtime: Runtime) -> None:
        """If child b fails to start, a is stopped, c never starts, and StartError names b."""
        log: list[str] = []

        class Broken(Actor):
            async def started(self) -> None:
                raise ValueError("cannot start")

        specs = [_spec(log, "a"), ChildSpec("b", Broken), _spec(log, "c")]
        with capture_logs() as logs, pytest.raises(StartError) as info:
            await runtime.spawn(Supervisor(specs))
        inner = info.value.reason
        assert isinstance(inner, StartError)
        assert inner.child_id == "b"
        assert str(inner).endswith("failed to start child 'b': ValueError('cannot start')")
        assert log == ["a:started", "a:terminate:'shutdown'"]
        assert [e["context"] for e in logs if e["event"] == "supervisor.report"] == ["start_error"]

    async def test_start_child_failure_leaves_supervisor_running(self, runtime: Runtime) -> None:
        """A failing start_child raises StartError while the supervisor keeps its children."""
        log: list[str] = []
        sup = await _start_sup(runtime, [_spec(log, "a")])

        def boom() -> Actor:
            raise RuntimeError("factory failed")

        with pytest.raises(StartError, match=r"failed to start child 'x': RuntimeError"):
            await start_child(sup, ChildSpec("x", boom))
        assert list(await _refs(sup)) == ["a"]

    async def test_duplicate_child_id_is_rejected(self, runtime: Runtime) -> None:
        """start_child with an id already present raises ValueError."""
        log: list[str] = []
        sup = await _start_sup(runtime, [_spec(log, "a")])
        with pytest.raises(ValueError, match=r"^child id 'a' is already present in Supervisor<"):
            await start_child(sup, _spec(log, "a"))


class TestStrategies:
    @pytest.mark.parametrize(
        ("strategy", "restarted"),
        [
            ("one_for_one", {"b"}),
            ("rest_for_one", {"b", "c"}),
            ("one_for_all", {"a", "b", "c"}),
        ],
    )
    async def test_strategy_restarts_the_right_children(
        self, runtime: Runtime, strategy: str, restarted: set[str]
    ) -> None:
        """A crash of b restarts exactly the children its strategy names."""
        log: list[str] = []
        sup = await _start_sup(runtime, [_spec(log, x) for x in "abc"], strategy=strategy)
        before = await _refs(sup)
        b = before["b"]
        assert b is not None
        await _crash(b)
        after = await _refs(sup)
        changed = {cid for cid in before if before[cid] != after[cid]}
        assert changed == restarted
        assert all(ref is not None and ref.alive for ref in after.values())

    async def test_rest_for_one_stops_later_children_in_reverse_then_restarts_in_order(
        self, runtime: Runtime
    ) -> None:
        """rest_for_one terminates d then c, then starts b, c, d in order."""
        log: list[str] = []
        sup = await _start_sup(runtime, [_spec(log, x) for x in "abcd"], strategy="rest_for_one")
        b = (await _refs(sup))["b"]
        assert b is not None
        log.clear()
        await _crash(b)
        await which_children(sup)
        assert log == [
            "b:terminate:RuntimeError('boom')",
            "d:terminate:'shutdown'",
            "c:terminate:'shutdown'",
            "b:started",
            "c:started",
            "d:started",
        ]


class TestRestartTypes:
    @pytest.mark.parametrize(
        ("restart", "how", "restarted"),
        [
            ("permanent", "normal", True),
            ("permanent", "shutdown", True),
            ("permanent", "crash", True),
            ("transient", "normal", False),
            ("transient", "shutdown", False),
            ("transient", "shutdown_detail", False),
            ("transient", "crash", True),
            ("temporary", "normal", False),
            ("temporary", "crash", False),
        ],
    )
    async def test_restart_type_by_exit_reason(
        self, runtime: Runtime, restart: str, how: str, restarted: bool
    ) -> None:
        """OTP's matrix: restart type x exit reason decides whether the child comes back."""
        log: list[str] = []
        sup = await _start_sup(runtime, [_spec(log, "w", restart=restart)])
        ref = (await _refs(sup))["w"]
        assert ref is not None
        if how == "crash":
            await _crash(ref)
        else:
            reason = Shutdown("done") if how == "shutdown_detail" else how
            await ref.cast(StopMe(reason))
            await ref.wait_exit()
        children = await which_children(sup)
        if restarted:
            assert children[0].ref is not None and children[0].ref != ref
        elif restart == "temporary":
            assert children == []
        else:
            assert children[0].ref is None
            assert children[0].status == "stopped"


class TestIntensity:
    async def test_intensity_exceeded_escalates_to_parent(
        self, runtime: Runtime, mock_clock: MockClock
    ) -> None:
        """Too many crashes in the window stop the supervisor; its parent restarts it."""
        log: list[str] = []
        inner_spec = ChildSpec(
            "inner",
            lambda: Supervisor([_spec(log, "w")], max_restarts=1),
            type="supervisor",
        )
        outer = await _start_sup(runtime, [inner_spec])
        inner = (await _refs(outer))["inner"]
        assert inner is not None
        with capture_logs() as logs:
            for _ in range(2):
                worker = (await _refs(inner))["w"]
                assert worker is not None
                await worker.cast(Crash())
                await worker.wait_exit()
            reason = await inner.wait_exit()
        assert reason == Shutdown("reached_max_restart_intensity")
        reports = [
            (e["supervisor"], e["context"], e["reason"], e["offender"])
            for e in logs
            if e["event"] == "supervisor.report"
        ]
        # the inner gives up; the outer, as OTP's, reports its permanent child's exit
        assert reports[-2:] == [
            (inner.name, "shutdown", "reached_max_restart_intensity", "w"),
            (outer.name, "child_terminated", reason, "inner"),
        ]
        new_inner = (await _refs(outer))["inner"]
        assert new_inner is not None and new_inner != inner
        assert (await _refs(new_inner))["w"] is not None

    async def test_restarts_outside_the_window_do_not_escalate(
        self, runtime: Runtime, mock_clock: MockClock
    ) -> None:
        """Crashes spaced wider than max_seconds never exhaust the intensity."""
        log: list[str] = []
        sup = await _start_sup(runtime, [_spec(log, "w")], max_restarts=1, max_seconds=5.0)
        for _ in range(4):
            ref = (await _refs(sup))["w"]
            assert ref is not None
            await _crash(ref)
            mock_clock.advance(5.5)
        assert sup.alive
        assert runtime.tree().find("w") is not None

    async def test_failed_restart_is_retried_then_escalates(
        self, runtime: Runtime, mock_clock: MockClock
    ) -> None:
        """A child that cannot be restarted is retried via a message to self, up to intensity."""
        starts: list[int] = []

        def factory() -> Actor:
            starts.append(1)
            if len(starts) > 1:
                raise RuntimeError("no more")
            return Counter()

        sup = await _start_sup(runtime, [ChildSpec("w", factory)], max_restarts=2)
        ref = (await _refs(sup))["w"]
        assert ref is not None
        with capture_logs():
            await _crash(ref)
            assert await sup.wait_exit() == Shutdown("reached_max_restart_intensity")
        assert len(starts) == 3


class TestReports:
    async def test_child_crash_is_reported_with_fixed_keys(self, runtime: Runtime) -> None:
        """A crashed child yields supervisor.report with supervisor, context, reason, offender."""
        log: list[str] = []
        sup = await _start_sup(runtime, [_spec(log, "w")])
        ref = (await _refs(sup))["w"]
        assert ref is not None
        with capture_logs() as logs:
            await ref.cast(Crash("reported"))
            reason = await ref.wait_exit()
            await which_children(sup)
        report = next(e for e in logs if e["event"] == "supervisor.report")
        assert report["supervisor"] == sup.name
        assert report["context"] == "child_terminated"
        assert report["reason"] is reason
        assert report["offender"] == "w"
        assert [e["event"] for e in logs if e["log_level"] == "debug"] == ["supervisor.progress"]

    @pytest.mark.parametrize(
        ("restart", "reason", "reported"),
        [
            ("permanent", "normal", True),
            ("permanent", "shutdown", True),
            ("permanent", Shutdown("done"), True),
            ("transient", "normal", False),
            ("transient", "shutdown", False),
            ("transient", Shutdown("done"), False),
            ("temporary", "normal", False),
            ("temporary", Shutdown("done"), False),
        ],
    )
    async def test_orderly_exit_is_reported_only_for_a_permanent_child(
        self, runtime: Runtime, restart: str, reason: object, reported: bool
    ) -> None:
        """As OTP's do_restart: a permanent child's exit is child_terminated whatever its reason."""
        log: list[str] = []
        sup = await _start_sup(runtime, [_spec(log, "w", restart=restart)])
        ref = (await _refs(sup))["w"]
        assert ref is not None
        with capture_logs() as logs:
            await ref.cast(StopMe(reason))
            await ref.wait_exit()
            await which_children(sup)
        reports = [
            (e["context"], e["reason"], e["offender"])
            for e in logs
            if e["event"] == "supervisor.report"
        ]
        assert reports == ([("child_terminated", reason, "w")] if reported else [])


class TestShutdown:
    async def test_hanging_terminate_is_cancelled_after_shutdown_timeout(
        self, runtime: Runtime
    ) -> None:
        """terminate_child kills a child whose terminate() outlives its shutdown deadline."""

        class Hang(Actor):
            async def terminate(self, reason: object) -> None:
                await asyncio.Event().wait()

        sup = await _start_sup(runtime, [ChildSpec("h", Hang, shutdown=0.05)])
        ref = (await _refs(sup))["h"]
        assert ref is not None
        await terminate_child(sup, "h")
        assert not ref.alive
        assert ref._proc.task is not None and ref._proc.task.done()

    async def test_brutal_kill_skips_terminate(self, runtime: Runtime) -> None:
        """A brutal_kill child is cancelled without its terminate() running."""
        log: list[str] = []
        sup = await _start_sup(runtime, [_spec(log, "k", shutdown="brutal_kill")])
        await terminate_child(sup, "k")
        assert log == ["k:started"]


class TestChildManagement:
    async def test_terminate_restart_delete_child(self, runtime: Runtime) -> None:
        """terminate keeps the spec with ref None; restart starts it; delete forgets it."""
        log: list[str] = []
        sup = await _start_sup(runtime, [_spec(log, "a"), _spec(log, "b")])
        await terminate_child(sup, "a")
        infos = await which_children(sup)
        assert [(i.id, i.ref is None, i.status) for i in infos] == [
            ("a", True, "terminated"),
            ("b", False, "running"),
        ]
        assert await count_children(sup) == ChildCounts(specs=2, active=1, supervisors=0, workers=2)
        new_a = await restart_child(sup, "a")
        assert await new_a.call(Get()) == 0
        with pytest.raises(ValueError, match=r"^child 'a' is running$"):
            await restart_child(sup, "a")
        with pytest.raises(ValueError, match=r"^child 'b' is running$"):
            await delete_child(sup, "b")
        await terminate_child(sup, "b")
        await delete_child(sup, "b")
        assert [i.id for i in await which_children(sup)] == ["a"]

    async def test_unknown_child_id_raises_value_error(self, runtime: Runtime) -> None:
        """Operations on an unknown id raise ValueError naming it."""
        sup = await _start_sup(runtime, [])
        for op in (terminate_child, restart_child, delete_child):
            fn: Callable[..., object] = op
            with pytest.raises(ValueError, match=r"^Supervisor<\d+> has no child 'zz'$"):
                await fn(sup, "zz")  # type: ignore[misc]

    async def test_terminate_child_by_ref(self, runtime: Runtime) -> None:
        """terminate_child also accepts the child's ref."""
        log: list[str] = []
        sup = await _start_sup(runtime, [_spec(log, "a")])
        ref = (await _refs(sup))["a"]
        assert ref is not None
        await terminate_child(sup, ref)
        assert not ref.alive


class TestNamesAndBackoff:
    async def test_restarted_child_is_reregistered_under_its_name(self, runtime: Runtime) -> None:
        """A restarted child gets a new unequal ref, and via(name) reaches it."""
        log: list[str] = []
        await _start_sup(runtime, [_spec(log, "c", name=("counter", 1))])
        old = runtime.whereis(("counter", 1))
        assert old is not None
        await old.call(Add(5))
        await _crash(old)
        await which_children(runtime.root)
        await eventually(lambda: runtime.whereis(("counter", 1)) is not None)
        new = runtime.whereis(("counter", 1))
        assert new is not None and new != old
        assert await runtime.via(("counter", 1)).call(Get()) == 0

    async def test_backoff_delays_restart_on_the_clock(
        self, runtime: Runtime, mock_clock: MockClock
    ) -> None:
        """With backoff, the child stays 'restarting' until the clock passes the delay."""
        log: list[str] = []
        sup = await _start_sup(
            runtime, [_spec(log, "w")], backoff=Backoff(min=1.0, max=8.0, jitter=0.0)
        )
        ref = (await _refs(sup))["w"]
        assert ref is not None
        await _crash(ref)
        infos = await which_children(sup)
        assert (infos[0].ref, infos[0].status) == (None, "restarting")
        await eventually(lambda: mock_clock.sleepers == 1)
        mock_clock.advance(0.5)
        assert (await which_children(sup))[0].ref is None
        mock_clock.advance(0.5)
        await eventually(lambda: runtime.tree().find("w").status == "running")  # type: ignore[union-attr]
        assert (await which_children(sup))[0].ref is not None

    async def test_rest_for_one_pending_restart_waits_for_an_earlier_crash(
        self, runtime: Runtime, mock_clock: MockClock
    ) -> None:
        """rest_for_one: a delayed restart of b, c never starts them before a crashed a is back."""
        log: list[str] = []
        specs = [_spec(log, label) for label in ("a", "b", "c")]
        backoff = Backoff(min=1.0, max=8.0, jitter=0.0)
        sup = await _start_sup(
            runtime, specs, strategy="rest_for_one", backoff=backoff, max_restarts=10
        )
        refs = await _refs(sup)
        assert refs["a"] is not None and refs["b"] is not None
        log.clear()
        await _crash(refs["b"])  # b and c wait 1 s
        await _crash(refs["a"])  # a, b and c wait 2 s
        await eventually(lambda: mock_clock.sleepers == 2)  # two delayed restarts
        mock_clock.advance(1.0)
        await eventually(lambda: sup.statistics().in_flight == 1)  # b's attempt is queued
        assert [(c.id, c.status) for c in await which_children(sup)] == [
            ("a", "restarting"), ("b", "restarting"), ("c", "restarting"),
        ]  # fmt: skip
        mock_clock.advance(1.0)
        await eventually(lambda: runtime.tree().find("c").status == "running")  # type: ignore[union-attr]
        assert [line for line in log if line.endswith(":started")] == [
            "a:started", "b:started", "c:started",
        ]  # fmt: skip

    async def test_restarting_child_cannot_be_restarted_or_deleted(
        self, runtime: Runtime, mock_clock: MockClock
    ) -> None:
        """As in OTP ({error, restarting}), a child awaiting its backoff restart is left alone."""
        log: list[str] = []
        sup = await _start_sup(
            runtime, [_spec(log, "w")], backoff=Backoff(min=1.0, max=8.0, jitter=0.0)
        )
        ref = (await _refs(sup))["w"]
        assert ref is not None
        await _crash(ref)
        with pytest.raises(ValueError, match=r"^child 'w' is restarting$"):
            await restart_child(sup, "w")
        with pytest.raises(ValueError, match=r"^child 'w' is restarting$"):
            await delete_child(sup, "w")
        await eventually(lambda: mock_clock.sleepers == 1)
        mock_clock.advance(1.0)
        await eventually(lambda: runtime.tree().find("w").status == "running")  # type: ignore[union-attr]
        infos = await which_children(sup)
        assert [(i.id, i.status) for i in infos] == [("w", "running")]

    async def test_significant_child_exit_shuts_supervisor_down(self, runtime: Runtime) -> None:
        """With any_significant, a significant child exiting normally stops the supervisor."""
        log: list[str] = []
        sup = await _start_sup(
            runtime,
            [_spec(log, "a"), _spec(log, "s", restart="transient", significant=True)],
            auto_shutdown="any_significant",
        )
        s = (await _refs(sup))["s"]
        assert s is not None
        await s.cast(StopMe("normal"))
        assert await sup.wait_exit() == "shutdown"
        assert "a:terminate:'shutdown'" in log


class TestAllSignificant:
    async def test_all_significant_waits_for_the_last_one(self, runtime: Runtime) -> None:
        """With all_significant, the supervisor stops only when every significant child has."""
        log: list[str] = []
        specs = [
            _spec(log, "s1", restart="temporary", significant=True),
            _spec(log, "s2", restart="temporary", significant=True),
        ]
        sup = await _start_sup(runtime, specs, auto_shutdown="all_significant")
        refs = await _refs(sup)
        s1, s2 = refs["s1"], refs["s2"]
        assert s1 is not None and s2 is not None
        await s1.cast(StopMe("normal"))
        await s1.wait_exit()
        assert [c.id for c in await which_children(sup)] == ["s2"]
        await s2.cast(StopMe("normal"))
        assert await sup.wait_exit() == "shutdown"

    async def test_a_significant_child_awaiting_restart_has_not_exited(
        self, runtime: Runtime, mock_clock: MockClock
    ) -> None:
        """all_significant: a crashed transient child waiting out its backoff still counts."""
        log: list[str] = []
        specs = [
            _spec(log, "s1", restart="transient", significant=True),
            _spec(log, "s2", restart="transient", significant=True),
        ]
        backoff = Backoff(min=1.0, max=8.0, jitter=0.0)
        sup = await _start_sup(runtime, specs, auto_shutdown="all_significant", backoff=backoff)
        refs = await _refs(sup)
        s1, s2 = refs["s1"], refs["s2"]
        assert s1 is not None and s2 is not None
        await _crash(s1)
        await s2.cast(StopMe("normal"))
        await s2.wait_exit()
        assert [(c.id, c.status) for c in await which_children(sup)] == [
            ("s1", "restarting"), ("s2", "stopped"),
        ]  # fmt: skip
        await eventually(lambda: mock_clock.sleepers == 1)
        mock_clock.advance(1.0)
        await eventually(lambda: runtime.tree().find("s1").status == "running")  # type: ignore[union-attr]
        assert sup.alive


class TestFlags:
    @pytest.mark.parametrize(
        ("flags", "message"),
        [
            ({"strategy": "simple"}, r"^Supervisor\.strategy must be one of"),
            ({"max_restarts": -1}, r"^Supervisor\.max_restarts must be an int >= 0, got -1$"),
            ({"max_seconds": 0}, r"^Supervisor\.max_seconds must be a number > 0, got 0$"),
            ({"backoff": 3}, r"^Supervisor\.backoff must be a Backoff or None, got 3$"),
            ({"auto_shutdown": "yes"}, r"^Supervisor\.auto_shutdown must be one of"),
        ],
    )
    def test_invalid_flags_raise_value_error(self, flags: dict[str, object], message: str) -> None:
        """Each invalid flag raises ValueError naming it."""
        with pytest.raises(ValueError, match=message):
            Supervisor([], **flags)  # type: ignore[arg-type]

    def test_duplicate_child_ids_are_rejected(self) -> None:
        """Two specs with one id raise ValueError at construction."""
        with pytest.raises(ValueError, match=r"^duplicate child id 'a'$"):
            Supervisor([ChildSpec("a", Counter), ChildSpec("a", Counter)])

    async def test_dead_supervisor_rejects_requests(self, runtime: Runtime) -> None:
        """Client functions on a stopped supervisor raise ActorExited."""
        sup = await _start_sup(runtime, [])
        await runtime.terminate_child("sup")
        with pytest.raises(ActorExited):
            await which_children(sup)


class TestGroupRestarts:
    @pytest.mark.parametrize(
        ("strategy", "restarted"),
        [("one_for_all", {"a", "b", "c"}), ("rest_for_one", {"b", "c"})],
    )
    async def test_group_restart_starts_terminated_siblings_too(
        self, runtime: Runtime, strategy: str, restarted: set[str]
    ) -> None:
        """As OTP does, a group restart also starts group members stopped by terminate_child."""
        log: list[str] = []
        sup = await _start_sup(runtime, [_spec(log, x) for x in "abc"], strategy=strategy)
        await terminate_child(sup, "c")
        if strategy == "one_for_all":
            await terminate_child(sup, "a")
        b = (await _refs(sup))["b"]
        assert b is not None
        await _crash(b)
        infos = {i.id: i for i in await which_children(sup)}
        running = {cid for cid, info in infos.items() if info.status == "running"}
        assert running == {"a", "b", "c"}
        assert {cid for cid in restarted if infos[cid].ref is not None} == restarted

    async def test_one_for_all_failed_restart_restarts_the_whole_group_again(
        self, runtime: Runtime, mock_clock: MockClock
    ) -> None:
        """OTP one_for_all_other_child_fails_restart: c1, back already, goes down and up again."""
        log: list[str] = []
        attempts: list[int] = []

        def flaky() -> Actor:
            attempts.append(1)
            if len(attempts) == 2:  # the first restart of c2 fails, the next succeeds
                raise RuntimeError("not yet")
            return Counter(log, "c2")

        specs = [_spec(log, "c1"), ChildSpec("c2", flaky)]
        sup = await _start_sup(runtime, specs, strategy="one_for_all", max_restarts=5)
        c1 = (await _refs(sup))["c1"]
        assert c1 is not None
        log.clear()
        with capture_logs() as logs:
            await _crash(c1)
            await which_children(sup)
            await which_children(sup)
        assert log == [
            "c1:terminate:RuntimeError('boom')",
            "c2:terminate:'shutdown'",
            "c1:started",  # the group restart: c1 is back, then c2 fails to start
            "c1:terminate:'shutdown'",  # so c1 is shut down again
            "c1:started",  # and the whole group is started once more
            "c2:started",
        ]
        contexts = [e["context"] for e in logs if e["event"] == "supervisor.report"]
        assert contexts == ["child_terminated", "start_error"]
        assert all(info.status == "running" for info in await which_children(sup))

    async def test_rest_for_one_failed_restart_retries_from_the_failed_child(
        self, runtime: Runtime, mock_clock: MockClock
    ) -> None:
        """rest_for_one keeps the children already back and retries from the one that failed."""
        log: list[str] = []
        attempts: list[int] = []

        def flaky() -> Actor:
            attempts.append(1)
            if len(attempts) == 2:
                raise RuntimeError("not yet")
            return Counter(log, "c2")

        specs = [_spec(log, "c1"), ChildSpec("c2", flaky), _spec(log, "c3")]
        sup = await _start_sup(runtime, specs, strategy="rest_for_one", max_restarts=5)
        c1 = (await _refs(sup))["c1"]
        assert c1 is not None
        log.clear()
        with capture_logs():
            await _crash(c1)
            await which_children(sup)
            await which_children(sup)
        assert log == [
            "c1:terminate:RuntimeError('boom')",
            "c3:terminate:'shutdown'",
            "c2:terminate:'shutdown'",
            "c1:started",
            "c2:started",  # the retry starts c2 and c3, and leaves c1 alone
            "c3:started",
        ]


class TestShutdownOutcomes:
    @pytest.mark.parametrize(
        ("shutdown", "hangs", "reason", "reported"),
        [
            (0.01, True, "killed", True),  # overran its time: killed, a shutdown_error
            ("brutal_kill", True, "killed", False),  # killed by design: nothing to report
            (1.0, False, "shutdown", False),  # stopped in time
        ],
    )
    async def test_exit_reason_and_report_by_shutdown(
        self, runtime: Runtime, shutdown: object, hangs: bool, reason: str, reported: bool
    ) -> None:
        """A child killed after its shutdown time exits "killed", reported as a shutdown_error."""

        class Child(Actor):
            async def terminate(self, why: object) -> None:
                if hangs:
                    await asyncio.Event().wait()

        sup = await _start_sup(runtime, [ChildSpec("h", Child, shutdown=shutdown)])  # type: ignore[arg-type]
        ref = (await _refs(sup))["h"]
        assert ref is not None
        with capture_logs() as logs:
            await terminate_child(sup, "h")
        assert ref.exit_reason == reason
        errors = [
            (e["context"], e["reason"], e["offender"])
            for e in logs
            if e["event"] == "supervisor.report"
        ]
        assert errors == ([("shutdown_error", "killed", "h")] if reported else [])

    @pytest.mark.parametrize(
        ("restart", "restarted"),
        [("permanent", True), ("transient", True), ("temporary", False)],
    )
    async def test_killed_is_an_abnormal_exit(
        self, runtime: Runtime, restart: str, restarted: bool
    ) -> None:
        """A child killed when its stop overran exits "killed": restarted unless temporary."""

        class Hang(Actor):
            async def terminate(self, why: object) -> None:
                await asyncio.Event().wait()

        spec = ChildSpec("w", Hang, restart=restart, shutdown=0.01)  # type: ignore[arg-type]
        sup = await _start_sup(runtime, [spec])
        ref = (await _refs(sup))["w"]
        assert ref is not None
        with capture_logs():
            await ref.stop("normal", timeout=0.01)
            await which_children(sup)
        assert ref.exit_reason == "killed"
        children = await which_children(sup)
        assert (bool(children) and children[0].ref is not None) is restarted


class TestReusedInstance:
    async def test_start_returning_an_instance_that_ran_is_one_clear_value_error(self) -> None:
        """A start returning the same actor gives one ValueError naming the child, to the owner."""
        from lmvisor.runtime.errors import SupervisorGaveUp

        app = Supervisor([ChildSpec("w", Counter)], max_restarts=0)
        with pytest.raises(SupervisorGaveUp) as info:
            async with Runtime.open(clock=MockClock()) as rt:
                await rt.start_child(ChildSpec("app", lambda: app, type="supervisor"))
                worker = (await _refs(rt.root))["app"]
                assert worker is not None
                w = (await _refs(worker))["w"]
                assert w is not None
                with capture_logs():
                    await w.cast(Crash())  # app gives up; the root restarts it with `start`
                    await rt.wait_closed()
        error = info.value
        assert error.child_id == "app"
        assert isinstance(error.reason, ValueError)
        assert str(error.reason) == (
            "ChildSpec.start of child 'app' returned a Supervisor that already ran; start must "
            "build a new actor on every call (pass a class or a factory, not an instance)"
        )
        reports = rt.events.ring.query(type="supervisor.report")
        start_errors = [e.data for e in reports if e.data["context"] == "start_error"]
        assert len(start_errors) == 1
        assert start_errors[0]["offender"] == "app"

    async def test_start_child_with_a_used_instance_is_a_value_error_at_the_caller(
        self, runtime: Runtime
    ) -> None:
        """start_child of a spec whose start returns a running actor raises ValueError there."""
        actor = Counter()
        await runtime.spawn(actor)
        sup = await _start_sup(runtime, [])
        with pytest.raises(ValueError, match=r"^ChildSpec\.start of child 'x' returned a Counter"):
            await start_child(sup, ChildSpec("x", lambda: actor))
        assert await which_children(sup) == []
