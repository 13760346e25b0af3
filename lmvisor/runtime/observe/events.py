"""Events: the `Event` record and the in-memory ring of one runtime.

An event is an immutable fact with a type (named in `observe.names`), JSON-ready
data, and the correlation scope it happened in, so one call's events can be
pulled out together. `EventRing` keeps the newest `capacity` events of one
runtime; emitting is a deque append plus listener calls, cheap enough for
every hop of a call. Durable storage is a listener (`observe.store`).

Facts that come at request rate (`lm_request`) go in with `record()` or
`record_values()`: the ring builds their `Event` only when someone reads it (a
query, or a listener that wants that type), and keeps no new object for them.
The fact's fields are copied into the ring's cells (one flat list, a stride of
cells per slot) and the ring's queue holds the fact's sequence number, an int.
So a recorded fact keeps nothing the cyclic garbage collector tracks: each kept
object would count towards the next young collection (a filling ring would
bring one about every 700 facts) and be walked by it, so the facts of a call
would make the calls in flight around it pay.
"""

from __future__ import annotations

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
    "EVENT_TYPE_FILTER_PATTERN",
    "MAX_TYPE_FILTERS",
    "Event",
    "EventInterest",
    "EventListener",
    "EventRing",
    "RingStatistics",
    "matches",
    "type_matches",
]

EVENT_TYPE_FILTER_PATTERN: Final = r"^[A-Za-z0-9_.:\-*]{1,200}$"
"""What one event-type filter given from outside may be (a query, the CLI): a type, a
`prefix.*` family or `*` (see `type_matches`), 1 to 200 characters."""
MAX_TYPE_FILTERS: Final = 32
"""Type filters one query from outside may give: each event is matched against every one,
so thousands of them (a long URL) held the event loop for seconds."""
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

# A fact recorded but not built yet is its sequence number in the ring's queue; its fields
# are in the cells of slot `number % capacity`, from `slot * _STRIDE`: type, correlation id,
# parent id, timestamp, data keys (None: no data), then the data values (all in one tuple
# when there are more than `_WIDE`). Its Event is made from them on demand, with the same
# id. The numbers of the facts still queued are fewer than `capacity` apart (every number
# taken is queued), so no two of them share a slot.
_KEYS: Final = 4  # where the data keys are in a slot; the values follow them
_STRIDE: Final = 12
_WIDE: Final = _STRIDE - _KEYS - 1  # values a slot holds side by side


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


def _fact_matches(
    cells: list[Any],
    at: int,
    correlation_id: str | None,
    type: str | Collection[str] | None,
    since: float | None,
) -> bool:
    if correlation_id is not None and cells[at + 1] != correlation_id:
        return False
    if since is not None and cells[at + 3] < since:
        return False
    return type is None or type_matches(cells[at], type)


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
        "_cells",
        "_emitted",
        "_events",
        "_extended",
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
        self._events: deque[Event | int] = deque(maxlen=capacity)
        self._cells: list[Any] = []  # grown as facts arrive, up to `capacity` slots
        self._listeners: tuple[tuple[EventListener, EventInterest | None], ...] = ()
        # A random prefix per ring keeps ids unique across restarts and runtimes
        # without the cost of a uuid per event.
        self._prefix = os.urandom(6).hex() + "-"
        # Events emitted so far: the last one's number (its id's suffix). Every item in
        # `_events` came from here or from `extend`: what the deque let go is their sum
        # minus its size (`statistics().dropped`), counted by nothing on the way in.
        self._emitted = 0
        self._extended = 0

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
            id=f"{self._prefix}{self._emitted + 1}",
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
        """Copy the fact into its slot's cells, queue its number, and tell the listeners."""
        scope = _correlation_var.get()
        number = self._emitted = self._emitted + 1
        at = number % self.capacity * _STRIDE
        if len(values) > _WIDE:
            values = (values,)  # rare: the values' own tuple is kept
        if scope is None:
            fields = (type, None, None, self._wall_clock(), keys, *values)
        else:
            fields = (type, scope.id, scope.parent_id, self._wall_clock(), keys, *values)
        cells = self._cells
        if at >= len(cells):
            self._grow(at)
        cells[at : at + len(fields)] = fields  # in place: the list keeps its size
        self._events.append(number)
        event = None
        for listener, wants in self._listeners:
            if wants is None or wants(type):
                if event is None:
                    event = self._event(number)
                self._tell(listener, event)

    def _grow(self, at: int) -> None:
        """Room for the slot starting at cell `at` (the ring is filling): twice the cells, at most
        `capacity` slots."""
        cells = self._cells
        size = min(self.capacity * _STRIDE, max(at + _STRIDE, 2 * len(cells)))
        cells.extend([None] * (size - len(cells)))

    def _append(self, item: Event) -> None:
        self._emitted += 1
        self._events.append(item)

    def _tell(self, listener: EventListener, event: Event) -> None:
        try:
            listener(event)
        except Exception as exc:
            _log.error("event listener failed", event_type=event.type, error=exc, exc_info=exc)

    def _event(self, item: Event | int) -> Event:
        """The item's Event: itself, or built from a recorded fact's cells (with the id it got)."""
        if isinstance(item, Event):
            return item
        cells = self._cells
        at = item % self.capacity * _STRIDE
        keys = cells[at + _KEYS]
        data: Mapping[str, Any] = _EMPTY
        if keys is not None:
            first = at + _KEYS + 1
            values = cells[first] if len(keys) > _WIDE else cells[first : first + len(keys)]
            data = dict(zip(keys, values, strict=True))
        return Event(
            id=f"{self._prefix}{item}",
            type=cells[at],
            data=data,
            correlation_id=cells[at + 1],
            parent_id=cells[at + 2],
            timestamp=cells[at + 3],
            namespace=self.namespace,
        )

    def extend(self, events: Iterable[Event]) -> None:
        """Put already-recorded events (say, reloaded from disk) in the ring; no listener runs."""
        for event in events:
            self._events.append(event)
            self._extended += 1

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
            if isinstance(item, int):
                at = item % self.capacity * _STRIDE
                if _fact_matches(self._cells, at, correlation_id, type, since):
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
            dropped=self._emitted + self._extended - len(self._events),
        )

    def __repr__(self) -> str:
        return f"EventRing({self.namespace!r}, {len(self._events)}/{self.capacity})"
