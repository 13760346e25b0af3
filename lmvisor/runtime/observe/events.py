"""Events: the `Event` record and the in-memory ring of one runtime.

An event is an immutable fact with a type (named in `observe.names`), JSON-ready
data, and the correlation scope it happened in, so one call's events can be
pulled out together. `EventRing` keeps the newest `capacity` events of one
runtime; emitting is a deque append plus listener calls, cheap enough for
every hop of a call. Durable storage is a listener (`observe.store`).

Facts that come at request rate (`lm_request`) go in with `record()` or
`record_values()`: the ring keeps the fact as one flat tuple and builds its
`Event` only when someone reads it (a query, or a listener that wants that type).
The tuple holds no dict (the data's keys and values lie in it side by side), so
when every value is a str, a number or None the garbage collector stops tracking
it at its first pass: a ring full of such facts is not walked again, nor counted
towards the next full collection.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, final

from lmvisor.runtime.correlation import CorrelationScope, current_scope
from lmvisor.runtime.correlation import _scope as _correlation_var
from lmvisor.runtime.observe.logs import get_logger

__all__ = [
    "Event",
    "EventInterest",
    "EventListener",
    "EventRing",
    "RingStatistics",
    "matches",
    "type_matches",
]

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_log: Final = get_logger("lmvisor.runtime.events")


@final
@dataclass(frozen=True, slots=True)
class Event:
    """One fact: `timestamp` is wall-clock seconds since the epoch.

    `correlation_id` is the scope it happened in and `parent_id` that
    scope's parent, so nested work can be stitched into a tree.
    """

    id: str
    type: str
    data: Mapping[str, Any]
    correlation_id: str | None
    parent_id: str | None
    timestamp: float
    namespace: str


EventListener = Callable[[Event], None]
"""Called with each event as it is emitted; must not block."""

EventInterest = Callable[[str], bool]
"""Whether a listener wants events of a type; asked before an event is built for it."""

# A fact recorded but not built yet: (sequence number, type, correlation id, parent id,
# timestamp, data keys (None: no data), *data values). Its Event is made from it on demand, with the
# same id. No dict inside: CPython never untracks a tuple holding a dict.
_Record = tuple[Any, ...]
_KEYS: Final = 5  # where the data keys are in a record; the values follow them


@final
@dataclass(frozen=True, slots=True)
class RingStatistics:
    """A snapshot of one ring."""

    namespace: str
    capacity: int
    size: int
    emitted: int
    dropped: int


def matches(
    event: Event,
    *,
    correlation_id: str | None = None,
    type: str | Collection[str] | None = None,
    since: float | None = None,
) -> bool:
    """Whether `event` passes a query's filters.

    `type` is one type, a collection of types, or a prefix pattern ending in
    `.*` (`"supervisor.*"`); `since` keeps events at or after that timestamp.
    """
    if correlation_id is not None and event.correlation_id != correlation_id:
        return False
    if since is not None and event.timestamp < since:
        return False
    return type is None or type_matches(event.type, type)


def type_matches(event_type: str, wanted: str | Collection[str]) -> bool:
    """Whether `event_type` is `wanted`: one type, a collection, or a `prefix.*` pattern."""
    if isinstance(wanted, str):
        return _type_matches(event_type, wanted)
    return any(_type_matches(event_type, one) for one in wanted)


def _record_matches(
    record: _Record,
    correlation_id: str | None,
    type: str | Collection[str] | None,
    since: float | None,
) -> bool:
    if correlation_id is not None and record[2] != correlation_id:
        return False
    if since is not None and record[4] < since:
        return False
    return type is None or type_matches(record[1], type)


def _type_matches(actual: str, wanted: str) -> bool:
    if wanted.endswith(".*"):
        return actual.startswith(wanted[:-1])
    return actual == wanted


@final
class EventRing:
    """The newest `capacity` events of one namespace, oldest first.

    Args:
        capacity: how many events to keep; older ones are dropped.
        namespace: stamped on every event.
        wall_clock: seconds since the epoch, for timestamps.

    Raises:
        ValueError: if `capacity` < 1.
    """

    __slots__ = (
        "_counter",
        "_dropped",
        "_emitted",
        "_events",
        "_listeners",
        "_prefix",
        "_wall_clock",
        "capacity",
        "namespace",
    )

    def __init__(
        self,
        capacity: int = 10_000,
        *,
        namespace: str = "default",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.capacity = capacity
        self.namespace = namespace
        self._wall_clock = wall_clock
        self._events: deque[Event | _Record] = deque(maxlen=capacity)
        self._listeners: tuple[tuple[EventListener, EventInterest | None], ...] = ()
        # A random prefix per ring keeps ids unique across restarts and runtimes
        # without the cost of a uuid per event.
        self._prefix = os.urandom(6).hex() + "-"
        self._counter = itertools.count(1)
        self._emitted = 0
        self._dropped = 0

    def emit(self, type: str, data: Mapping[str, Any] | None = None) -> Event:
        """Record an event in the current correlation scope and tell the listeners.

        A listener that raises is logged and skipped; the event is kept.
        """
        return self.emit_in(current_scope(), type, data)

    def emit_in(
        self,
        scope: CorrelationScope | None,
        type: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: float | None = None,
    ) -> Event:
        """Like `emit`, in a given correlation scope (one captured where the event arose).

        `timestamp` is when the fact happened, if earlier than now (a report
        written after the restart it describes).
        """
        event = Event(
            id=f"{self._prefix}{next(self._counter)}",
            type=type,
            data=_EMPTY if data is None else dict(data),
            correlation_id=None if scope is None else scope.id,
            parent_id=None if scope is None else scope.parent_id,
            timestamp=self._wall_clock() if timestamp is None else timestamp,
            namespace=self.namespace,
        )
        self._append(event)
        for listener, wants in self._listeners:
            if wants is None or wants(type):
                self._tell(listener, event)
        return event

    def record(self, type: str, data: Mapping[str, Any] | None = None) -> None:
        """Record an event in the current correlation scope, building it only if it is read.

        The same fact as `emit` (same id, data copy, scope and timestamp), for
        facts that come at request rate: its `Event` is made for the listeners
        that want its type, and otherwise only when a query returns it.
        """
        if data is None:
            self._record(type, None, ())
        else:
            self._record(type, tuple(data), tuple(data.values()))

    def record_values(self, type: str, keys: tuple[str, ...], *values: Any) -> None:
        """`record(type, dict(zip(keys, values)))`, with no dict made for it.

        For a caller that records the same fields at request rate: `keys` is its
        constant tuple of field names, `values` the fields in that order.

        Raises:
            ValueError: `keys` and `values` differ in length.
        """
        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} event data keys for {len(values)} values")
        self._record(type, keys, values)

    def _record(self, type: str, keys: tuple[str, ...] | None, values: tuple[Any, ...]) -> None:
        """Keep the fact as one flat record (`keys` None: no data) and tell the listeners."""
        scope = _correlation_var.get()
        if scope is None:
            item = (next(self._counter), type, None, None, self._wall_clock(), keys, *values)
        else:
            item = (
                next(self._counter),
                type,
                scope.id,
                scope.parent_id,
                self._wall_clock(),
                keys,
                *values,
            )
        events = self._events
        if len(events) == self.capacity:
            self._dropped += 1
        events.append(item)
        self._emitted += 1
        event = None
        for listener, wants in self._listeners:
            if wants is None or wants(type):
                if event is None:
                    event = self._event(item)
                self._tell(listener, event)

    def _append(self, item: Event | _Record) -> None:
        events = self._events
        if len(events) == self.capacity:
            self._dropped += 1
        events.append(item)
        self._emitted += 1

    def _tell(self, listener: EventListener, event: Event) -> None:
        try:
            listener(event)
        except Exception as exc:
            _log.error("event listener failed", event_type=event.type, error=exc, exc_info=exc)

    def _event(self, item: Event | _Record) -> Event:
        """The item's Event: itself, or built from a record (the id it was given then)."""
        if not isinstance(item, tuple):
            return item
        keys = item[_KEYS]
        return Event(
            id=f"{self._prefix}{item[0]}",
            type=item[1],
            data=_EMPTY if keys is None else dict(zip(keys, item[_KEYS + 1 :], strict=True)),
            correlation_id=item[2],
            parent_id=item[3],
            timestamp=item[4],
            namespace=self.namespace,
        )

    def extend(self, events: Iterable[Event]) -> None:
        """Put already-recorded events (say, reloaded from disk) in the ring; no listener runs."""
        before = len(self._events)
        added = 0
        for event in events:
            self._events.append(event)
            added += 1
        self._dropped += before + added - len(self._events)

    def add_listener(
        self, listener: EventListener, *, wants: EventInterest | None = None
    ) -> Callable[[], None]:
        """Call `listener(event)` for every event emitted from now on; returns a remover.

        With `wants`, only for events whose type `wants(type)` accepts: an event
        recorded with `record()` is not built for a listener that does not want it.
        """
        entry = (listener, wants)
        self._listeners = (*self._listeners, entry)

        def remove() -> None:
            self._listeners = tuple(one for one in self._listeners if one is not entry)

        return remove

    def query(
        self,
        *,
        correlation_id: str | None = None,
        type: str | Collection[str] | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """The matching events still in the ring, oldest first; `limit` keeps the newest.

        Raises:
            ValueError: if `limit` is negative.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit!r}")
        found: list[Event] = []
        for item in reversed(self._events):
            if limit is not None and len(found) >= limit:
                break
            if isinstance(item, tuple):
                if _record_matches(item, correlation_id, type, since):
                    found.append(self._event(item))
            elif matches(item, correlation_id=correlation_id, type=type, since=since):
                found.append(item)
        found.reverse()
        return found

    @property
    def oldest(self) -> Event | None:
        """The oldest event still held, or None when empty."""
        return self._event(self._events[0]) if self._events else None

    def __len__(self) -> int:
        return len(self._events)

    def statistics(self) -> RingStatistics:
        """A snapshot of size and counters; `dropped` counts events pushed out."""
        return RingStatistics(
            namespace=self.namespace,
            capacity=self.capacity,
            size=len(self._events),
            emitted=self._emitted,
            dropped=self._dropped,
        )

    def __repr__(self) -> str:
        return f"EventRing({self.namespace!r}, {len(self._events)}/{self.capacity})"
