"""The CacheManager actor: owns the cache's tiers, keeps them configured and written.

It runs as the application tree's `cache` child, registered as "cache":

- `started()` builds the tiers from the runtime's config: L1 always (unless
  sized 0), L2 when `cache.l2_redis_url` is set, L3 at `cache.l3_path` or
  `cache.sqlite3` under `data_dir` (neither: no L3). A cache file that cannot
  be opened is logged and left out: the cache degrades, the app still runs.
  It subscribes to `modules` and `cache` config changes and starts the
  write-behind task.
- On `ConfigChanged`: `modules.cache_enabled`, `modules.cache_ttl` and
  `cache.write_queue` apply to the next call; new L1 bounds apply at once (a
  shrunk L1 evicts down to them); L3's size bound and `stale_ttl` apply to the
  next write; a change of L2's own settings rebuilds L2 (no other change
  touches its connections), a new cache file or busy timeout reopens L3. A
  tier that cannot be built after an update is logged and left out, never
  a crash of the cache.
- The write-behind task drains the store's queue in batches (lingering 20 ms
  for a batch to form): one SQLite transaction on a worker thread, one Redis
  pipeline. A failing tier is counted and logged; the write is given up (L1
  still holds the answer). The linger is the price of cheap writes: an answer
  reaches L2/L3 (and other processes) up to 20 ms after its call returned, and
  a killed process loses at most that much more; in exchange each entry's
  share of a transaction and of a thread hop shrinks with the load (measured
  on a 50k-entry file of ~1 KB answers: ~29 us of CPU per entry at 8 a batch, ~21 at 32).
- `terminate()` disables the cache (no write is accepted after it), waits for
  the write-behind task to unwind, writes again, whole, the batch that task
  had taken and not finished (puts and deletes are idempotent), then every
  write still queued, and closes the tiers. So a write accepted before the app
  stops is never lost to the shutdown, whatever point the write-behind had
  reached; only a tier that hangs past 80% of the spec's shutdown time can
  lose writes, and then the count is logged (`cache.shutdown_writes_lost`).

The LM path never messages this actor: it reads the shared `CacheStore`.
Client functions: `cache_statistics`, `clear_cache`, `flush_cache`.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeVar, final

import anyio

from lmvisor.config.schema import LmvisorConfig
from lmvisor.runtime._threads import run_to_completion
from lmvisor.runtime.actor import Actor, ActorRef, Deferred, ErrorReply, handler
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.config_service import ConfigChanged, subscribe_config
from lmvisor.runtime.messages import Call
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.runtime.observe.names import BREAKER_STATE_CHANGED
from lmvisor.runtime.protection.breaker import BreakerState, CircuitBreaker
from lmvisor.runtime.registry import Via
from lmvisor.services.cache_entry import CacheEntry
from lmvisor.services.cache_memory import MemoryTier
from lmvisor.services.cache_sqlite import SqliteTier
from lmvisor.services.cache_store import TO_L2, TO_L3, CacheStatistics, CacheStore, PendingWrite
from lmvisor.services.errors import ServiceInputError

__all__ = [
    "CACHE_NAME",
    "CacheLayer",
    "CacheManager",
    "ClearCache",
    "FlushCache",
    "GetCacheStatistics",
    "cache_spec",
    "cache_statistics",
    "clear_cache",
    "flush_cache",
    "l3_path",
]

CACHE_NAME: Final = "cache"
"""The registry name of the CacheManager."""
CacheLayer = Literal["l1", "l2", "l3"]

_T = TypeVar("_T")
_BATCH: Final = 256
_LINGER: Final = 0.02
_SHUTDOWN: Final = 10.0
_log = get_logger(__name__)


@final
@dataclass(frozen=True, slots=True)
class GetCacheStatistics(Call[CacheStatistics]):
    """The cache's counters and tiers."""


@final
@dataclass(frozen=True, slots=True)
class ClearCache(Call[None]):
    """Forget every entry of `layer` (every tier when None)."""

    layer: CacheLayer | None = None


@final
@dataclass(frozen=True, slots=True)
class FlushCache(Call[None]):
    """Reply once every queued write has reached L2/L3."""


def l3_path(config: LmvisorConfig) -> Path | None:
    """The SQLite cache file `config` asks for: `cache.l3_path`, else under `data_dir`."""
    if config.cache.l3_max_size == 0:
        return None
    if config.cache.l3_path is not None:
        return config.cache.l3_path
    return None if config.data_dir is None else config.data_dir / "cache.sqlite3"


@final
class CacheManager(Actor):
    """Owns the cache's tiers; see the module docstring."""

    def __init__(self, store: CacheStore) -> None:
        self._store = store
        self._limiter = anyio.CapacityLimiter(1)
        self._writer: asyncio.Task[None] | None = None
        # The batch the write-behind task took and has not finished writing.
        self._unwritten: list[PendingWrite] = []
        self._l2_settings: tuple[object, ...] | None = None

    async def started(self) -> None:
        # Subscribed before the tree is read: an update accepted while the tiers open
        # (L3 on a thread) is then a notice in the mailbox, not lost between the two.
        config_service = self.runtime.via("config")
        await subscribe_config(config_service, self.ref, "modules")
        await subscribe_config(config_service, self.ref, "cache")
        config = self.runtime.config
        store = self._store
        self._apply_modules(config)
        self._apply_l1(config)
        await self._open_l3(config)
        self._open_l2(config)
        self.runtime.metrics.set_cache_source(store.hit_rate)
        self._writer = self.spawn_task(self._write_behind())
        store.enable(config.modules.cache_enabled)

    @handler
    def statistics(self, msg: GetCacheStatistics) -> CacheStatistics:
        return self._store.statistics()

    @handler
    async def clear(self, msg: ClearCache) -> ErrorReply | None:
        store = self._store
        layer = msg.layer
        if layer not in (None, "l1", "l2", "l3"):
            return ErrorReply(ServiceInputError(field="layer", problem="must be l1, l2 or l3"))
        if layer in (None, "l1") and store.l1 is not None:
            store.l1.clear()
        if layer in (None, "l2") and store.l2 is not None:
            await store.l2.clear()
        if layer in (None, "l3") and store.l3 is not None:
            await self._in_thread(store.l3.clear)
        return None

    @handler
    def flush(self, msg: FlushCache) -> Deferred[None]:
        return self.defer(self._store.wait_idle())

    @handler
    async def changed(self, msg: ConfigChanged) -> None:
        new = msg.config
        self._apply_modules(new)
        self._apply_l1(new)
        store = self._store
        if store.l3 is None or l3_path(new) != store.l3.path:
            await self._close_l3()
            await self._open_l3(new)
        elif store.l3.busy_timeout != new.cache.l3_busy_timeout:
            await self._close_l3()  # the timeout is set per connection, when it opens
            await self._open_l3(new)
        else:
            # Read by each write (on the writer thread): a plain rebind is enough.
            store.l3.max_size, store.l3.stale_ttl = new.cache.l3_max_size, new.cache.stale_ttl
        if _l2_settings(new) != self._l2_settings:
            # Only a change of L2's own settings reconnects (an L1 bound must not drop Redis).
            await self._close_l2()
            self._reopen_l2(new)

    async def terminate(self, reason: object) -> None:
        store = self._store
        store.enabled = False
        with anyio.move_on_after(_SHUTDOWN * 0.8):
            await self._stop_writer()
            await self._drain()
        lost = len(self._unwritten) + store.pending_writes
        if lost:
            _log.error("cache.shutdown_writes_lost", entries=lost, waited_s=_SHUTDOWN * 0.8)
        self.runtime.metrics.set_cache_source(None)
        await self._close_l2()
        await self._close_l3()

    async def _stop_writer(self) -> None:
        """Cancel the write-behind task (dying cancels it already) and wait until it unwinds,
        so the batch it held is known and nothing writes behind the drain's back."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            await asyncio.wait([writer])

    async def _drain(self) -> None:
        """Write the unfinished batch again, then every queued write, oldest first."""
        store = self._store
        while self._unwritten or store.pending_writes:
            if not self._unwritten:
                self._unwritten = store.take_pending(_BATCH)
            await self._write_batch(self._unwritten)
            self._unwritten = []
        store.mark_idle_if_drained()

    # --- tiers --------------------------------------------------------------------------

    def _apply_modules(self, config: LmvisorConfig) -> None:
        self._store.ttl = config.modules.cache_ttl
        self._store.enable(config.modules.cache_enabled)
        self._store.write_queue = config.cache.write_queue

    def _apply_l1(self, config: LmvisorConfig) -> None:
        cfg = config.cache
        store = self._store
        if cfg.l1_size == 0 or cfg.l1_max_bytes == 0:
            store.l1 = None
            return
        if store.l1 is None:
            store.l1 = MemoryTier(
                max_entries=cfg.l1_size,
                max_bytes=cfg.l1_max_bytes,
                ttl=cfg.l1_ttl,
                stale_ttl=cfg.stale_ttl,
            )
            return
        # Shrunk bounds evict down now: an L1 holding more than its bounds until the next
        # put would report entries past `max_entries`, and keep the memory asked back.
        l1 = store.l1
        store.meters["l1"].evictions += l1.resize(
            max_entries=cfg.l1_size, max_bytes=cfg.l1_max_bytes
        )
        l1.ttl = math.inf if cfg.l1_ttl is None else cfg.l1_ttl
        l1.stale_ttl = cfg.stale_ttl

    async def _open_l3(self, config: LmvisorConfig) -> None:
        path = l3_path(config)
        if path is None:
            return
        cfg = config.cache
        tier = SqliteTier(
            path,
            max_size=cfg.l3_max_size,
            busy_timeout=cfg.l3_busy_timeout,
            stale_ttl=cfg.stale_ttl,
        )
        try:
            await self._in_thread(tier.open)
        except (sqlite3.Error, OSError) as exc:
            self._store.meters["l3"].error()
            _log.error("cache.l3_unavailable", path=str(path), error=str(exc))
            return
        self._store.l3 = tier

    async def _close_l3(self) -> None:
        tier, self._store.l3 = self._store.l3, None
        if tier is not None:
            await self._in_thread(tier.close)

    def _reopen_l2(self, config: LmvisorConfig) -> None:
        """`_open_l2` after a live update: a tier that cannot be built is logged and left out,
        as an L3 file that cannot be opened is; the update must not crash the cache."""
        try:
            self._open_l2(config)
        except ServiceInputError as exc:
            self._store.meters["l2"].error()
            _log.error("cache.l2_unavailable", field=exc.field, error=exc.problem)

    def _open_l2(self, config: LmvisorConfig) -> None:
        cfg = config.cache
        self._l2_settings = _l2_settings(config)
        if cfg.l2_redis_url is None:
            return
        try:
            from lmvisor.services.cache_redis import RedisTier
        except ImportError as exc:
            raise ServiceInputError(
                field="cache.l2_redis_url",
                problem=f"L2 needs the redis package: pip install 'lmvisor[redis]' ({exc})",
            ) from None
        breaker = CircuitBreaker(
            "cache:l2", clock=self.runtime.clock, **cfg.l2_breaker.model_dump()
        )
        breaker.add_listener(self.runtime.metrics.breaker_changed)
        breaker.add_listener(self._breaker_event)
        meter = self._store.meters["l2"]
        try:
            self._store.l2 = RedisTier(
                cfg.l2_redis_url,
                prefix=cfg.l2_prefix,
                timeout=cfg.l2_timeout,
                stale_ttl=cfg.stale_ttl,
                breaker=breaker,
                on_error=lambda exc: meter.error(),
            )
        except ValueError as exc:  # a query option redis-py cannot read ("?socket_timeout=x")
            raise ServiceInputError(field="cache.l2_redis_url", problem=str(exc)) from None

    async def _close_l2(self) -> None:
        tier, self._store.l2 = self._store.l2, None
        if tier is not None:
            await tier.aclose()

    def _breaker_event(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        data = {"breaker": breaker.name, "old": old.name.lower(), "new": new.name.lower()}
        self.runtime.events.ring.emit(BREAKER_STATE_CHANGED, data)

    # --- write-behind -------------------------------------------------------------------

    async def _write_behind(self) -> None:
        store = self._store
        while True:
            await store.wait_pending()
            if store.pending_writes < _BATCH:
                # Linger a moment so a burst of answers shares one transaction and one
                # thread hop: persistence waits a few ms, calls never do.
                await anyio.sleep(_LINGER)
            # Kept until written: a cancellation anywhere in between leaves it to `_drain`.
            self._unwritten = store.take_pending(_BATCH)
            await self._write_batch(self._unwritten)
            self._unwritten = []
            store.mark_idle_if_drained()

    async def _write_batch(self, batch: list[PendingWrite]) -> None:
        store = self._store
        now = store.wall()
        l3_puts: list[tuple[str, CacheEntry]] = []
        l3_deletes: list[str] = []
        l2_puts: list[tuple[str, CacheEntry]] = []
        l2_deletes: list[str] = []
        for key, entry, tiers in batch:
            if entry is None:
                if tiers & TO_L3:
                    l3_deletes.append(key)
                if tiers & TO_L2:
                    l2_deletes.append(key)
                continue
            if tiers & TO_L3:
                l3_puts.append((key, entry))
            if tiers & TO_L2:
                l2_puts.append((key, entry))
        l3 = store.l3
        if l3 is not None and (l3_puts or l3_deletes):
            try:
                evicted = await self._in_thread(lambda: l3.write(l3_puts, l3_deletes, now))
            except sqlite3.Error as exc:
                store.meters["l3"].error()
                _log.warning("cache.l3_write_failed", error=str(exc), entries=len(l3_puts))
            else:
                store.meters["l3"].evicted(evicted)
        l2 = store.l2
        if l2 is not None:
            if l2_deletes:
                await l2.delete_many(l2_deletes)
            if l2_puts:
                await l2.put_many(l2_puts, now)

    async def _in_thread(self, fn: Callable[[], _T]) -> _T:
        return await run_to_completion(fn, limiter=self._limiter)

    def format_status(self) -> object:
        return {"store": repr(self._store)}


def _l2_settings(config: LmvisorConfig) -> tuple[object, ...]:
    """What the L2 tier is built from: a change of any of them rebuilds it."""
    cfg = config.cache
    return (cfg.l2_redis_url, cfg.l2_prefix, cfg.l2_timeout, cfg.stale_ttl, cfg.l2_breaker)


def cache_spec(store: CacheStore, *, id: str = "cache") -> ChildSpec:
    """The application tree's `cache` child: a permanent CacheManager over `store`."""
    return ChildSpec(id, lambda: CacheManager(store), name=CACHE_NAME, shutdown=_SHUTDOWN)


async def cache_statistics(cache: ActorRef | Via) -> CacheStatistics:
    """The cache's counters and tiers.

    Raises:
        CallTimeout, ActorExited, NameNotRegistered: as `call` does.
    """
    return await cache.call(GetCacheStatistics())


async def clear_cache(cache: ActorRef | Via, layer: CacheLayer | None = None) -> None:
    """Forget every entry of `layer` (every tier when None).

    Raises:
        ServiceInputError: `layer` is not l1, l2 or l3.
        CallTimeout, ActorExited, NameNotRegistered: as `call` does.
    """
    await cache.call(ClearCache(layer), timeout=60.0)


async def flush_cache(cache: ActorRef | Via, timeout: float | None = 30.0) -> None:  # noqa: ASYNC109
    """Wait until every queued write has reached L2/L3.

    Raises:
        CallTimeout: the writes did not finish within `timeout`.
        ActorExited, NameNotRegistered: as `call` does.
    """
    await cache.call(FlushCache(), timeout=timeout)
