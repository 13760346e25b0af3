"""L1: the in-process cache tier, an LRU bounded by entries and bytes, with a keep time.

An entry is kept until the least of: evicted as least recently used (when a
new one would pass `max_entries` or `max_bytes`), `ttl` seconds after it was
put, or `stale_ttl` seconds after it expired (expired entries are kept that
long so they can stand in for a failed call). `get` returns a kept entry,
fresh or expired, and marks it recently used; freshness is the caller's call.
Time is passed in (`now`, epoch seconds), so tests drive it by hand.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import final

from lmvisor.services.cache_entry import CacheEntry

__all__ = ["MemoryTier", "MemoryTierStatistics"]


@final
@dataclass(frozen=True, slots=True)
class MemoryTierStatistics:
    """L1's size now and its bounds; `evictions` counts entries pushed out for room."""

    entries: int
    bytes: int
    max_entries: int
    max_bytes: int
    evictions: int


@final
class MemoryTier:
    """The L1 tier; see the module docstring.

    Args:
        max_entries: most entries held (0 holds nothing).
        max_bytes: most payload bytes held (0 holds nothing).
        ttl: seconds an entry is kept at most after `put` (None: no such bound).
        stale_ttl: seconds an expired entry is kept for stale answers.

    Raises:
        ValueError: a negative bound.
    """

    __slots__ = ("_bytes", "_entries", "_evictions", "max_bytes", "max_entries", "stale_ttl", "ttl")

    name = "l1"

    def __init__(
        self, *, max_entries: int, max_bytes: int, ttl: float | None, stale_ttl: float
    ) -> None:
        if max_entries < 0 or max_bytes < 0 or stale_ttl < 0:
            raise ValueError("MemoryTier bounds must be >= 0")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = math.inf if ttl is None else ttl
        self.stale_ttl = stale_ttl
        # key -> (entry, keep_until, its size)
        self._entries: OrderedDict[str, tuple[CacheEntry, float, int]] = OrderedDict()
        self._bytes = 0
        self._evictions = 0

    def get(self, key: str, now: float) -> CacheEntry | None:
        """The kept entry for `key` (fresh or expired), marked recently used; None if absent."""
        found = self._entries.get(key)
        if found is None:
            return None
        entry, keep_until, _ = found
        if now >= keep_until:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: CacheEntry, now: float) -> int:
        """Keep `entry` under `key`, evicting least recently used ones; returns how many.

        An entry bigger than `max_bytes` on its own is not kept.
        """
        size = entry.size
        max_bytes = self.max_bytes
        max_entries = self.max_entries
        if size > max_bytes or max_entries == 0:
            return 0
        entries = self._entries
        held = self._bytes + size
        replaced = entries.pop(key, None)
        if replaced is not None:
            held -= replaced[2]
        keep_until = now + self.ttl
        stale_until = entry.expires_at + self.stale_ttl
        entries[key] = (entry, stale_until if stale_until < keep_until else keep_until, size)
        evicted = 0
        while len(entries) > max_entries or held > max_bytes:
            held -= entries.popitem(last=False)[1][2]
            evicted += 1
        self._bytes = held
        if evicted:
            self._evictions += evicted
        return evicted

    def resize(self, *, max_entries: int, max_bytes: int) -> int:
        """Take new bounds, evicting least recently used entries down to them; returns how many.

        Raises:
            ValueError: a negative bound (nothing changes).
        """
        if max_entries < 0 or max_bytes < 0:
            raise ValueError("MemoryTier bounds must be >= 0")
        self.max_entries, self.max_bytes = max_entries, max_bytes
        entries = self._entries
        evicted = 0
        while entries and (len(entries) > max_entries or self._bytes > max_bytes):
            self._bytes -= entries.popitem(last=False)[1][2]
            evicted += 1
        self._evictions += evicted
        return evicted

    def delete(self, key: str) -> None:
        """Forget `key` (no-op when absent)."""
        if key in self._entries:
            self._drop(key)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def statistics(self) -> MemoryTierStatistics:
        """Entries and bytes held now, the bounds, and evictions so far."""
        return MemoryTierStatistics(
            entries=len(self._entries),
            bytes=self._bytes,
            max_entries=self.max_entries,
            max_bytes=self.max_bytes,
            evictions=self._evictions,
        )

    def _drop(self, key: str) -> None:
        self._bytes -= self._entries.pop(key)[2]

    def __repr__(self) -> str:
        return (
            f"MemoryTier(entries={len(self._entries)}/{self.max_entries}, "
            f"bytes={self._bytes}/{self.max_bytes})"
        )
