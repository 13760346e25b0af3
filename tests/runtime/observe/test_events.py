"""Tests for lmvisor.runtime.observe.events: Event, EventRing, matches."""

from __future__ import annotations

import dataclasses
import gc
import itertools

import pytest

from lmvisor.runtime.correlation import correlation_scope
from lmvisor.runtime.observe.events import Event, EventRing, matches


def _ticker() -> itertools.count[float]:
    return itertools.count(100.0)


def _ring(capacity: int = 100) -> EventRing:
    ticks = _ticker()
    return EventRing(capacity, namespace="ns", wall_clock=lambda: next(ticks))


class TestEvent:
    def test_event_is_frozen(self) -> None:
        """Events are immutable records."""
        event = _ring().emit("a.b", {"x": 1})
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.type = "c"  # type: ignore[misc]

    def test_emit_fills_every_field(self) -> None:
        """emit() stamps id, type, data copy, scope ids, timestamp and namespace."""
        ring = _ring()
        data = {"x": 1}
        with correlation_scope("outer"), correlation_scope("inner"):
            event = ring.emit("a.b", data)
        data["x"] = 2
        assert event.type == "a.b"
        assert event.data == {"x": 1}
        assert (event.correlation_id, event.parent_id) == ("inner", "outer")
        assert event.timestamp == 100.0
        assert event.namespace == "ns"
        assert event.id

    def test_no_scope_means_no_ids(self) -> None:
        """Outside any correlation scope, correlation_id and parent_id are None."""
        event = _ring().emit("a")
        assert (event.correlation_id, event.parent_id, dict(event.data)) == (None, None, {})

    def test_ids_are_unique_across_rings(self) -> None:
        """Two rings never hand out the same id."""
        first, second = _ring(), _ring()
        ids = {first.emit("a").id for _ in range(50)} | {second.emit("a").id for _ in range(50)}
        assert len(ids) == 100


class TestQuery:
    def test_filters(self) -> None:
        """query() filters by correlation id, type, type prefix, type set and since."""
        ring = _ring()
        with correlation_scope("c1"):
            ring.emit("module.started")
            ring.emit("module.finished")
        with correlation_scope("c2"):
            ring.emit("lm.request")
        assert [e.type for e in ring.query(correlation_id="c1")] == [
            "module.started",
            "module.finished",
        ]
        assert [e.type for e in ring.query(type="module.*")] == [
            "module.started",
            "module.finished",
        ]
        assert [e.type for e in ring.query(type=["lm.request", "module.started"])] == [
            "module.started",
            "lm.request",
        ]
        assert [e.type for e in ring.query(since=102.0)] == ["lm.request"]

    def test_limit_keeps_the_newest_oldest_first(self) -> None:
        """limit returns the newest matches, still in emit order."""
        ring = _ring()
        for n in range(5):
            ring.emit("t", {"n": n})
        assert [e.data["n"] for e in ring.query(limit=2)] == [3, 4]
        assert ring.query(limit=0) == []

    def test_negative_limit(self) -> None:
        """A negative limit is refused."""
        with pytest.raises(ValueError, match=r"^limit must be >= 0, got -1$"):
            _ring().query(limit=-1)

    def test_matches_exact_type_is_not_prefix(self) -> None:
        """A type without `.*` matches exactly."""
        event = _ring().emit("module.started")
        assert not matches(event, type="module")
        assert matches(event, type="module.started")


class TestRing:
    def test_bounded(self) -> None:
        """The ring keeps the newest `capacity` events and counts the dropped ones."""
        ring = _ring(capacity=3)
        for n in range(5):
            ring.emit("t", {"n": n})
        assert [e.data["n"] for e in ring.query()] == [2, 3, 4]
        stats = ring.statistics()
        assert (stats.size, stats.emitted, stats.dropped) == (3, 5, 2)
        assert ring.oldest is not None and ring.oldest.data["n"] == 2
        assert len(ring) == 3

    def test_recorded_and_emitted_share_numbers_and_counts(self) -> None:
        """Recorded and emitted events take ids in turn; with extended ones, all are counted."""
        ring = _ring(capacity=3)
        ring.emit("a")
        ring.record("b", {"n": 1})
        ring.record_values("c", ("n",), 2)
        ring.extend([_ring().emit("x")])
        ring.emit("d")
        ids = [int(e.id.rsplit("-", 1)[1]) for e in ring.query() if e.type != "x"]
        assert ids == [3, 4]
        stats = ring.statistics()
        assert (stats.size, stats.emitted, stats.dropped) == (3, 4, 2)

    def test_listeners(self) -> None:
        """Listeners see each emitted event until removed; a failing one is skipped."""
        ring = _ring()
        seen: list[str] = []

        def broken(event: Event) -> None:
            raise RuntimeError("listener bug")

        ring.add_listener(broken)
        remove = ring.add_listener(lambda e: seen.append(e.type))
        ring.emit("a")
        remove()
        ring.emit("b")
        assert seen == ["a"]
        assert len(ring) == 2

    def test_extend_runs_no_listener(self) -> None:
        """extend() loads recorded events without telling listeners."""
        source, target = _ring(), _ring(capacity=2)
        events = [source.emit("t") for _ in range(3)]
        seen: list[Event] = []
        target.add_listener(seen.append)
        target.extend(events)
        assert target.query() == events[1:]
        assert seen == []
        assert target.statistics().dropped == 1

    def test_capacity_must_be_positive(self) -> None:
        """A ring holds at least one event."""
        with pytest.raises(ValueError, match=r"^capacity must be >= 1, got 0$"):
            EventRing(0)


class TestRecord:
    def test_recorded_event_reads_as_an_emitted_one(self) -> None:
        """record() keeps the same fact emit() would: id order, data copy, scope, time."""
        ring = _ring()
        data = {"x": 1}
        first = ring.emit("a")
        with correlation_scope("outer"), correlation_scope("inner"):
            ring.record("lm_request", data)
        data["x"] = 2
        last = ring.emit("b")
        (recorded,) = ring.query(type="lm_request")
        assert recorded.data == {"x": 1}
        assert (recorded.correlation_id, recorded.parent_id) == ("inner", "outer")
        assert (recorded.timestamp, recorded.namespace) == (101.0, "ns")
        prefix, _, number = recorded.id.rpartition("-")
        assert first.id == f"{prefix}-{int(number) - 1}"
        assert last.id == f"{prefix}-{int(number) + 1}"
        assert ring.query(type="lm_request") == [recorded]

    def test_query_filters_records_and_events_alike(self) -> None:
        """Recorded and emitted events are filtered and limited together, in order."""
        ring = _ring()
        with correlation_scope("c1"):
            ring.record("lm_request", {"n": 1})
            ring.emit("module.started")
        ring.record("lm_request", {"n": 2})
        ring.record("lm_request.failed")
        assert [e.type for e in ring.query(correlation_id="c1")] == [
            "lm_request",
            "module.started",
        ]
        assert [e.data.get("n") for e in ring.query(type="lm_request")] == [1, 2]
        assert [e.type for e in ring.query(type="lm_request.*")] == ["lm_request.failed"]
        assert [e.type for e in ring.query(since=102.0)] == ["lm_request", "lm_request.failed"]
        assert [e.type for e in ring.query(limit=1)] == ["lm_request.failed"]
        assert ring.oldest is not None and ring.oldest.data == {"n": 1}
        stats = ring.statistics()
        assert (stats.size, stats.emitted) == (4, 4)

    def test_listeners_see_only_the_types_they_want(self) -> None:
        """A listener's `wants` decides which recorded and emitted events reach it."""
        ring = _ring()
        everything: list[str] = []
        modules: list[str] = []
        asked: list[str] = []

        def wants(kind: str) -> bool:
            asked.append(kind)
            return kind.startswith("module.")

        ring.add_listener(lambda e: everything.append(e.type))
        remove = ring.add_listener(lambda e: modules.append(e.type), wants=wants)
        ring.record("lm_request")
        ring.emit("module.started")
        ring.record("module.finished")
        remove()
        ring.record("module.failed")
        assert everything == ["lm_request", "module.started", "module.finished", "module.failed"]
        assert modules == ["module.started", "module.finished"]
        assert asked == ["lm_request", "module.started", "module.finished"]

    def test_the_listeners_share_one_event(self) -> None:
        """Every listener of a recorded event gets the same Event, which queries return equal."""
        ring = _ring()
        seen: list[Event] = []
        ring.add_listener(seen.append)
        ring.add_listener(seen.append, wants=lambda kind: True)
        ring.record("lm_request", {"n": 1})
        assert seen[0] is seen[1]
        assert ring.query() == [seen[0]]

    def test_record_values_is_record_with_the_fields_given_apart(self) -> None:
        """record_values(type, keys, *values) reads back as record(type, dict(zip(...)))."""
        ring = _ring()
        with correlation_scope("c1"):
            ring.record_values("lm_request", ("model", "cost"), "llama3", None)
        ring.record_values("lm_request.failed", ())
        first, second = ring.query()
        assert (first.type, first.data, first.correlation_id) == (
            "lm_request",
            {"model": "llama3", "cost": None},
            "c1",
        )
        assert (second.data, second.correlation_id, second.timestamp) == ({}, None, 101.0)

    def test_recorded_data_keeps_its_kind(self) -> None:
        """Recorded empty data reads back as a dict of its own; no data as the shared empty one."""
        ring = _ring()
        ring.record("a", {})
        ring.record("b")
        given, none = ring.query()
        assert type(given.data) is dict and given.data == {}
        assert none.data == ring.emit("c").data

    def test_record_values_rejects_keys_and_values_of_different_lengths(self) -> None:
        """A field without its value is refused before anything is recorded."""
        ring = _ring()
        with pytest.raises(ValueError, match=r"^2 event data keys for 1 values$"):
            ring.record_values("lm_request", ("model", "cost"), "llama3")
        assert len(ring) == 0

    def test_a_recorded_fact_keeps_no_object_the_collector_tracks(self) -> None:
        """Once the ring's rows exist, recording facts adds nothing to the young generation's
        count (each object kept would bring the next collection closer): the queue holds
        ints and the fields are copied into the ring's cells."""
        ring = _ring(capacity=8)
        for n in range(8):  # the cells of every slot exist
            ring.record_values("lm_request", ("provider", "duration"), "local", n / 4)
        gc.collect()
        gc.disable()
        try:
            before = gc.get_count()[0]
            for n in range(200):
                ring.record_values("lm_request", ("provider", "duration"), "local", n / 4)
            grown = gc.get_count()[0] - before
        finally:
            gc.enable()
        assert grown < 10  # a kept tuple per fact would count 200
        assert not any(gc.is_tracked(item) for item in ring._events)
        assert [e.data["duration"] for e in ring.query(limit=2)] == [198 / 4, 199 / 4]

    def test_a_reused_slot_reads_as_its_newest_fact(self) -> None:
        """A slot taken over by a newer fact with fewer fields reads back with exactly those."""
        ring = _ring(capacity=2)
        ring.record("a", {"x": 1, "y": [2]})
        ring.emit("b")
        ring.record("c", {"z": 3})
        ring.record("d")
        assert [(e.type, dict(e.data)) for e in ring.query()] == [("c", {"z": 3}), ("d", {})]

    def test_a_fact_with_many_fields_reads_back_whole(self) -> None:
        """Data wider than a slot's cells is kept whole, in order."""
        ring = _ring(capacity=3)
        data = {f"k{i}": i for i in range(20)}
        ring.record("wide", data)
        ring.record_values("narrow", ("a",), 1)
        wide, narrow = ring.query()
        assert (wide.data, narrow.data) == (data, {"a": 1})
