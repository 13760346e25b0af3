"""The cache's shared state: its tiers, counters and write-behind queue.

The `CacheManager` actor owns a `CacheStore` the way an Erlang process owns
its ETS tables: it opens and closes the tiers, applies config changes and
drains the write-behind queue, while the LM path (`CachedLM`) reads the
tiers directly, without a message hop. One store outlives the manager's
incarnations, so a restarted manager resumes the queued writes.

A lookup goes L1 -> L2 -> L3 and stops at the first fresh entry; a hit in a
lower tier is copied into the tiers above it (L1 at once, L2 by the
write-behind queue). Expired entries met on the way are kept as the stale
candidate for stale-on-error. An entry that cannot be decoded is dropped
from its tier and counted, and the lookup goes on.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final, final

from lmvisor.programs.lm import LMResponse
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.runtime.observe.metrics import CacheFigures, Metrics
from lmvisor.runtime.observe.names import CACHE_ENTRY_DROPPED
from lmvisor.services.cache_entry import CacheEntry, CorruptEntry, decode_response, encode_response
from lmvisor.services.cache_memory import MemoryTier
from lmvisor.services.cache_sqlite import SqliteTier

if TYPE_CHECKING:
    # redis is an optional dependency, imported only when L2 is configured.
    from lmvisor.services.cache_redis import RedisTier

__all__ = ["CacheStatistics", "CacheStore", "Flight", "TierStatistics"]

TO_L2: Final = 1
TO_L3: Final = 2
_LAYERS: Final = ("l1", "l2", "l3")

_log = get_logger(__name__)

# (key, entry to store or None to delete, tiers to write: TO_L2 | TO_L3)
PendingWrite = tuple[str, CacheEntry | None, int]


@final
@dataclass(frozen=True, slots=True)
class TierStatistics:
    """One tier: lookups it answered or missed, failures, drops, evictions and its size now."""

    layer: str
    hits: int
    misses: int
    errors: int
    corrupt: int
    evictions: int
    entries: int
    bytes: int


@final
@dataclass(frozen=True, slots=True)
class CacheStatistics:
    """The whole cache: overall hit rate, stale answers, coalesced calls and each tier."""

    enabled: bool
    lookups: int
    hits: int
    misses: int
    hit_rate: float
    stale_served: int
    coalesced: int
    pending_writes: int
    dropped_writes: int
    l2_breaker: str | None
    tiers: tuple[TierStatistics, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)


@final
class Flight:
    """One upstream call in progress for a key (single flight) and the callers waiting for it.

    The first caller to find the call running makes its `Flight` and every such caller
    waits on `join()`; the caller making the call ends it with `succeed` or `fail`. Neither
    the flight nor a future is made for a call nobody joins (nearly every miss).
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[LMResponse]] = []

    def join(self) -> asyncio.Future[LMResponse]:
        """A future of the call's answer (or its error); cancel it to stop waiting."""
        future: asyncio.Future[LMResponse] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        return future

    def succeed(self, response: LMResponse) -> None:
        """Hand `response` to every caller still waiting."""
        for future in self._waiters:
            if not future.done():
                future.set_result(response)

    def fail(self, exc: BaseException) -> None:
        """Hand `exc` to every caller still waiting."""
        for future in self._waiters:
            if not future.done():
                future.set_exception(exc)

    def __repr__(self) -> str:
        return f"Flight(waiters={len(self._waiters)})"


@final
class CacheStore:
    """Tiers, counters, single-flight table and write-behind queue; see the module docstring.

    Args:
        metrics: where hit, miss, eviction and error counts go.
        events: where dropped corrupt entries are reported.
        wall: epoch seconds, for expiry (shared across processes, so not monotonic).
        write_queue: most writes waiting; beyond it a write is skipped and counted
            (the CacheManager sets it again on a live update).
    """

    __slots__ = ("_dropped", "_idle", "_l1", "_pending", "_wakeup", "closed_in", "coalesced",
                 "dropped_writes", "enabled", "events", "hits", "inflight", "l1", "l2", "l3",
                 "lookups", "meters", "metrics", "stale_served", "ttl", "wall",
                 "write_queue")  # fmt: skip

    def __init__(
        self,
        *,
        metrics: Metrics,
        events: EventRing,
        wall: Callable[[], float],
        write_queue: int,
    ) -> None:
        self.metrics = metrics
        self.events = events
        self.wall = wall
        self.enabled = False
        # The namespace of the app that closed the cache (see `close`), None while it runs.
        self.closed_in: str | None = None
        self.ttl = 3600.0
        self.l1: MemoryTier | None = None
        self.l2: RedisTier | None = None
        self.l3: SqliteTier | None = None
        self.meters: dict[str, CacheFigures] = {layer: metrics.cache(layer) for layer in _LAYERS}
        self._l1 = self.meters["l1"]  # the tier every lookup counts in
        # Keys whose upstream call is running -> their Flight, None until a caller joins.
        self.inflight: dict[str, Flight | None] = {}
        self.lookups = self.hits = self.stale_served = self.coalesced = 0
        self.write_queue = write_queue
        self._pending: deque[PendingWrite] = deque()
        self.dropped_writes = 0
        self._dropped = metrics.cache_queue()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def enable(self, on: bool) -> None:
        """Turn lookups and saves on or off (`modules.cache_enabled`); never on once closed."""
        self.enabled = on and self.closed_in is None

    def close(self, namespace: str) -> None:
        """The app in `namespace` has closed: from now on nothing is answered from or through
        this cache (a `CachedLM` on it raises `AppClosed`, hit or miss)."""
        self.closed_in = namespace
        self.enabled = False

    # --- lookups (the LM path) --------------------------------------------------------

    async def lookup(self, key: str, now: float) -> tuple[LMResponse | None, CacheEntry | None]:
        """A fresh answer for `key` (decoded, marked cached), else None and the stale candidate."""
        if self.l2 is None:
            return self.lookup_local(key, now)
        response, stale = self._lookup_l1(key, now)
        if response is not None:
            return response, None
        response, stale = await self._lookup_l2(key, now, stale)
        if response is None and self.l3 is not None:
            response, stale = self._lookup_l3(key, now, stale)
        return response, stale

    def lookup_local(self, key: str, now: float) -> tuple[LMResponse | None, CacheEntry | None]:
        """`lookup` of L1 then L3, skipping L2: nothing to wait for, so no coroutine (what
        `lookup` does while no L2 is configured; call it only then)."""
        response, stale = self._lookup_l1(key, now)
        if response is None and self.l3 is not None:
            response, stale = self._lookup_l3(key, now, stale)
        return response, stale

    def _lookup_l1(self, key: str, now: float) -> tuple[LMResponse | None, CacheEntry | None]:
        """L1's fresh answer, else None and its expired entry; counts the lookup."""
        self.lookups += 1
        l1 = self.l1
        if l1 is None:
            return None, None
        stale: CacheEntry | None = None
        entry = l1.get(key, now)
        if entry is not None:
            if entry.expires_at > now:
                response = self._decode(entry, key, "l1")
                if response is not None:
                    self._l1.hits += 1
                    self.hits += 1
                    return response, None
            else:
                stale = entry
        self._l1.misses += 1
        return None, stale

    async def _lookup_l2(
        self, key: str, now: float, stale: CacheEntry | None
    ) -> tuple[LMResponse | None, CacheEntry | None]:
        assert self.l2 is not None
        try:
            entry = await self.l2.get(key)
        except CorruptEntry as exc:
            self._corrupt(key, "l2", exc)
            entry = None
        return self._settle(key, now, entry, stale, "l2", fill=0)

    def _lookup_l3(
        self, key: str, now: float, stale: CacheEntry | None
    ) -> tuple[LMResponse | None, CacheEntry | None]:
        assert self.l3 is not None
        try:
            entry = self.l3.get(key)
        except CorruptEntry as exc:
            self._corrupt(key, "l3", exc)
            entry = None
        except sqlite3.Error as exc:
            self.meters["l3"].errors += 1
            _log.warning("cache.l3_read_failed", error=str(exc))
            entry = None
        return self._settle(key, now, entry, stale, "l3", fill=TO_L2)

    def _settle(
        self,
        key: str,
        now: float,
        entry: CacheEntry | None,
        stale: CacheEntry | None,
        layer: str,
        *,
        fill: int,
    ) -> tuple[LMResponse | None, CacheEntry | None]:
        meter = self.meters[layer]
        if entry is not None and entry.expires_at > now:
            response = self._decode(entry, key, layer)
            if response is not None:
                meter.hits += 1
                self.hits += 1
                self._fill_upper(key, entry, now, fill)
                return response, None
        elif entry is not None and (stale is None or entry.expires_at > stale.expires_at):
            stale = entry
        meter.misses += 1
        return None, stale

    def _fill_upper(self, key: str, entry: CacheEntry, now: float, fill: int) -> None:
        if self.l1 is not None:
            self._l1.evictions += self.l1.put(key, entry, now)
        if fill and self.l2 is not None:
            self._enqueue((key, entry, fill))

    def _decode(self, entry: CacheEntry, key: str, layer: str) -> LMResponse | None:
        try:
            return decode_response(entry.payload)
        except CorruptEntry as exc:
            self._corrupt(key, layer, exc)
            return None

    def _corrupt(self, key: str, layer: str, exc: CorruptEntry) -> None:
        self.meters[layer].dropped += 1
        self.events.emit(CACHE_ENTRY_DROPPED, {"layer": layer, "problem": exc.problem})
        if layer == "l1" and self.l1 is not None:
            self.l1.delete(key)
        elif layer == "l2":
            self._enqueue((key, None, TO_L2))
        elif layer == "l3":
            self._enqueue((key, None, TO_L3))

    # --- writes -----------------------------------------------------------------------

    def save(self, key: str, response: LMResponse, now: float) -> None:
        """Keep `response` under `key` in L1 now and queue it for L2/L3; never raises.

        Nothing is kept while the cache is disabled: an answer to a call that began before
        the cache was switched off (or before the app began to stop) is not stored, so the
        CacheManager's shutdown drain sees every write it must make.
        """
        if not self.enabled:
            return
        try:
            payload = encode_response(response)
        except TypeError as exc:
            _log.debug("cache.not_stored", reason=str(exc))
            return
        entry = CacheEntry(payload, now + self.ttl)
        if self.l1 is not None:
            self._l1.evictions += self.l1.put(key, entry, now)
        lower = (TO_L2 if self.l2 is not None else 0) | (TO_L3 if self.l3 is not None else 0)
        if lower:
            self._enqueue((key, entry, lower))

    def _enqueue(self, item: PendingWrite) -> None:
        pending = self._pending
        if len(pending) >= self.write_queue:
            self.dropped_writes += 1
            self._dropped.dropped += 1
            return
        pending.append(item)
        # While writes are queued the writer is woken and `wait_idle` waits: only the first
        # write of a burst has either to tell (both events change only with an empty queue).
        if len(pending) == 1:
            self._idle.clear()
            self._wakeup.set()

    def take_pending(self, limit: int) -> list[PendingWrite]:
        """Up to `limit` queued writes, oldest first (the manager's writer calls this)."""
        batch: list[PendingWrite] = []
        while self._pending and len(batch) < limit:
            batch.append(self._pending.popleft())
        return batch

    async def wait_pending(self) -> None:
        """Return once a write is queued."""
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()

    def mark_idle_if_drained(self) -> None:
        """Tell `wait_idle` waiters the queue is written out (after a batch is done)."""
        if not self._pending:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once every queued write has been written (or given up on)."""
        await self._idle.wait()

    @property
    def pending_writes(self) -> int:
        """Writes queued and not yet taken."""
        return len(self._pending)

    # --- observation ------------------------------------------------------------------

    def hit_rate(self) -> float:
        """Hits over lookups since start (0.0 before the first lookup)."""
        return self.hits / self.lookups if self.lookups else 0.0

    def statistics(self) -> CacheStatistics:
        """A snapshot of the counters and every tier."""
        tiers = []
        for layer, tier in (("l1", self.l1), ("l2", self.l2), ("l3", self.l3)):
            if tier is None:
                continue
            meter = self.meters[layer]
            entries = size = 0
            evictions = meter.evictions
            if isinstance(tier, MemoryTier | SqliteTier):
                stats = tier.statistics()
                entries, size, evictions = stats.entries, stats.bytes, stats.evictions
            tiers.append(
                TierStatistics(
                    layer=layer,
                    hits=meter.hits,
                    misses=meter.misses,
                    errors=meter.errors,
                    corrupt=meter.dropped,
                    evictions=evictions,
                    entries=entries,
                    bytes=size,
                )
            )
        return CacheStatistics(
            enabled=self.enabled,
            lookups=self.lookups,
            hits=self.hits,
            misses=self.lookups - self.hits,
            hit_rate=self.hit_rate(),
            stale_served=self.stale_served,
            coalesced=self.coalesced,
            pending_writes=len(self._pending),
            dropped_writes=self.dropped_writes,
            l2_breaker=None if self.l2 is None else self.l2.breaker.state.name.lower(),
            tiers=tuple(tiers),
        )

    def __repr__(self) -> str:
        layers = [n for n, t in (("l1", self.l1), ("l2", self.l2), ("l3", self.l3)) if t]
        return f"CacheStore(enabled={self.enabled}, tiers={layers}, lookups={self.lookups})"
