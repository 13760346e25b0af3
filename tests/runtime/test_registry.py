"""Tests for lmvisor.runtime.registry: unique and duplicate names, cleanup, via."""

from __future__ import annotations

import pytest

from lmvisor.runtime.actor import Actor
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.errors import (
    ActorExited,
    NameAlreadyRegistered,
    NameNotRegistered,
    RuntimeClosed,
)
from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.registry import RegistryStatistics
from lmvisor.runtime.runtime import Runtime

from .helpers import Add, Counter, Crash, Get, Inc


class TestUniqueNames:
    async def test_register_and_whereis(self, runtime: Runtime) -> None:
        """A registered name resolves to its actor; any hashable works."""
        ref = await runtime.spawn(Counter())
        runtime.registry.register(("lm_provider", "openai"), ref)
        assert runtime.whereis(("lm_provider", "openai")) is ref
        assert runtime.whereis("other") is None

    async def test_duplicate_registration_raises(self, runtime: Runtime) -> None:
        """Registering a held name raises NameAlreadyRegistered (a ValueError) naming the holder."""
        a = await runtime.spawn(Counter(), name="cache")
        b = await runtime.spawn(Counter())
        with pytest.raises(
            NameAlreadyRegistered,
            match=rf"^name 'cache' is already registered to {a.name} in namespace ",
        ) as caught:
            runtime.registry.register("cache", b)
        assert isinstance(caught.value, ValueError)
        assert (caught.value.name, caught.value.holder) == ("cache", a.name)
        with pytest.raises(NameAlreadyRegistered, match=r"^name 'cache' is already registered"):
            await runtime.spawn(Counter(), name="cache")
        assert runtime.whereis("cache") is a

    async def test_name_is_removed_when_actor_dies(self, runtime: Runtime) -> None:
        """A dead actor's names disappear, so the name can be reused."""
        ref = await runtime.spawn(Counter(), name="n")
        with capture_logs():
            await ref.cast(Crash())
            await ref.wait_exit()
        assert runtime.whereis("n") is None
        again = await runtime.spawn(Counter(), name="n")
        assert runtime.whereis("n") is again

    async def test_dead_ref_cannot_register(self, runtime: Runtime) -> None:
        """Registering a dead actor raises ActorExited."""
        ref = await runtime.spawn(Counter())
        await ref.stop()
        with pytest.raises(ActorExited):
            runtime.registry.register("late", ref)

    async def test_unregister(self, runtime: Runtime) -> None:
        """unregister frees the name; a second unregister is a no-op."""
        ref = await runtime.spawn(Counter(), name="x")
        runtime.registry.unregister("x")
        runtime.registry.unregister("x")
        assert runtime.whereis("x") is None
        await ref.stop()


class TestDuplicateKeys:
    async def test_lookup_all_serves_pub_sub(self, runtime: Runtime) -> None:
        """Many actors share a duplicate key; lookup_all lists the live ones in order."""
        system_names = runtime.registry.statistics().names
        subs = [await runtime.spawn(Counter()) for _ in range(3)]
        for ref in subs:
            runtime.registry.register_duplicate("topic", ref)
        runtime.registry.register_duplicate("topic", subs[0])
        assert runtime.registry.lookup_all("topic") == subs
        for ref in runtime.registry.lookup_all("topic"):
            await ref.cast(Inc(2))
        assert [await ref.call(Get()) for ref in subs] == [2, 2, 2]
        await subs[1].stop()
        assert runtime.registry.lookup_all("topic") == [subs[0], subs[2]]
        runtime.registry.unregister_duplicate("topic", subs[0])
        assert runtime.registry.lookup_all("topic") == [subs[2]]
        assert runtime.registry.statistics() == RegistryStatistics(
            names=system_names, duplicate_keys=1, duplicate_entries=1
        )

    async def test_duplicate_changes_counts_every_change(self, runtime: Runtime) -> None:
        """Adding, removing and a member's death each bump the count; repeats and misses do not."""
        registry = runtime.registry
        a, b = await runtime.spawn(Counter()), await runtime.spawn(Counter())
        before = registry.duplicate_changes
        registry.register_duplicate("topic", a)
        registry.register_duplicate("topic", a)  # already there: no change
        registry.register_duplicate("topic", b)
        registry.unregister_duplicate("topic", a)
        registry.unregister_duplicate("topic", a)  # not there: no change
        assert registry.duplicate_changes == before + 3
        await b.stop()
        assert registry.duplicate_changes == before + 4
        await a.stop()  # held no duplicate key any more
        assert registry.duplicate_changes == before + 4


class TestVia:
    async def test_via_resolves_at_each_send(self, runtime: Runtime) -> None:
        """via(name) reaches whichever actor holds the name now."""
        address = runtime.via("svc")
        assert not address.alive
        with pytest.raises(NameNotRegistered, match=r"^no actor registered as 'svc' in namespace "):
            await address.call(Get())
        first = await runtime.spawn(Counter(), name="svc")
        assert await address.call(Add(1)) == 1
        await address.stop()
        assert not first.alive
        await runtime.spawn(Counter(), name="svc")
        await address.cast(Inc(4))
        address.cast_nowait(Inc(1))
        assert await address.call(Get()) == 5
        assert address == runtime.via("svc")
        assert address.name == "svc"

    async def test_same_name_in_two_runtimes_never_collides(self) -> None:
        """Each runtime has its own registry: one name maps to two different actors."""
        async with Runtime.open(namespace="a") as ra, Runtime.open(namespace="b") as rb:
            a = await ra.spawn(Counter(), name="cache")
            b = await rb.spawn(Counter(), name="cache")
            await a.call(Add(1))
            assert await ra.via("cache").call(Get()) == 1
            assert await rb.via("cache").call(Get()) == 0
            assert ra.whereis("cache") is a and rb.whereis("cache") is b
            with pytest.raises(ValueError, match=r"belongs to namespace 'a', not 'b'$"):
                rb.registry.register("x", a)


class _CallsOnStop(Actor):
    """Sends to a name nobody holds from its `terminate`, and keeps what that raised."""

    def __init__(self, seen: list[BaseException]) -> None:
        self.seen = seen

    async def terminate(self, reason: object) -> None:
        try:
            await self.runtime.via("nobody").call(Get())
        except Exception as exc:
            self.seen.append(exc)


class TestClosedRuntime:
    async def test_every_send_through_a_name_says_the_runtime_is_closed(self) -> None:
        """After the block, call/cast/cast_nowait/resolve on a via raise RuntimeClosed."""
        async with Runtime.open(namespace="gone") as rt:
            await rt.spawn(Counter(), name="svc")
            address = rt.via("svc")
            assert await address.call(Add(2)) == 2
            assert not rt.closed
        assert rt.closed
        closed = r"^runtime 'gone' is closed: a message to 'svc' needs a running runtime$"
        with pytest.raises(RuntimeClosed, match=closed) as caught:
            await address.call(Get())
        with pytest.raises(RuntimeClosed, match=closed):
            await address.cast(Inc(1))
        with pytest.raises(RuntimeClosed, match=closed):
            address.cast_nowait(Inc(1))
        with pytest.raises(RuntimeClosed, match=closed):
            rt.via("svc").resolve()
        error = caught.value
        assert not isinstance(error, NameNotRegistered)
        assert (error.code, error.retryable, error.namespace) == ("runtime_closed", False, "gone")
        assert rt.whereis("svc") is None

    async def test_an_open_runtime_still_says_the_name_is_not_registered(
        self, runtime: Runtime
    ) -> None:
        """A free name in a running runtime is NameNotRegistered (retryable), not closed."""
        with pytest.raises(NameNotRegistered) as caught:
            await runtime.via("free").call(Get())
        assert caught.value.retryable and not runtime.closed

    async def test_a_send_while_the_tree_stops_is_refused_as_closed(self) -> None:
        """An actor's terminate that sends to a free name during shutdown gets RuntimeClosed."""
        seen: list[BaseException] = []
        async with Runtime.open(namespace="stopping") as rt:
            await rt.start_child(ChildSpec("caller", lambda: _CallsOnStop(seen)))
        assert [type(e) for e in seen] == [RuntimeClosed]
        assert str(seen[0]).startswith("runtime 'stopping' is closed: a message to 'nobody' ")
