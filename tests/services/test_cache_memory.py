"""Tests for lmvisor.services.cache_memory: the L1 LRU, its bounds and keep time."""

from __future__ import annotations

import pytest

from lmvisor.services.cache_entry import CacheEntry
from lmvisor.services.cache_memory import MemoryTier


def _tier(**kw: float | None) -> MemoryTier:
    options: dict[str, float | None] = {
        "max_entries": 3,
        "max_bytes": 10_000,
        "ttl": None,
        "stale_ttl": 100.0,
    }
    options.update(kw)
    return MemoryTier(**options)  # type: ignore[arg-type]


def _entry(size: int = 10, expires_at: float = 1000.0) -> CacheEntry:
    return CacheEntry(b"x" * size, expires_at)


class TestBounds:
    def test_entry_bound_evicts_least_recently_used(self) -> None:
        """A fourth entry pushes out the one used least recently, not the oldest put."""
        tier = _tier()
        for key in "abc":
            tier.put(key, _entry(), now=0.0)
        assert tier.get("a", now=0.0) is not None  # a is now the most recent
        assert tier.put("d", _entry(), now=0.0) == 1
        assert tier.get("b", now=0.0) is None
        assert {k for k in "acd" if tier.get(k, now=0.0)} == {"a", "c", "d"}
        assert tier.statistics().evictions == 1

    def test_byte_bound_evicts_until_it_fits(self) -> None:
        """Entries are pushed out until the bytes held are within max_bytes."""
        tier = _tier(max_entries=100, max_bytes=100)
        for key in "abcd":
            tier.put(key, _entry(size=22), now=0.0)  # 30 bytes with the header
        stats = tier.statistics()
        assert stats.entries == 3 and stats.bytes == 90

    def test_oversized_entry_is_not_kept(self) -> None:
        """An entry bigger than the whole tier is not stored and evicts nothing."""
        tier = _tier(max_bytes=50)
        tier.put("small", _entry(size=5), now=0.0)
        assert tier.put("huge", _entry(size=500), now=0.0) == 0
        assert tier.get("huge", now=0.0) is None and tier.get("small", now=0.0) is not None

    def test_zero_size_holds_nothing(self) -> None:
        """max_entries=0 disables L1."""
        tier = _tier(max_entries=0)
        tier.put("a", _entry(), now=0.0)
        assert len(tier) == 0

    def test_resize_evicts_least_recently_used_down_to_the_new_bounds(self) -> None:
        """Smaller bounds evict at once (least recently used first), counted as evictions."""
        tier = _tier(max_entries=5)
        for key in "abcde":
            tier.put(key, _entry(), now=0.0)
        assert tier.get("a", now=0.0) is not None
        assert tier.resize(max_entries=2, max_bytes=10_000) == 3
        assert {k for k in "abcde" if tier.get(k, now=0.0)} == {"a", "e"}
        stats = tier.statistics()
        assert (stats.entries, stats.bytes, stats.max_entries, stats.evictions) == (2, 36, 2, 3)
        assert tier.resize(max_entries=2, max_bytes=0) == 2 and tier.statistics().bytes == 0

    def test_resize_refuses_negative_bounds_and_keeps_the_old(self) -> None:
        """A negative bound is a ValueError and changes nothing."""
        tier = _tier()
        with pytest.raises(ValueError, match=r"^MemoryTier bounds must be >= 0$"):
            tier.resize(max_entries=-1, max_bytes=10)
        assert (tier.max_entries, tier.max_bytes) == (3, 10_000)

    def test_negative_bounds_are_refused(self) -> None:
        """Bounds below zero are a ValueError."""
        with pytest.raises(ValueError, match=r"^MemoryTier bounds must be >= 0$"):
            _tier(max_entries=-1)


class TestKeepTime:
    def test_expired_entry_is_kept_through_its_stale_window(self) -> None:
        """After expiry the entry is still returned (for stale answers) until the window ends."""
        tier = _tier(stale_ttl=50.0)
        tier.put("a", _entry(expires_at=100.0), now=0.0)
        kept = tier.get("a", now=120.0)
        assert kept is not None and not kept.fresh(120.0)
        assert tier.get("a", now=150.0) is None
        assert len(tier) == 0

    def test_l1_ttl_bounds_the_keep_time(self) -> None:
        """An L1 ttl shorter than the entry's life drops it from L1 first."""
        tier = _tier(ttl=10.0)
        tier.put("a", _entry(expires_at=1000.0), now=0.0)
        assert tier.get("a", now=9.0) is not None
        assert tier.get("a", now=10.0) is None
