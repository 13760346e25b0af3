"""Tests for lmvisor.services.cache: the CacheManager applying settings changed at run time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lmvisor.config.errors import ConfigError
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.runtime.config_service import ConfigChanged, get_config, update_config
from lmvisor.services.app import App
from lmvisor.services.cache import CACHE_NAME
from lmvisor.services.cache_store import CacheStatistics
from tests.runtime._protection_helpers import until
from tests.services._redis import RedisServer


async def _ask(app: App, question: str) -> None:
    with context(lm=app.lm()):
        await Predict("question -> answer")(question=question)


def _l1(stats: CacheStatistics) -> tuple[int, int]:
    tier = next(t for t in stats.tiers if t.layer == "l1")
    return tier.entries, tier.evictions


class TestLiveL1Bounds:
    async def test_shrunk_bounds_evict_down_at_once_and_count_it(self, app: App) -> None:
        """l1_size lowered below what L1 holds evicts the oldest entries down to it now,
        counted as evictions (it held 6 of 2 until the next put)."""
        for n in range(6):
            await _ask(app, f"q{n}")
        assert _l1(await app.cache_statistics()) == (6, 0)
        await update_config(app.runtime.via("config"), "cache.l1_size", 2)
        await until(lambda: app._store.l1 is not None and app._store.l1.max_entries == 2)
        assert _l1(await app.cache_statistics()) == (2, 4)

    async def test_shrunk_byte_bound_evicts_down(self, app: App) -> None:
        """l1_max_bytes lowered below one entry empties L1 at once."""
        for n in range(3):
            await _ask(app, f"q{n}")
        await update_config(app.runtime.via("config"), "cache.l1_max_bytes", 1)
        await until(lambda: app._store.l1 is not None and app._store.l1.max_bytes == 1)
        assert _l1(await app.cache_statistics()) == (0, 3)

    async def test_new_ttl_applies_to_later_entries(self, app: App) -> None:
        """cache.l1_ttl changed at run time is the keep time of entries put afterwards."""
        await update_config(app.runtime.via("config"), "cache.l1_ttl", 5.0)
        await until(lambda: app._store.l1 is not None and app._store.l1.ttl == 5.0)


class TestLiveStoreSettings:
    async def test_write_queue_and_l3_bounds_apply_without_reopening(
        self, app: App, tmp_path: Path
    ) -> None:
        """cache.write_queue, l3_max_size and stale_ttl changed at run time reach the store
        and the open L3 file (they kept their start-up values)."""
        config = app.runtime.via("config")
        await update_config(config, "cache.l3_path", str(tmp_path / "cache.sqlite3"))
        for _ in range(200):
            if app._store.l3 is not None:
                break
            await asyncio.sleep(0.01)
        l3 = app._store.l3
        assert l3 is not None
        await update_config(config, "cache.write_queue", 7)
        await update_config(config, "cache.l3_max_size", 4096)
        await update_config(config, "cache.stale_ttl", 5.0)
        await until(lambda: app._store.write_queue == 7 and l3.max_size == 4096)
        assert app._store.l3 is l3 and l3.stale_ttl == 5.0


class TestLiveL2:
    async def test_an_l1_change_keeps_the_redis_connection(
        self, redis_server: RedisServer, app: App
    ) -> None:
        """A cache setting that is not L2's (l1_size) leaves the Redis tier as it is; a change
        of L2's own (l2_prefix) rebuilds it."""
        config = app.runtime.via("config")
        await update_config(config, "cache.l2_redis_url", redis_server.url)
        await until(lambda: app._store.l2 is not None)
        tier = app._store.l2
        await update_config(config, "cache.l1_size", 10)
        await until(lambda: app._store.l1 is not None and app._store.l1.max_entries == 10)
        assert app._store.l2 is tier
        await update_config(config, "cache.l2_prefix", "other:")
        await until(lambda: app._store.l2 is not None and app._store.l2 is not tier)
        assert app._store.l2 is not None and app._store.l2.prefix == "other:"

    async def test_an_option_redis_cannot_read_is_refused_by_the_update(self, app: App) -> None:
        """An L2 URL option redis-py would refuse when the tier opens is a ConfigError naming
        the setting, quoting no password; the old value stays and the cache keeps running
        (the update crashed the cache, whose restarts failed until the app stopped)."""
        config = app.runtime.via("config")
        url = "redis://:hunter2@127.0.0.1:1/0?socket_timeout=abc"
        with pytest.raises(ConfigError, match=r"^invalid configuration \(update, 1 problem\)") as e:
            await update_config(config, "cache.l2_redis_url", url)
        assert e.value.paths == ("cache.l2_redis_url",)
        assert "hunter2" not in str(e.value)
        assert await get_config(config, "cache.l2_redis_url") is None
        await _ask(app, "still cached?")
        assert [(c.id, c.status, c.restarts) for c in app.tree().children if c.id == "cache"] == [
            ("cache", "running", 0)
        ]

    async def test_a_tier_that_cannot_be_built_on_a_change_is_left_out(self, app: App) -> None:
        """A change whose L2 cannot be built (here a tree that skipped validation) is logged
        and counted; the cache runs on without L2 rather than crashing."""
        cache = app.runtime.whereis(CACHE_NAME)
        assert cache is not None
        tree = app.runtime.config
        bad = tree.model_copy(
            update={"cache": tree.cache.model_copy(update={"l2_redis_url": "redis://h/?db=x"})}
        )
        change = ConfigChanged(path="cache.l2_redis_url", old=None, new="x", config=bad)
        await cache.cast(change)
        await until(lambda: app._store.meters["l2"].errors == 1)
        assert app._store.l2 is None and cache.alive
        await _ask(app, "served")
        assert _l1(await app.cache_statistics())[0] == 1


class TestStartOnlySettings:
    async def test_a_start_only_setting_is_refused_at_run_time_naming_it(self, app: App) -> None:
        """A running app refuses a change of a setting it reads only at start (the data
        directory): it would be accepted and announced, and nothing would apply it. A
        live setting of the same update's kind still applies."""
        config = app.runtime.via("config")
        path = "data_dir"
        with pytest.raises(ConfigError, match=r"^invalid configuration \(update, 1 problem\)") as e:
            await update_config(config, path, "/elsewhere")
        assert e.value.paths == (path,)
        assert await get_config(config, path) == app.runtime.config.data_dir
        await update_config(config, "cache.l1_size", 7)
        assert await get_config(config, "cache.l1_size") == 7
