"""Tests for lmvisor.runtime.observe.store: the SQLite sink and the EventStore."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from lmvisor.config.schema import EventsConfig
from lmvisor.runtime import _sqlite
from lmvisor.runtime.actor import Actor, handler
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.correlation import correlation_scope
from lmvisor.runtime.errors import ActorExited, EventsFileUnavailable
from lmvisor.runtime.messages import Call
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.names import STORE_RECORD_SKIPPED
from lmvisor.runtime.observe.sink import SqliteEventSink
from lmvisor.runtime.observe.store import (
    EventNotice,
    EventStore,
    UnsubscribeEvents,
    emit_event,
    event_store_spec,
    event_subscription_key,
    query_events,
    subscribe_events,
)
from lmvisor.runtime.runtime import Runtime
from tests.runtime._protection_helpers import until


def _ring(namespace: str = "ns", capacity: int = 100) -> EventRing:
    ticks = itertools.count(1000.0)
    return EventRing(capacity, namespace=namespace, wall_clock=lambda: next(ticks))


class TestSqliteEventSink:
    async def test_flushed_events_survive_a_crash(self, tmp_path: Path) -> None:
        """Events committed by a flush are found by a new sink even if the old one never closed."""
        path = tmp_path / "events.sqlite"
        ring = _ring()
        crashed = SqliteEventSink(path)
        await crashed.open()
        with correlation_scope("c1"):
            events = [ring.emit("t", {"n": n, "nested": {"k": [1, 2]}}) for n in range(3)]
        for event in events:
            crashed.write(event)
        assert await crashed.flush() == 3
        revived = SqliteEventSink(path)
        await revived.open()
        assert await revived.query(correlation_id="c1") == events
        await revived.close()
        await crashed.close()

    async def test_a_file_another_process_holds_is_waited_for(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Opening a file while another connection holds its write lock (as when two processes
        create one file at once) waits for it to let go instead of failing "database is locked"."""
        path = tmp_path / "events.sqlite"
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("CREATE TABLE other (x)")
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO other VALUES (1)")
        pauses: list[float] = []

        def let_go_then_pause(seconds: float) -> None:
            pauses.append(seconds)  # the switch to WAL met the lock and is retried...
            if holder.in_transaction:
                holder.execute("COMMIT")  # ...and the other process lets go meanwhile

        monkeypatch.setattr(_sqlite, "_pause", let_go_then_pause)
        sink = SqliteEventSink(path)
        await sink.open()
        event = _ring().emit("t", {"n": 1})
        sink.write(event)
        assert await sink.flush() == 1
        assert await sink.query() == [event]
        await sink.close()
        holder.close()
        assert len(pauses) == 1
        with sqlite3.connect(path) as check:
            assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    async def test_rows_holding_no_event_are_read_past(self, tmp_path: Path) -> None:
        """Rows no flush wrote (data not JSON, nested past the decoder, not an object, a
        column of the wrong type) are skipped and counted: the good events still load, and a
        store on the file starts."""
        path = tmp_path / "e.sqlite"
        sink = SqliteEventSink(path)
        await sink.open()
        good = _ring().emit("t", {"n": 1})
        sink.write(good)
        await sink.flush()
        await sink.close()
        insert = (
            "INSERT INTO events (id, type, data, correlation_id, parent_id, timestamp, namespace)"
            " VALUES (?, ?, {}, NULL, NULL, ?, 'ns')"
        )
        with sqlite3.connect(path) as conn:
            for n, data in enumerate(["{", "[" * 100_000 + "]" * 100_000, "[1]"]):
                conn.execute(insert.format("?"), (f"bad-{n}", "t", data, 1000.0))
            conn.execute(insert.format("CAST(X'FF7B7D' AS TEXT)"), ("not-utf8", "t", 1000.0))
            conn.execute(insert.format("'{}'"), ("bad-type", b"t", 1000.0))  # a blob
            conn.execute(insert.format("'{}'"), ("bad-ts", "t", "x"))
        revived = SqliteEventSink(path)
        await revived.open()
        assert await revived.query() == [good]
        assert revived.skipped_rows == 6
        await revived.close()
        store = EventStore(_ring(), SqliteEventSink(path))
        await store.open()
        found = await store.query(limit=10)
        assert (found[0].id, found[1].type) == (good.id, STORE_RECORD_SKIPPED)
        assert found[1].data["record"] == "6 rows of e.sqlite"
        await store.close()

    async def test_query_filters(self, tmp_path: Path) -> None:
        """The sink filters by type pattern, since, limit and namespace like the ring."""
        sink = SqliteEventSink(tmp_path / "e.sqlite")
        await sink.open()
        ring, other = _ring("ns"), _ring("other")
        for event in (ring.emit("a.x"), ring.emit("b.y"), ring.emit("a.z"), other.emit("a.q")):
            sink.write(event)
        await sink.flush()
        assert [e.type for e in await sink.query(type="a.*", namespace="ns")] == ["a.x", "a.z"]
        assert [e.type for e in await sink.query(since=1001.0, namespace="ns")] == ["b.y", "a.z"]
        assert [e.type for e in await sink.query(limit=1)] == ["a.q"]
        await sink.close()

    async def test_writing_twice_is_harmless(self, tmp_path: Path) -> None:
        """Flushing an event again does not duplicate it."""
        sink = SqliteEventSink(tmp_path / "e.sqlite")
        await sink.open()
        event = _ring().emit("t")
        sink.write(event)
        sink.write(event)
        await sink.flush()
        assert await sink.query() == [event]
        await sink.close()

    async def test_retention_by_count_and_age(self, tmp_path: Path) -> None:
        """prune() keeps only the newest retention_count events younger than retention_seconds."""
        sink = SqliteEventSink(
            tmp_path / "e.sqlite",
            retention_count=3,
            retention_seconds=10.0,
            wall_clock=lambda: 1012.5,
        )
        await sink.open()
        ring = _ring()
        for n in range(6):
            sink.write(ring.emit("t", {"n": n}))
        await sink.flush()
        assert await sink.prune() == 3
        assert [e.data["n"] for e in await sink.query()] == [3, 4, 5]
        for n in range(6, 14):
            sink.write(ring.emit("t", {"n": n}))
        await sink.flush()
        await sink.prune()
        assert [e.data["n"] for e in await sink.query()] == [11, 12, 13]
        await sink.close()

    async def test_close_flushes(self, tmp_path: Path) -> None:
        """close() writes what is still buffered."""
        path = tmp_path / "e.sqlite"
        sink = SqliteEventSink(path)
        await sink.open()
        sink.write(_ring().emit("t"))
        assert sink.pending == 1
        await sink.close()
        await sink.close()
        again = SqliteEventSink(path)
        await again.open()
        assert len(await again.query()) == 1
        await again.close()

    @pytest.mark.parametrize("kind", ["garbage", "directory", "under_a_file"])
    async def test_an_unusable_file_is_a_typed_error_naming_it(
        self, tmp_path: Path, kind: str
    ) -> None:
        """A file that is not a database, a directory, or a path under a file is
        EventsFileUnavailable naming the file, and a garbage file is left as it was."""
        path = tmp_path / "events.sqlite"
        content = b"not a database, just some bytes " * 64
        if kind == "garbage":
            path.write_bytes(content)
        elif kind == "directory":
            path.mkdir()
        else:
            (tmp_path / "file").write_text("x")
            path = tmp_path / "file" / "events.sqlite"
        with pytest.raises(EventsFileUnavailable) as info:
            await SqliteEventSink(path).open()
        assert info.value.path == str(path)
        assert str(info.value).startswith(f"events file {str(path)!r} cannot be used: ")
        assert isinstance(info.value.__cause__, (sqlite3.Error, OSError))
        if kind == "garbage":
            assert path.read_bytes() == content

    async def test_unopened_sink(self, tmp_path: Path) -> None:
        """Using a sink before open() is a programming error."""
        sink = SqliteEventSink(tmp_path / "e.sqlite")
        with pytest.raises(RuntimeError, match=r"is not open$"):
            await sink.flush()

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"batch_size": 0}, r"^batch_size must be >= 1, got 0$"),
            ({"retention_seconds": 0.0}, r"^retention_seconds must be > 0, got 0\.0$"),
            ({"retention_count": 0}, r"^retention_count must be >= 1, got 0$"),
        ],
    )
    def test_bad_arguments(self, tmp_path: Path, kwargs: dict[str, float], message: str) -> None:
        """Bad sizes are rejected at construction with the field named."""
        with pytest.raises(ValueError, match=message):
            SqliteEventSink(tmp_path / "e.sqlite", **kwargs)  # type: ignore[arg-type]


class TestEventStore:
    async def test_store_keeps_events_across_its_restart(self, tmp_path: Path) -> None:
        """A restarted store refills its ring from SQLite and answers queries about the past."""
        config = EventsConfig(sqlite_path=tmp_path / "events.sqlite", ring_size=10)
        first = EventStore.from_config(config, namespace="ns", clock=MockClock())
        await first.open()
        with correlation_scope("before"):
            kept = first.emit("module.finished", {"ok": True})
        await first.close()
        second = EventStore.from_config(config, namespace="ns", clock=MockClock())
        await second.open()
        assert second.ring.query() == [kept]
        assert await second.query(correlation_id="before") == [kept]
        await second.close()

    async def test_pump_flushes_on_interval(self, tmp_path: Path) -> None:
        """The pump flushes after flush_interval on the injected clock."""
        clock = MockClock()
        sink = SqliteEventSink(tmp_path / "e.sqlite")
        store = EventStore(_ring(), sink, flush_interval=1.0, clock=clock)
        await store.open()
        store.emit("t")
        pump = asyncio.create_task(store.pump())
        await until(lambda: clock.sleepers == 1)
        assert sink.pending == 1
        clock.advance(1.0)
        await until(lambda: sink.pending == 0, rounds=200_000)
        pump.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pump
        await store.close()

    async def test_pump_flushes_full_batches_early(self, tmp_path: Path) -> None:
        """A full batch wakes the pump before the interval ends."""
        clock = MockClock()
        sink = SqliteEventSink(tmp_path / "e.sqlite", batch_size=2)
        store = EventStore(_ring(), sink, flush_interval=60.0, clock=clock)
        await store.open()
        pump = asyncio.create_task(store.pump())
        await until(lambda: clock.sleepers == 1)
        store.emit("t")
        store.emit("t")
        await until(lambda: sink.pending == 0, rounds=200_000)
        pump.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pump
        await store.close()

    async def test_memory_only_store(self) -> None:
        """Without a sink the ring answers queries and subscriptions filter by type."""
        store = EventStore(_ring())
        await store.open()
        seen: list[str] = []
        remove = store.subscribe(lambda e: seen.append(e.type), types="module.*")
        store.emit("module.started")
        store.emit("lm.request")
        remove()
        store.emit("module.finished")
        assert seen == ["module.started"]
        assert [e.type for e in await store.query(type="lm.request")] == ["lm.request"]
        await store.close()

    def test_flush_interval_must_be_positive(self) -> None:
        """A store needs a positive flush interval."""
        with pytest.raises(ValueError, match=r"^flush_interval must be > 0, got 0$"):
            EventStore(_ring(), flush_interval=0)


# --- the actor ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Seen(Call[list[str]]):
    pass


class _Subscriber(Actor):
    """Collects the types of the events it is notified of."""

    def __init__(self) -> None:
        self.types: list[str] = []

    @handler
    def notice(self, msg: EventNotice) -> None:
        self.types.append(msg.event.type)

    @handler
    def seen(self, msg: _Seen) -> list[str]:
        return list(self.types)


# The runtime runs its own store under the default name; these tests start a
# second one beside it.
STORE = "event_store_under_test"


def _memory_spec(capacity: int = 100) -> ChildSpec:
    return event_store_spec(lambda: EventStore(_ring(capacity=capacity)), id=STORE, name=STORE)


class TestEventStoreActor:
    async def test_emit_and_query_keep_the_sender_scope(self, runtime: Runtime) -> None:
        """Events cast to the actor carry the sender's correlation scope and can be queried."""
        await runtime.start_child(_memory_spec())
        store = runtime.via(STORE)
        with correlation_scope("outer"), correlation_scope("req-1"):
            await emit_event(store, "module.started", {"module": "qa"})
        await emit_event(store, "other")
        found = await query_events(store, correlation_id="req-1")
        assert [(e.type, e.parent_id, dict(e.data)) for e in found] == [
            ("module.started", "outer", {"module": "qa"})
        ]
        assert [e.type for e in await query_events(store, type=("other",))] == ["other"]

    async def test_bad_query_is_refused_not_fatal(self, runtime: Runtime) -> None:
        """A bad query raises at the caller and the store keeps running."""
        ref = await runtime.start_child(_memory_spec())
        with pytest.raises(ValueError, match=r"^limit must be >= 0, got -1$"):
            await query_events(ref, limit=-1)
        assert ref.alive

    async def test_subscribers_get_matching_notices(self, runtime: Runtime) -> None:
        """Subscribers get an EventNotice for each new event matching their patterns, once."""
        await runtime.start_child(_memory_spec())
        store = runtime.via(STORE)
        modules = await runtime.spawn(_Subscriber())
        everything = await runtime.spawn(_Subscriber())
        await subscribe_events(store, modules, ("module.*", "module.finished"))
        await subscribe_events(store, everything)
        key = event_subscription_key("module.*")
        assert runtime.registry.lookup_all(key) == [modules]
        for event_type in ("module.started", "lm.request", "module.finished"):
            await emit_event(store, event_type)
        await query_events(store)
        assert await modules.call(_Seen()) == ["module.started", "module.finished"]
        assert await everything.call(_Seen()) == [
            "module.started",
            "lm.request",
            "module.finished",
        ]
        await store.call(UnsubscribeEvents(subscriber=modules, types=("module.*",)))
        await emit_event(store, "module.started")
        await query_events(store)
        assert await modules.call(_Seen()) == ["module.started", "module.finished"]

    async def test_new_subscriber_gets_types_already_seen(self, runtime: Runtime) -> None:
        """Subscribing after events of a type went out unheard still brings the next ones."""
        await runtime.start_child(_memory_spec())
        store = runtime.via(STORE)
        subscriber = await runtime.spawn(_Subscriber())
        await emit_event(store, "module.started")
        await subscribe_events(store, subscriber, ("module.*",))
        await emit_event(store, "module.started")
        await query_events(store)
        assert await subscriber.call(_Seen()) == ["module.started"]

    async def test_dead_subscriber_leaves_by_itself(self, runtime: Runtime) -> None:
        """A subscriber that dies is dropped from the fan-out through the registry."""
        await runtime.start_child(_memory_spec())
        store = runtime.via(STORE)
        subscriber = await runtime.spawn(_Subscriber())
        await subscribe_events(store, subscriber, ("a",))
        await subscriber.stop()
        assert runtime.registry.lookup_all(event_subscription_key("a")) == []
        await emit_event(store, "a")
        assert len(await query_events(store, type="a")) == 1
        with pytest.raises(ActorExited):
            await subscribe_events(store, subscriber, ("a",))

    async def test_sqlite_store_keeps_events_across_its_restart(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A store restarted after a crash finds the events written before it through SQLite."""
        config = EventsConfig(sqlite_path=tmp_path / "events.sqlite", flush_interval=60.0)
        spec = event_store_spec(
            lambda: EventStore.from_config(config, namespace=runtime.namespace),
            id=STORE,
            name=STORE,
        )
        first = await runtime.start_child(spec)
        with correlation_scope("before-crash"):
            await emit_event(first, "module.finished", {"ok": True})
        await query_events(first)
        await first.stop(RuntimeError("store crashed"))
        await until(lambda: runtime.whereis(STORE) not in (None, first), rounds=200_000)
        second = runtime.via(STORE)
        found = await query_events(second, correlation_id="before-crash")
        assert [(e.type, dict(e.data)) for e in found] == [("module.finished", {"ok": True})]

    async def test_subscriptions_survive_a_restart(self, runtime: Runtime) -> None:
        """Subscribers listed before the store crashed get notices from its next incarnation."""
        first = await runtime.start_child(_memory_spec())
        subscriber = await runtime.spawn(_Subscriber())
        await subscribe_events(first, subscriber, ("module.*",))
        await first.stop(RuntimeError("store crashed"))
        await until(lambda: runtime.whereis(STORE) not in (None, first), rounds=200_000)
        second = runtime.via(STORE)
        await emit_event(second, "module.started")
        await query_events(second)
        assert await subscriber.call(_Seen()) == ["module.started"]
