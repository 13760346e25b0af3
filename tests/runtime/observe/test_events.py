"""Tests for lmvisor.runtime.observe.events: Event, EventRing, matches."""

from __future__ import annotations

import dataclasses
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
