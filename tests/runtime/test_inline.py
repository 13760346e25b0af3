"""Tests for inline handlers (lmvisor.runtime._inline): a call run in the caller's own task."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

import pytest

from lmvisor.runtime.actor import Actor, handler
from lmvisor.runtime.correlation import correlation_scope, current_correlation_id
from lmvisor.runtime.errors import ActorExited, CalledSelf, CallTimeout, StartError
from lmvisor.runtime.messages import Call, Cast
from lmvisor.runtime.runtime import Runtime

from .helpers import eventually


@dataclass(frozen=True, slots=True)
class Work(Call[str]):
    gate: asyncio.Event = field(compare=False)
    text: str = "done"


@dataclass(frozen=True, slots=True)
class Fail(Call[str]):
    pass


@dataclass(frozen=True, slots=True)
class Whose(Call[tuple[object, str | None]]):
    pass


@dataclass(frozen=True, slots=True)
class Stubborn(Call[str]):
    pass


@dataclass(frozen=True, slots=True)
class Ping(Cast):
    pass


@dataclass(frozen=True, slots=True)
class Hold(Call[None]):
    gate: asyncio.Event = field(compare=False)


class Worker(Actor):
    """Serves `Work` inline; `Hold` keeps its own message loop busy."""

    def __init__(self) -> None:
        self.running = 0
        self.cancelled = 0
        self.finished = 0

    @handler(inline=True)
    async def work(self, msg: Work) -> str:
        self.running += 1
        try:
            await msg.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
        self.finished += 1
        return msg.text

    @handler(inline=True)
    async def fail(self, msg: Fail) -> str:
        raise ValueError("inline failure")

    @handler(inline=True)
    async def whose(self, msg: Whose) -> tuple[object, str | None]:
        return asyncio.current_task(), current_correlation_id()

    @handler(inline=True)
    async def stubborn(self, msg: Stubborn) -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "swallowed"
        return "never"

    @handler
    async def hold(self, msg: Hold) -> None:
        await msg.gate.wait()


class SelfCallingStart(Worker):
    """Calls its own inline handler from `started()`."""

    async def started(self) -> None:
        await self.ref.call(Fail(), timeout=None)


class SelfCatchingStart(Worker):
    """Calls its own inline handler from `started()` and keeps what that raised."""

    def __init__(self) -> None:
        super().__init__()
        self.caught: CalledSelf | None = None

    async def started(self) -> None:
        try:
            await self.ref.call(Fail(), timeout=None)
        except CalledSelf as exc:
            self.caught = exc


class SlowStart(Worker):
    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__()
        self.gate = gate

    async def started(self) -> None:
        await self.gate.wait()


class TestInlineHandlers:
    async def test_runs_in_the_callers_task_under_its_correlation_id(
        self, runtime: Runtime
    ) -> None:
        """An inline handler runs in the calling task, in the caller's correlation scope."""
        ref = await runtime.spawn(Worker())
        with correlation_scope("inline-1"):
            task, correlation = await ref.call(Whose())
        assert task is asyncio.current_task()
        assert correlation == "inline-1"

    async def test_calls_overlap_while_the_message_loop_is_busy(self, runtime: Runtime) -> None:
        """Inline calls never wait in the mailbox: they run while a handler blocks the loop."""
        actor = Worker()
        ref = await runtime.spawn(actor)
        loop_gate, gate = asyncio.Event(), asyncio.Event()
        held = asyncio.ensure_future(ref.call(Hold(loop_gate), timeout=None))
        calls = [asyncio.ensure_future(ref.call(Work(gate, f"w{i}"))) for i in range(5)]
        await eventually(lambda: actor.running == 5)
        assert ref.statistics().in_flight == 5
        gate.set()
        assert await asyncio.gather(*calls) == ["w0", "w1", "w2", "w3", "w4"]
        assert ref.statistics().in_flight == 0
        loop_gate.set()
        await held

    async def test_exception_goes_to_the_caller_only(self, runtime: Runtime) -> None:
        """The handler's exception is raised at its caller; the actor keeps serving."""
        ref = await runtime.spawn(Worker())
        with pytest.raises(ValueError, match=r"^inline failure$"):
            await ref.call(Fail())
        gate = asyncio.Event()
        gate.set()
        assert await ref.call(Work(gate)) == "done"
        assert ref.alive

    async def test_timeout_cancels_the_work(self, runtime: Runtime) -> None:
        """A call past its timeout raises CallTimeout and its work is cancelled."""
        actor = Worker()
        ref = await runtime.spawn(actor)
        with pytest.raises(CallTimeout, match=r"^call to Worker<\d+> with Work timed out after"):
            await ref.call(Work(asyncio.Event()), timeout=0.05)
        assert (actor.running, actor.cancelled, actor.finished) == (0, 1, 0)
        assert ref.statistics().in_flight == 0

    async def test_callers_cancellation_cancels_the_work(self, runtime: Runtime) -> None:
        """Cancelling the caller cancels the handler's work with it."""
        actor = Worker()
        ref = await runtime.spawn(actor)
        call = asyncio.ensure_future(ref.call(Work(asyncio.Event())))
        await eventually(lambda: actor.running == 1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert (actor.running, actor.cancelled) == (0, 1)

    async def test_death_ends_every_call_with_actor_exited(self, runtime: Runtime) -> None:
        """When the actor stops, each inline call in progress raises ActorExited at once."""
        actor = Worker()
        ref = await runtime.spawn(actor)
        calls = [asyncio.ensure_future(ref.call(Work(asyncio.Event()))) for _ in range(3)]
        await eventually(lambda: actor.running == 3)
        await ref.stop(RuntimeError("gone"))
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, ActorExited) for r in results)
        assert all(isinstance(r, ActorExited) and r.reason == ref.exit_reason for r in results)
        assert actor.cancelled == 3

    async def test_kill_ends_every_call_with_actor_exited(self, runtime: Runtime) -> None:
        """A killed actor's inline callers get ActorExited("killed"), not a cancellation."""
        actor = Worker()
        ref = await runtime.spawn(actor)
        call = asyncio.ensure_future(ref.call(Work(asyncio.Event()), timeout=None))
        await eventually(lambda: actor.running == 1)
        ref._proc.kill()
        with pytest.raises(ActorExited, match=r"^actor Worker<\d+> exited before replying"):
            await call
        assert call.exception() is not None

    async def test_outside_cancellation_at_death_still_cancels(self, runtime: Runtime) -> None:
        """A caller cancelled by its owner as the actor dies is cancelled, not ActorExited."""
        actor = Worker()
        ref = await runtime.spawn(actor)
        call = asyncio.ensure_future(ref.call(Work(asyncio.Event())))
        await eventually(lambda: actor.running == 1)
        call.cancel()
        ref._proc.die("shutdown")  # the death lands before the caller runs again
        ref._proc.kill()
        with pytest.raises(asyncio.CancelledError):
            await call
        await ref.wait_exit()

    async def test_a_caller_task_stays_usable_after_a_timeout(self, runtime: Runtime) -> None:
        """The timeout's cancellation is taken back: the caller's later awaits run normally."""
        ref = await runtime.spawn(Worker())
        with pytest.raises(CallTimeout):
            await ref.call(Work(asyncio.Event()), timeout=0.01)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await asyncio.sleep(0.01)

    async def test_a_swallowed_timeout_leaves_the_caller_uncancelled(
        self, runtime: Runtime
    ) -> None:
        """A handler that swallows the timeout's cancellation answers; the task is clean."""
        ref = await runtime.spawn(Worker())
        assert await ref.call(Stubborn(), timeout=0.01) == "swallowed"
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0

    async def test_call_during_start_waits_for_started(self, runtime: Runtime) -> None:
        """A call made while `started()` runs waits for it, then runs."""
        gate, work_gate = asyncio.Event(), asyncio.Event()
        work_gate.set()
        ref = runtime.spawn_nowait(SlowStart(gate))
        call = asyncio.ensure_future(ref.call(Work(work_gate, "after start")))
        await asyncio.sleep(0.01)
        assert not call.done()
        gate.set()
        assert await call == "after start"

    async def test_call_during_start_counts_against_the_timeout(self, runtime: Runtime) -> None:
        """A start that outlasts the call's timeout raises CallTimeout."""
        gate = asyncio.Event()
        ref = runtime.spawn_nowait(SlowStart(gate))
        with pytest.raises(CallTimeout):
            await ref.call(Work(asyncio.Event()), timeout=0.02)
        gate.set()
        await ref.stop()

    async def test_timeout_after_a_waited_start_names_the_callers_timeout(
        self, runtime: Runtime
    ) -> None:
        """A call that waited for `started()` times out on what was left, naming its timeout."""
        gate = asyncio.Event()
        actor = SlowStart(gate)
        ref = runtime.spawn_nowait(actor)
        call = asyncio.ensure_future(ref.call(Work(asyncio.Event()), timeout=0.2))
        await asyncio.sleep(0.01)
        gate.set()
        with pytest.raises(CallTimeout, match=r"timed out after 0\.2s$"):
            await call
        assert (actor.running, actor.cancelled) == (0, 1)

    async def test_call_to_itself_from_started_fails_at_once(self, runtime: Runtime) -> None:
        """An inline call from the actor's own started() raises instead of waiting for it."""
        with pytest.raises(StartError) as caught:
            await asyncio.wait_for(runtime.spawn(SelfCallingStart()), 5.0)
        reason = caught.value.reason
        assert isinstance(reason, CalledSelf) and isinstance(reason, RuntimeError)
        assert re.match(r"^SelfCallingStart<\d+> called itself with Fail$", str(reason))

    async def test_call_to_itself_from_started_is_called_self(self, runtime: Runtime) -> None:
        """The inline self-call from started() raises CalledSelf in started() itself."""
        actor = SelfCatchingStart()
        ref = await asyncio.wait_for(runtime.spawn(actor), 5.0)
        with pytest.raises(CalledSelf, match=r"^SelfCatchingStart<\d+> called itself with Fail$"):
            assert actor.caught is not None
            raise actor.caught
        assert actor.caught.context == {"actor": ref.name, "message_type": "Fail"}
        await ref.stop()

    async def test_call_to_a_dead_actor_raises_at_once(self, runtime: Runtime) -> None:
        """An inline call to a stopped actor raises ActorExited without running."""
        actor = Worker()
        ref = await runtime.spawn(actor)
        await ref.stop()
        with pytest.raises(ActorExited, match=r"^actor Worker<\d+> exited before replying"):
            await ref.call(Work(asyncio.Event()))
        assert actor.running == 0


class TestInlineDeclaration:
    def test_inline_handler_must_be_async(self) -> None:
        """A plain `def` marked inline is refused when the class is made."""
        with pytest.raises(
            TypeError, match=r"^inline handler Bad\.work must be an async def handling a Call$"
        ):

            class Bad(Actor):
                @handler(inline=True)
                def work(self, msg: Fail) -> str:
                    return ""

    def test_inline_handler_must_handle_a_call(self) -> None:
        """A Cast cannot be handled inline: there is no caller to run it."""
        with pytest.raises(
            TypeError, match=r"^inline handler Bad\.ping must be an async def handling a Call$"
        ):

            class Bad(Actor):
                @handler(inline=True)
                async def ping(self, msg: Ping) -> None:
                    return None
