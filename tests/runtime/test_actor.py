"""Tests for lmvisor.runtime.actor: handlers, call/cast, stop, crash, defer, links."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from lmvisor.runtime.actor import Actor, ActorRef, ActorStatus, handler
from lmvisor.runtime.correlation import correlation_scope, current_correlation_id
from lmvisor.runtime.errors import (
    ActorError,
    ActorExited,
    CalledSelf,
    CallTimeout,
    MailboxFull,
    StartError,
)
from lmvisor.runtime.messages import Call, Cast, Down, Exit
from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.runtime import Runtime, current_runtime

from .helpers import (
    Add,
    Counter,
    Crash,
    CrashCall,
    Deferring,
    Echo,
    Get,
    Inc,
    Refuse,
    Slow,
    StopMe,
    Unhandled,
    Watcher,
    eventually,
)


@dataclass(frozen=True, slots=True)
class Block(Call[None]):
    gate: asyncio.Event


@dataclass(frozen=True, slots=True)
class Note(Cast):
    value: int


@dataclass(frozen=True, slots=True)
class WhoAmI(Call[str]):
    pass


class Gated(Actor):
    """An actor with a one-message mailbox whose Block handler waits on a gate."""

    mailbox_capacity = 1

    def __init__(self, policy: str = "backpressure") -> None:
        self.mailbox_policy = policy  # type: ignore[assignment]
        self.notes: list[int] = []

    @handler
    async def block(self, msg: Block) -> None:
        await msg.gate.wait()

    @handler
    def note(self, msg: Note) -> None:
        self.notes.append(msg.value)

    @handler
    def notes_count(self, msg: Get) -> int:
        return len(self.notes)


@dataclass(frozen=True, slots=True)
class Recurse(Call[str]):
    pass


class Recursive(Actor):
    """Calls itself, which must fail fast; keeps what it caught as a plain RuntimeError."""

    def __init__(self) -> None:
        self.caught: RuntimeError | None = None

    @handler
    async def me(self, msg: Recurse) -> str:
        try:
            await self.ref.call(Recurse())
        except RuntimeError as exc:  # the handler code written before CalledSelf existed
            self.caught = exc
            return type(exc).__name__
        return "no error"


class BlockingWatcher(Watcher):
    """A Watcher that can be held inside a handler while notices queue up."""

    @handler
    async def block(self, msg: Block) -> None:
        await msg.gate.wait()


def _taken(ref: ActorRef) -> bool:
    """True once the first message was received and taken out of the mailbox."""
    stats = ref.statistics().mailbox
    return stats.received == 1 and stats.depth == 0


class Introspect(Actor):
    """Answers with the correlation id and runtime namespace it sees."""

    def __init__(self) -> None:
        self.notes: list[str | None] = []

    @handler
    def note(self, msg: Note) -> None:
        self.notes.append(current_correlation_id())

    @handler
    def who(self, msg: WhoAmI) -> str:
        runtime = current_runtime()
        return f"{current_correlation_id()}|{None if runtime is None else runtime.namespace}"


class TestHandlerTable:
    def test_sync_and_async_handlers_are_registered_by_message_class(self) -> None:
        """The handler table maps each annotated message class to its method."""
        assert set(Counter._handlers) >= {Get, Inc, Add, Crash, CrashCall, StopMe, Refuse}
        assert Counter._handlers[Get][1] is False
        assert Counter._handlers[Add][1] is True

    def test_two_handlers_for_one_message_are_rejected(self) -> None:
        """Declaring two handlers for the same message class raises TypeError."""
        with pytest.raises(TypeError, match=r"^Twice has two handlers for Get: a and b$"):

            class Twice(Actor):
                @handler
                def a(self, msg: Get) -> int:
                    return 1

                @handler
                def b(self, msg: Get) -> int:
                    return 2

    def test_handler_must_annotate_a_message_class(self) -> None:
        """A handler whose argument is not a Call or Cast subclass raises TypeError."""
        with pytest.raises(TypeError, match=r"must be annotated with a Call or Cast subclass"):

            class Bad(Actor):
                @handler
                def a(self, msg: int) -> None:
                    return None

    def test_subclass_inherits_and_overrides_handlers(self) -> None:
        """A subclass keeps its base's handlers and may replace them."""

        class Doubling(Counter):
            @handler
            def get(self, msg: Get) -> int:
                return self.n * 2

        assert Doubling._handlers[Get][0] is Doubling.get
        assert Doubling._handlers[Inc][0] is Counter.inc


class TestCall:
    async def test_call_returns_the_handler_reply(self, runtime: Runtime) -> None:
        """A call returns what the handler returned, sync or async."""
        ref = await runtime.spawn(Counter())
        assert await ref.call(Add(3)) == 3
        assert await ref.call(Get()) == 3

    async def test_unhandled_message_type_raises_type_error_at_sender(
        self, runtime: Runtime
    ) -> None:
        """Sending a type with no handler raises TypeError naming the actor and accepted types."""
        ref = await runtime.spawn(Watcher())
        with pytest.raises(
            TypeError,
            match=r"^Watcher<\d+> has no handler for Unhandled; it accepts: Down, Exit, Get$",
        ):
            await ref.cast(Unhandled())
        with pytest.raises(TypeError, match=r"has no handler for Unhandled"):
            ref.cast_nowait(Unhandled())

    async def test_call_to_dead_actor_raises_actor_exited_at_once(self, runtime: Runtime) -> None:
        """A call to a stopped actor raises ActorExited without waiting."""
        ref = await runtime.spawn(Counter())
        await ref.stop()
        with pytest.raises(ActorExited, match=r"^actor Counter<\d+> exited before replying"):
            await ref.call(Get(), timeout=None)

    async def test_call_timeout_raises_call_timeout(self, runtime: Runtime) -> None:
        """A call without a reply in time raises CallTimeout, also a TimeoutError."""
        ref = await runtime.spawn(Deferring())
        gate = asyncio.Event()
        with pytest.raises(CallTimeout, match=r"^call to Deferring<\d+> with Slow timed out"):
            await ref.call(Slow(gate), timeout=0.01)
        assert issubclass(CallTimeout, TimeoutError)
        gate.set()

    async def test_nan_timeout_is_refused_before_sending(self, runtime: Runtime) -> None:
        """call(timeout=nan) raises ValueError at once and the message is never queued."""
        ref = await runtime.spawn(Counter())
        with pytest.raises(ValueError, match=r"^call timeout must be seconds or None, got nan$"):
            await ref.call(Add(1), timeout=float("nan"))
        assert await ref.call(Get()) == 0
        assert ref.statistics().mailbox.received == 1

    async def test_pending_call_fails_when_callee_crashes(self, runtime: Runtime) -> None:
        """The caller of a crashing handler gets ActorExited carrying the exception."""
        ref = await runtime.spawn(Counter())
        with capture_logs(), pytest.raises(ActorExited) as info:
            await ref.call(CrashCall("bad"), timeout=None)
        assert isinstance(info.value.reason, RuntimeError)
        assert info.value.__cause__ is info.value.reason

    async def test_queued_callers_fail_promptly_when_callee_crashes(self, runtime: Runtime) -> None:
        """Calls queued behind a crashing message fail with ActorExited, not a timeout."""
        ref = await runtime.spawn(Counter())
        with capture_logs():
            crash = asyncio.ensure_future(ref.call(CrashCall(), timeout=None))
            queued = [asyncio.ensure_future(ref.call(Get(), timeout=None)) for _ in range(3)]
            results = await asyncio.gather(crash, *queued, return_exceptions=True)
        assert all(isinstance(r, ActorExited) for r in results)

    async def test_error_reply_raises_at_caller_and_actor_survives(self, runtime: Runtime) -> None:
        """A handler returning ErrorReply makes the caller raise while the actor keeps going."""
        ref = await runtime.spawn(Counter())
        with pytest.raises(KeyError, match="refused"):
            await ref.call(Refuse())
        assert ref.alive
        assert await ref.call(Add(1)) == 1

    async def test_call_carries_the_caller_correlation_id(self, runtime: Runtime) -> None:
        """The handler runs in the caller's correlation scope and sees its runtime."""
        ref = await runtime.spawn(Introspect())
        with correlation_scope("corr-1"):
            seen = await ref.call(WhoAmI())
        assert seen == f"corr-1|{runtime.namespace}"
        assert await ref.call(WhoAmI()) == f"None|{runtime.namespace}"

    async def test_cast_carries_the_caller_correlation_id(self, runtime: Runtime) -> None:
        """A cast's handler also runs in the sender's correlation scope."""
        actor = Introspect()
        ref = await runtime.spawn(actor)
        with correlation_scope("corr-cast"):
            await ref.cast(Note(1))
            ref.cast_nowait(Note(2))
        await ref.cast(Note(3))
        assert await ref.call(WhoAmI()) == f"None|{runtime.namespace}"
        assert actor.notes == ["corr-cast", "corr-cast", None]


class TestCast:
    async def test_casts_are_handled_in_order(self, runtime: Runtime) -> None:
        """Casts are handled one at a time in arrival order before a later call."""
        ref = await runtime.spawn(Counter())
        for _ in range(10):
            await ref.cast(Inc())
        ref.cast_nowait(Inc(5))
        assert await ref.call(Get()) == 15

    async def test_fail_fast_mailbox_raises_mailbox_full(self, runtime: Runtime) -> None:
        """Under fail_fast a full mailbox makes cast raise MailboxFull."""
        ref = await runtime.spawn(Gated("fail_fast"))
        gate = asyncio.Event()
        blocked = asyncio.ensure_future(ref.call(Block(gate)))
        await eventually(lambda: _taken(ref))
        await ref.cast(Note(1))
        with pytest.raises(MailboxFull, match=r"^mailbox of Gated<\d+> is full \(capacity 1\)$"):
            await ref.cast(Note(2))
        with pytest.raises(MailboxFull):
            ref.cast_nowait(Note(3))
        gate.set()
        await blocked
        assert await ref.call(Get()) == 1

    async def test_backpressure_mailbox_makes_cast_wait(self, runtime: Runtime) -> None:
        """Under backpressure a full mailbox parks the sender until there is room."""
        ref = await runtime.spawn(Gated())
        gate = asyncio.Event()
        blocked = asyncio.ensure_future(ref.call(Block(gate)))
        await eventually(lambda: _taken(ref))
        await ref.cast(Note(1))
        waiting = asyncio.ensure_future(ref.cast(Note(2)))
        await eventually(lambda: ref.statistics().mailbox.waiting_senders == 1)
        assert not waiting.done()
        gate.set()
        await waiting
        await blocked
        assert await ref.call(Get()) == 2

    async def test_waiting_sender_fails_when_actor_dies(self, runtime: Runtime) -> None:
        """A sender parked on a full mailbox gets ActorExited when the actor dies."""
        ref = await runtime.spawn(Gated())
        gate = asyncio.Event()
        blocked = asyncio.ensure_future(ref.call(Block(gate)))
        await eventually(lambda: _taken(ref))
        await ref.cast(Note(1))
        waiting = asyncio.ensure_future(ref.cast(Note(2)))
        await eventually(lambda: ref.statistics().mailbox.waiting_senders == 1)
        stopping = asyncio.ensure_future(ref.stop(timeout=0.05))
        with pytest.raises(ActorExited):
            await waiting
        await stopping
        with pytest.raises(ActorExited):
            await blocked

    async def test_call_timeout_covers_the_wait_for_room(self, runtime: Runtime) -> None:
        """A call parked on a full backpressure mailbox raises CallTimeout within its timeout."""
        ref = await runtime.spawn(Gated())
        gate = asyncio.Event()
        blocked = asyncio.ensure_future(ref.call(Block(gate)))
        await eventually(lambda: _taken(ref))
        await ref.cast(Note(1))
        with pytest.raises(CallTimeout, match=r"^call to Gated<\d+> with Get timed out"):
            await asyncio.wait_for(ref.call(Get(), timeout=0.01), 5.0)
        stats = ref.statistics().mailbox
        assert (stats.depth, stats.waiting_senders) == (1, 0)
        gate.set()
        await blocked
        assert await ref.call(Get()) == 1


class TestStop:
    async def test_stop_runs_terminate_with_reason(self, runtime: Runtime) -> None:
        """stop() waits for terminate, which receives the reason."""
        log: list[str] = []
        ref = await runtime.spawn(Counter(log))
        await ref.stop("normal")
        assert log == ["counter:started", "counter:terminate:'normal'"]
        assert not ref.alive
        assert ref.statistics().status is ActorStatus.DEAD

    async def test_stopping_a_stopped_actor_is_a_no_op(self, runtime: Runtime) -> None:
        """A second stop returns without effect."""
        log: list[str] = []
        ref = await runtime.spawn(Counter(log))
        await ref.stop()
        await ref.stop("other")
        assert ref.exit_reason == "normal"
        assert log.count("counter:terminate:'normal'") == 1

    async def test_actor_may_stop_itself(self, runtime: Runtime) -> None:
        """A handler calling self.stop ends the actor with that reason."""
        ref = await runtime.spawn(Counter())
        await ref.cast(StopMe("done"))
        assert await ref.wait_exit() == "done"

    async def test_stop_inside_started_runs_terminate(self, runtime: Runtime) -> None:
        """An actor stopping itself in started() exits with that reason after terminate."""
        log: list[str] = []

        class Quits(Counter):
            async def started(self) -> None:
                self.stop("not needed")

        ref = await runtime.spawn(Quits(log))
        assert await ref.wait_exit() == "not needed"
        assert log == ["counter:terminate:'not needed'"]

    async def test_stop_from_outside_during_started_exits_with_the_stop_reason(
        self, runtime: Runtime
    ) -> None:
        """An actor stopped while its started() still runs exits with the stop reason."""
        entered = asyncio.Event()

        class SlowStart(Actor):
            async def started(self) -> None:
                entered.set()
                await asyncio.Event().wait()

        watcher = Watcher()
        watcher_ref = await runtime.spawn(watcher)
        ref = runtime.spawn_nowait(SlowStart())
        watcher.monitor(ref)
        await entered.wait()
        await ref.stop("shutdown")
        assert ref.exit_reason == "shutdown"
        await eventually(lambda: len(watcher.seen) == 1)
        assert watcher.seen == [Down(ref=ref, reason="shutdown")]
        await watcher_ref.stop()

    async def test_hanging_terminate_is_killed_after_timeout(self, runtime: Runtime) -> None:
        """stop(timeout=...) cancels an actor whose terminate does not return."""

        class Hang(Actor):
            async def terminate(self, reason: object) -> None:
                await asyncio.Event().wait()

        ref = await runtime.spawn(Hang())
        await ref.stop(timeout=0.05)
        assert ref.statistics().status is ActorStatus.DEAD
        assert ref._proc.task is not None and ref._proc.task.done()

    async def test_failed_started_raises_start_error_and_frees_name(self, runtime: Runtime) -> None:
        """A started() that raises fails spawn with StartError and leaves the name free."""

        class NoStart(Actor):
            async def started(self) -> None:
                raise ValueError("nope")

        with pytest.raises(StartError, match=r"failed to start child 'NoStart<\d+>'") as info:
            await runtime.spawn(NoStart(), name="n")
        assert isinstance(info.value.reason, ValueError)
        assert runtime.whereis("n") is None


class TestCrash:
    async def test_crash_is_logged_with_fixed_keys(self, runtime: Runtime) -> None:
        """A handler exception logs actor.crashed with actor, last_message, state, reason."""
        ref = await runtime.spawn(Counter())
        with capture_logs() as logs:
            await ref.cast(Crash("kaput"))
            reason = await ref.wait_exit()
        crashes = [e for e in logs if e["event"] == "actor.crashed"]
        assert len(crashes) == 1
        entry = crashes[0]
        assert entry["actor"] == ref.name
        assert entry["last_message"] == Crash("kaput")
        assert entry["state"]["n"] == 0
        assert entry["reason"] is reason
        assert entry["caller"] is None

    async def test_normal_stop_logs_nothing(self, runtime: Runtime) -> None:
        """Normal and shutdown exits produce no report."""
        ref = await runtime.spawn(Counter())
        other = await runtime.spawn(Counter())
        with capture_logs() as logs:
            await ref.stop("normal")
            await other.stop("shutdown")
        assert logs == []

    async def test_crash_affects_only_its_actor(self, runtime: Runtime) -> None:
        """One actor's crash leaves other actors running."""
        a = await runtime.spawn(Counter())
        b = await runtime.spawn(Counter())
        with capture_logs():
            await a.cast(Crash())
            await a.wait_exit()
        assert not a.alive
        assert await b.call(Add(2)) == 2

    async def test_terminate_runs_after_crash(self, runtime: Runtime) -> None:
        """terminate() runs with the exception as reason after a crash."""
        log: list[str] = []
        ref = await runtime.spawn(Counter(log))
        with capture_logs():
            await ref.cast(Crash("x"))
            await ref.wait_exit()
        assert log[-1] == "counter:terminate:RuntimeError('x')"


class TestDeferred:
    async def test_deferred_calls_run_concurrently_up_to_max_in_flight(
        self, runtime: Runtime
    ) -> None:
        """Deferred replies overlap, bounded by max_in_flight, holding back the mailbox."""
        actor = Deferring()
        ref = await runtime.spawn(actor)
        gate = asyncio.Event()
        slow = [asyncio.ensure_future(ref.call(Slow(gate, f"s{i}"))) for i in range(3)]
        echo = asyncio.ensure_future(ref.call(Echo("hi")))
        await eventually(lambda: actor.running == 2)
        assert ref.statistics().in_flight == 2
        assert not echo.done()
        gate.set()
        assert await asyncio.gather(*slow) == ["s0", "s1", "s2"]
        assert await echo == "hi"
        assert actor.peak == 2

    async def test_deferred_exception_goes_to_caller_only(self, runtime: Runtime) -> None:
        """A deferred task's exception is raised at its caller; the actor keeps running."""
        ref = await runtime.spawn(Deferring())
        gate = asyncio.Event()
        gate.set()
        with pytest.raises(ValueError, match=r"^deferred failure$"):
            await ref.call(Slow(gate, "fail"))
        assert await ref.call(Echo("still")) == "still"

    async def test_death_fails_deferred_callers_and_cancels_tasks(self, runtime: Runtime) -> None:
        """When the actor stops, callers waiting on deferred replies get ActorExited at once."""
        actor = Deferring()
        ref = await runtime.spawn(actor)
        gate = asyncio.Event()
        pending = [asyncio.ensure_future(ref.call(Slow(gate), timeout=None)) for _ in range(2)]
        await eventually(lambda: actor.running == 2)
        await ref.stop()
        results = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(r, ActorExited) for r in results)
        assert actor.running == 0

    async def test_kill_while_waiting_for_a_slot_fails_that_caller(self, runtime: Runtime) -> None:
        """A call whose deferral waits for a free slot gets ActorExited if the actor is killed."""
        actor = Deferring()
        ref = await runtime.spawn(actor)
        gate = asyncio.Event()
        calls = [asyncio.ensure_future(ref.call(Slow(gate), timeout=None)) for _ in range(3)]
        await eventually(lambda: actor.running == 2 and ref.statistics().mailbox.depth == 0)
        ref._proc.kill()
        await ref.wait_exit()
        done, _ = await asyncio.wait(calls, timeout=5.0)
        assert len(done) == 3
        assert all(isinstance(c.exception(), ActorExited) for c in calls)

    async def test_deferred_task_runs_under_the_callers_correlation_id(
        self, runtime: Runtime
    ) -> None:
        """The task a reply is deferred to sees the caller's correlation id, as the handler does."""

        class Deferrer(Actor):
            @handler
            def who(self, msg: WhoAmI) -> object:
                async def later() -> str:
                    await asyncio.sleep(0)
                    return str(current_correlation_id())

                return self.defer(later())

        ref = await runtime.spawn(Deferrer())
        with correlation_scope("deferred-1"):
            assert await ref.call(WhoAmI()) == "deferred-1"


@dataclass(frozen=True)
class _Hold(Call[str]):
    gate: asyncio.Event
    with_caller: bool


class _Holder(Actor):
    """Defers each `_Hold` to a task that waits on its gate; records how each task ended."""

    def __init__(self) -> None:
        self.ended: list[str] = []

    @handler
    def hold(self, msg: _Hold) -> object:
        async def wait() -> str:
            try:
                await msg.gate.wait()
            except asyncio.CancelledError:
                self.ended.append("cancelled")
                raise
            self.ended.append("finished")
            return "done"

        return self.defer(wait(), with_caller=msg.with_caller)


class TestDeferredWithCaller:
    @pytest.mark.parametrize("gives_up", ["timeout", "cancel"])
    async def test_a_task_deferred_with_its_caller_ends_when_the_caller_gives_up(
        self, runtime: Runtime, gives_up: str
    ) -> None:
        """`defer(..., with_caller=True)`: a caller's timeout or cancellation cancels the
        task; a plain deferral runs on (OTP's call) and its reply is dropped."""
        actor = _Holder()
        ref = await runtime.spawn(actor)
        gate = asyncio.Event()
        calls = [
            asyncio.ensure_future(ref.call(_Hold(gate, with_caller), timeout=0.05))
            for with_caller in (True, False)
        ]
        if gives_up == "cancel":
            await eventually(lambda: ref.statistics().in_flight == 2)
            for call in calls:
                call.cancel()
        done = await asyncio.gather(*calls, return_exceptions=True)
        expected = CallTimeout if gives_up == "timeout" else asyncio.CancelledError
        assert all(isinstance(d, expected) for d in done)
        await eventually(lambda: actor.ended == ["cancelled"])
        gate.set()
        await eventually(lambda: ref.statistics().in_flight == 0)
        assert actor.ended == ["cancelled", "finished"] and ref.alive

    async def test_a_task_deferred_with_its_caller_answers_it(self, runtime: Runtime) -> None:
        """A caller still waiting gets the task's answer; nothing is cancelled."""
        actor = _Holder()
        ref = await runtime.spawn(actor)
        gate = asyncio.Event()
        gate.set()
        assert await ref.call(_Hold(gate, True)) == "done"
        assert actor.ended == ["finished"]


class TestLinksAndMonitors:
    async def test_monitor_delivers_down_with_reason(self, runtime: Runtime) -> None:
        """A monitored actor's exit arrives as Down(ref, reason)."""
        watcher = Watcher()
        await runtime.spawn(watcher)
        target = await runtime.spawn(Counter())
        watcher.monitor(target)
        await target.stop("bye")
        await eventually(lambda: len(watcher.seen) == 1)
        assert watcher.seen == [Down(ref=target, reason="bye")]

    async def test_monitor_of_dead_actor_delivers_noproc(self, runtime: Runtime) -> None:
        """Monitoring an actor that is already dead delivers Down with "noproc"."""
        watcher = Watcher()
        await runtime.spawn(watcher)
        target = await runtime.spawn(Counter())
        await target.stop()
        watcher.monitor(target)
        await eventually(lambda: len(watcher.seen) == 1)
        assert watcher.seen == [Down(ref=target, reason="noproc")]

    @pytest.mark.parametrize("flush", [True, False])
    async def test_demonitor_flush_drops_a_queued_down(self, runtime: Runtime, flush: bool) -> None:
        """demonitor(flush=True) drops a Down already queued (OTP's [flush]); without, it stays."""
        watcher = BlockingWatcher()
        w = await runtime.spawn(watcher)
        target = await runtime.spawn(Counter())
        other = await runtime.spawn(Counter())
        watcher.monitor(target)
        watcher.monitor(other)
        gate = asyncio.Event()
        blocked = asyncio.ensure_future(w.call(Block(gate)))
        await eventually(lambda: _taken(w))
        await target.stop("bye")
        await other.stop("also")
        watcher.demonitor(target, flush=flush)
        gate.set()
        await blocked
        assert await w.call(Get()) == (1 if flush else 2)
        expected = [Down(ref=other, reason="also")]
        assert watcher.seen == (expected if flush else [Down(ref=target, reason="bye"), *expected])

    async def test_link_propagates_crash_to_non_trapping_actor(self, runtime: Runtime) -> None:
        """A crash of a linked actor stops the other with the same reason."""
        a_actor = Counter()
        a = await runtime.spawn(a_actor)
        b = await runtime.spawn(Counter())
        a_actor.link(b)
        with capture_logs():
            await b.cast(Crash("linked"))
            b_reason = await b.wait_exit()
            a_reason = await a.wait_exit()
        assert a_reason is b_reason

    async def test_trapping_actor_gets_exit_message(self, runtime: Runtime) -> None:
        """A trap_exits actor receives Exit instead of dying."""
        watcher = Watcher()
        w = await runtime.spawn(watcher)
        b = await runtime.spawn(Counter())
        watcher.link(b)
        with capture_logs():
            await b.cast(Crash())
            reason = await b.wait_exit()
        assert await w.call(Get()) == 1
        assert watcher.seen == [Exit(ref=b, reason=reason)]
        assert w.alive

    async def test_normal_exit_does_not_propagate_over_link(self, runtime: Runtime) -> None:
        """A normal exit of a linked actor leaves a non-trapping partner running."""
        a_actor = Counter()
        a = await runtime.spawn(a_actor)
        b = await runtime.spawn(Counter())
        a_actor.link(b)
        await b.stop("normal")
        assert await a.call(Add(1)) == 1


class TestRefs:
    async def test_refs_compare_by_incarnation(self, runtime: Runtime) -> None:
        """Two spawns of equal actors give unequal refs; a ref equals itself."""
        a = await runtime.spawn(Counter())
        b = await runtime.spawn(Counter())
        assert a != b
        assert a == a._proc.ref
        assert "Counter<" in repr(a)

    async def test_actor_instance_cannot_run_twice(self, runtime: Runtime) -> None:
        """Spawning an actor instance that is running, or that ran, raises ValueError."""
        actor = Counter()
        ref = await runtime.spawn(actor)
        with pytest.raises(ValueError, match=r"^Counter instance is already running; an actor"):
            await runtime.spawn(actor)
        await ref.stop()
        with pytest.raises(ValueError, match=r"^Counter instance already ran; an actor instance"):
            await runtime.spawn(actor)

    async def test_ref_before_spawn_raises(self) -> None:
        """Reading self.ref before the actor runs raises RuntimeError."""
        with pytest.raises(RuntimeError, match=r"^Counter is not running under a runtime$"):
            _ = Counter().ref

    async def test_actor_cannot_call_itself(self, runtime: Runtime) -> None:
        """An actor calling its own ref raises CalledSelf (a RuntimeError), not a deadlock."""
        actor = Recursive()
        ref = await runtime.spawn(actor)
        assert await ref.call(Recurse()) == "CalledSelf"
        with pytest.raises(CalledSelf, match=r"^Recursive<\d+> called itself with Recurse$"):
            assert actor.caught is not None
            raise actor.caught

    async def test_called_self_names_the_actor_and_message(self, runtime: Runtime) -> None:
        """CalledSelf is an ActorError with its code, naming the actor and the message type."""
        actor = Recursive()
        ref = await runtime.spawn(actor)
        await ref.call(Recurse())
        caught = actor.caught
        assert isinstance(caught, CalledSelf) and isinstance(caught, ActorError)
        assert (caught.code, caught.retryable) == ("called_self", False)
        assert (caught.actor, caught.message_type) == (ref.name, "Recurse")
        assert caught.context == {"actor": ref.name, "message_type": "Recurse"}


class Secretive(Counter):
    """Redacts its state in crash reports."""

    def format_status(self) -> object:
        return {"n": "<redacted>"}


class TestOwnedTasksAndReports:
    async def test_spawn_task_failure_crashes_the_actor(self, runtime: Runtime) -> None:
        """An exception in a task from spawn_task crashes its owner with that exception."""
        actor = Counter()
        ref = await runtime.spawn(actor)

        async def fail() -> None:
            raise LookupError("owned task failed")

        with capture_logs() as logs:
            actor.spawn_task(fail())
            reason = await ref.wait_exit()
        assert isinstance(reason, LookupError)
        assert [e["event"] for e in logs] == ["actor.crashed"]
        assert logs[0]["last_message"] == "deferred task"

    async def test_spawn_task_is_cancelled_when_owner_stops(self, runtime: Runtime) -> None:
        """Owned tasks are cancelled when the actor stops."""
        actor = Counter()
        ref = await runtime.spawn(actor)
        task = actor.spawn_task(asyncio.Event().wait())
        await ref.stop()
        assert task.cancelled()
        with pytest.raises(ActorExited):
            actor.spawn_task(asyncio.sleep(0))

    async def test_format_status_redacts_crash_state(self, runtime: Runtime) -> None:
        """The crash report's state comes from format_status()."""
        ref = await runtime.spawn(Secretive())
        with capture_logs() as logs:
            await ref.cast(Crash())
            await ref.wait_exit()
        assert logs[0]["state"] == {"n": "<redacted>"}

    async def test_down_without_handler_is_logged_and_dropped(self, runtime: Runtime) -> None:
        """A Down for an actor with no Down handler is logged as unexpected, not a crash."""
        actor = Counter()
        ref = await runtime.spawn(actor)
        target = await runtime.spawn(Counter())
        actor.monitor(target)
        with capture_logs() as logs:
            await target.stop()
            assert await ref.call(Get()) == 0
        assert [(e["event"], e["message"]) for e in logs] == [("actor.unexpected_message", "Down")]
        assert ref.alive
