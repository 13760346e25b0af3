"""Durable events: the store pairing the memory ring with a batched SQLite sink.

`EventStore` is one runtime's events: the ring answers recent queries, the
sink (when configured) keeps everything durable and refills the ring after
a restart. It is usable on its own.

`EventStoreActor` serves a store to other actors: `EmitEvent` (cast),
`QueryEvents` (call), and `SubscribeEvents` / `UnsubscribeEvents`, which
register the subscriber under the registry duplicate key
`("lmvisor.events", pattern)`; each new event whose type matches a pattern
is cast to those actors as `EventNotice` (they need a handler for it). A
subscriber that dies leaves the registry, and so the fan-out, by itself. The
actor owns the flush pump; `terminate` writes the runtime's pending reports
and flushes, so events emitted before a crash are on disk for the next
incarnation, which reloads them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, final

from lmvisor.config.schema import EventsConfig
from lmvisor.runtime.actor import Actor, ActorRef, ErrorReply, handler
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.clock import Clock, SystemClock
from lmvisor.runtime.correlation import CorrelationScope, current_scope
from lmvisor.runtime.errors import ActorExited, MailboxFull
from lmvisor.runtime.messages import Call, Cast
from lmvisor.runtime.observe.events import Event, EventListener, EventRing, type_matches
from lmvisor.runtime.observe.names import STORE_RECORD_SKIPPED
from lmvisor.runtime.observe.sink import SqliteEventSink
from lmvisor.runtime.registry import Registry, Via

__all__ = [
    "EVENT_STORE_NAME",
    "EmitEvent",
    "EventNotice",
    "EventStore",
    "EventStoreActor",
    "QueryEvents",
    "SubscribeEvents",
    "UnsubscribeEvents",
    "emit_event",
    "event_store_spec",
    "event_subscription_key",
    "query_events",
    "subscribe_events",
]

_SUBSCRIBER_CACHE: Final = 1024  # event types whose subscribers are kept looked up

EVENT_STORE_NAME: Final = "event_store"
"""The registry name the event-store actor runs under."""


@final
class EventStore:
    """One runtime's events: a ring for recent ones plus an optional durable sink.

    Lifecycle: `await open()` (reloads the newest events from the sink into
    the ring), run `await pump()` in a task the owner cancels at shutdown,
    then `await close()` (flushes). Without a sink, open and close do nothing
    and pump only waits to be cancelled.
    """

    __slots__ = (
        "_clock",
        "_flush_hooks",
        "_flush_interval",
        "_loaded",
        "_prune_every",
        "_wakeup",
        "ring",
        "sink",
    )

    def __init__(
        self,
        ring: EventRing,
        sink: SqliteEventSink | None = None,
        *,
        flush_interval: float = 0.5,
        prune_every: int = 20,
        clock: Clock | None = None,
    ) -> None:
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be > 0, got {flush_interval!r}")
        self.ring = ring
        self.sink = sink
        self._flush_interval = flush_interval
        self._prune_every = prune_every
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._wakeup = asyncio.Event()
        self._loaded = False
        self._flush_hooks: tuple[Callable[[], None], ...] = ()

    @classmethod
    def from_config(
        cls, config: EventsConfig, *, namespace: str, clock: Clock | None = None
    ) -> EventStore:
        """A store sized and placed as `config` says (no sink when `sqlite_path` is None)."""
        sink = None
        if config.sqlite_path is not None:
            sink = SqliteEventSink(
                config.sqlite_path,
                batch_size=config.batch_size,
                retention_seconds=config.retention_seconds,
                retention_count=config.retention_count,
            )
        ring = EventRing(config.ring_size, namespace=namespace)
        return cls(ring, sink, flush_interval=config.flush_interval, clock=clock)

    async def open(self) -> None:
        """Open the sink; the first time, refill the ring from it and start copying to it.

        May be called again after `close()` (an actor restarted around the
        same store): the sink reopens and nothing is loaded twice.

        Raises:
            EventsFileUnavailable: the sink's file cannot be opened (naming it).
        """
        sink = self.sink
        if sink is None:
            return
        await sink.open()
        if self._loaded:
            return
        self._loaded = True
        recent = await sink.query(limit=self.ring.capacity, namespace=self.ring.namespace)
        self.ring.extend(recent)
        self.ring.add_listener(self._to_sink)
        if sink.skipped_rows:
            fields = {
                "store": "events",
                "record": f"{sink.skipped_rows} rows of {sink.path.name}",
                "problem": "not an event (data not a JSON object, or a column of the wrong type)",
            }
            self.ring.emit(STORE_RECORD_SKIPPED, fields)

    def _to_sink(self, event: Event) -> None:
        sink = self.sink
        if sink is not None:
            sink.write(event)
            if sink.full:
                self._wakeup.set()

    async def pump(self) -> None:
        """Flush every `flush_interval` (sooner when a batch fills) and prune now and then.

        Runs until cancelled; a failed flush keeps the batch for the next round.
        """
        sink = self.sink
        if sink is None:
            await asyncio.Event().wait()
            return
        rounds = 0
        while True:
            await self._next_round()
            await sink.flush()
            rounds += 1
            if rounds % self._prune_every == 0:
                await sink.prune()

    async def _next_round(self) -> None:
        if self._wakeup.is_set():
            self._wakeup.clear()
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(self._flush_interval))
        waker = asyncio.ensure_future(self._wakeup.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
        self._wakeup.clear()

    def emit(self, type: str, data: dict[str, Any] | None = None) -> Event:
        """Record an event (see `EventRing.emit`)."""
        return self.ring.emit(type, data)

    async def query(
        self,
        *,
        correlation_id: str | None = None,
        type: str | Collection[str] | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Matching events, oldest first.

        Pending writes (the runtime's lifecycle reports) are made first, so a
        query sees every fact reported before it. With a sink, the sink
        answers (after a flush), so events older than the ring holds, or from
        before a restart, are found too.
        """
        for hook in self._flush_hooks:
            hook()
        if self.sink is None:
            return self.ring.query(
                correlation_id=correlation_id, type=type, since=since, limit=limit
            )
        await self.sink.flush()
        return await self.sink.query(
            correlation_id=correlation_id,
            type=type,
            since=since,
            limit=limit,
            namespace=self.ring.namespace,
        )

    def add_flush_hook(self, hook: Callable[[], None]) -> None:
        """Run `hook()` before each query (the runtime's reporter writes its pending reports)."""
        self._flush_hooks = (*self._flush_hooks, hook)

    def subscribe(
        self, listener: EventListener, types: str | Collection[str] | None = None
    ) -> Callable[[], None]:
        """Call `listener` for each new event of `types` (all when None); returns a remover."""
        if types is None:
            return self.ring.add_listener(listener)
        return self.ring.add_listener(listener, wants=lambda kind: type_matches(kind, types))

    async def close(self) -> None:
        """Flush and close the sink. Idempotent; events emitted meanwhile wait for `open()`."""
        if self.sink is not None:
            await self.sink.close()

    def __repr__(self) -> str:
        return f"EventStore({self.ring!r}, sink={self.sink!r})"


# --- the event-store actor ------------------------------------------------------


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class EmitEvent(Cast):
    """Record an event; `scope` is the sender's correlation scope (see `emit_event`)."""

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    scope: CorrelationScope | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class QueryEvents(Call[list[Event]]):
    """Matching events, oldest first (see `EventStore.query`)."""

    correlation_id: str | None = None
    type: str | tuple[str, ...] | None = None
    since: float | None = None
    limit: int | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeEvents(Call[None]):
    """Cast `EventNotice` to `subscriber` for each new event matching one of `types`.

    A type is exact, a prefix pattern (`"module.*"`), or `"*"` for all.
    """

    subscriber: ActorRef
    types: tuple[str, ...] = ("*",)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class UnsubscribeEvents(Call[None]):
    """Stop the notices `SubscribeEvents` asked for (same `types`)."""

    subscriber: ActorRef
    types: tuple[str, ...] = ("*",)


@final
@dataclass(frozen=True, slots=True)
class EventNotice(Cast):
    """Sent to subscribers: one new event."""

    event: Event


def event_subscription_key(pattern: str) -> tuple[str, str]:
    """The registry duplicate key subscribers to `pattern` are listed under."""
    return ("lmvisor.events", pattern)


def _patterns_for(event_type: str) -> Iterator[str]:
    """Every pattern that matches `event_type`: itself, each `prefix.*`, and `*`."""
    yield event_type
    end = event_type.rfind(".")
    while end > 0:
        yield event_type[: end + 1] + "*"
        end = event_type.rfind(".", 0, end)
    yield "*"


@final
class EventStoreActor(Actor):
    """Serves one `EventStore` to the runtime; see the module docstring."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._remove: Callable[[], None] | None = None
        self.dropped_notices = 0
        # Subscribers by event type, valid while the registry's duplicate keys are unchanged:
        # most events have none, and finding that out must not cost a lookup per pattern.
        self._subscribers: dict[str, tuple[ActorRef, ...]] = {}
        self._subscribers_as_of = -1
        self._registry: Registry  # the runtime's, set in started()

    @property
    def store(self) -> EventStore:
        """The store this actor serves."""
        return self._store

    async def started(self) -> None:
        self._registry = self.runtime.registry
        await self._store.open()
        self._remove = self._store.ring.add_listener(self._fan_out, wants=self._has_subscribers)
        self.spawn_task(self._store.pump())

    @handler
    def emit(self, msg: EmitEvent) -> None:
        self._store.ring.emit_in(msg.scope, msg.type, msg.data)

    @handler
    async def query(self, msg: QueryEvents) -> list[Event] | ErrorReply:
        try:
            return await self._store.query(
                correlation_id=msg.correlation_id, type=msg.type, since=msg.since, limit=msg.limit
            )
        except ValueError as exc:
            return ErrorReply(exc)

    @handler
    def subscribe(self, msg: SubscribeEvents) -> ErrorReply | None:
        registry = self.runtime.registry
        try:
            for pattern in msg.types:
                registry.register_duplicate(event_subscription_key(pattern), msg.subscriber)
        except (ActorExited, ValueError) as exc:
            return ErrorReply(exc)
        return None

    @handler
    def unsubscribe(self, msg: UnsubscribeEvents) -> None:
        registry = self.runtime.registry
        for pattern in msg.types:
            registry.unregister_duplicate(event_subscription_key(pattern), msg.subscriber)

    async def terminate(self, reason: object) -> None:
        # Reports still pending (the app tree just stopped, say) land before the sink closes.
        self.runtime.reports.flush()
        if self._remove is not None:
            self._remove()
        await self._store.close()

    def _fan_out(self, event: Event) -> None:
        for ref in self._subscribers_of(event.type):
            try:
                ref.cast_nowait(EventNotice(event))
            except (MailboxFull, ActorExited, TypeError):
                # A slow, dead or deaf subscriber must not stall or crash the store.
                self.dropped_notices += 1

    def _has_subscribers(self, event_type: str) -> bool:
        # Asked for every event the ring records: answered from the cache when it is current.
        if self._subscribers_as_of == self._registry.duplicate_changes:
            found = self._subscribers.get(event_type)
            if found is not None:
                return bool(found)
        return bool(self._subscribers_of(event_type))

    def _subscribers_of(self, event_type: str) -> tuple[ActorRef, ...]:
        """Each actor subscribed to a pattern matching `event_type`, once, in pattern order."""
        # The registry is the only record of subscriptions: it outlives this
        # incarnation, so a restarted store keeps notifying the same actors.
        registry = self._registry
        if (
            self._subscribers_as_of != registry.duplicate_changes
            or len(self._subscribers) >= _SUBSCRIBER_CACHE
        ):
            self._subscribers.clear()
            self._subscribers_as_of = registry.duplicate_changes
        found = self._subscribers.get(event_type)
        if found is None:
            refs: dict[ActorRef, None] = {}
            for pattern in _patterns_for(event_type):
                refs.update(dict.fromkeys(registry.lookup_all(event_subscription_key(pattern))))
            found = self._subscribers[event_type] = tuple(refs)
        return found

    def format_status(self) -> object:
        return {"store": repr(self._store)}


def event_store_spec(
    make_store: Callable[[], EventStore],
    *,
    id: str = "event_store",
    name: Hashable = EVENT_STORE_NAME,
) -> ChildSpec:
    """A permanent child running `EventStoreActor(make_store())`, registered as `name`.

    `make_store` runs for each incarnation: build a fresh store from config to
    rely on the SQLite sink across restarts, or return one shared store to
    keep the memory ring too.
    """
    return ChildSpec(id, lambda: EventStoreActor(make_store()), name=name)


async def emit_event(
    store: ActorRef | Via, type: str, data: Mapping[str, Any] | None = None
) -> None:
    """Record an event in the store actor, in the caller's correlation scope.

    Raises:
        ActorExited, NameNotRegistered, MailboxFull: as `cast` does.
    """
    await store.cast(EmitEvent(type=type, data=dict(data or {}), scope=current_scope()))


async def query_events(
    store: ActorRef | Via,
    *,
    correlation_id: str | None = None,
    type: str | tuple[str, ...] | None = None,
    since: float | None = None,
    limit: int | None = None,
    timeout: float | None = 5.0,  # noqa: ASYNC109 (actor calls time out by call_later)
) -> list[Event]:
    """Ask the store actor for matching events.

    Raises:
        CallTimeout, ActorExited, NameNotRegistered: as `call` does.
    """
    msg = QueryEvents(correlation_id=correlation_id, type=type, since=since, limit=limit)
    return await store.call(msg, timeout)


async def subscribe_events(
    store: ActorRef | Via, subscriber: ActorRef, types: tuple[str, ...] = ("*",)
) -> None:
    """Have `subscriber` receive `EventNotice` for new events matching `types`.

    Raises:
        CallTimeout, ActorExited, NameNotRegistered: as `call` does.
    """
    await store.call(SubscribeEvents(subscriber=subscriber, types=types))
