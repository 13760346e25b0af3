"""Tests for the L2 tier (lmvisor.services.cache_redis) against a real redis-server process."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from lmvisor.config.schema import LmvisorConfig
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.observe.names import BREAKER_STATE_CHANGED
from lmvisor.services.app import App, open_app
from lmvisor.services.cache_store import CacheStatistics
from lmvisor.testing.lm_server import LMServer
from tests.services._redis import RedisServer


def _config(redis: RedisServer, data_dir: Path | None = None) -> LmvisorConfig:
    return LmvisorConfig.model_validate(
        {"cache": {"l2_redis_url": redis.url}, "data_dir": data_dir, "logging": {"level": "error"}}
    )


def _tier(stats: CacheStatistics, layer: str) -> tuple[int, int]:
    found = next(t for t in stats.tiers if t.layer == layer)
    return found.hits, found.misses


async def _ask(app: App, question: str) -> str:
    with context(lm=app.lm()):
        prediction = await Predict("question -> answer")(question=question)
    return str(prediction.answer)


class TestShared:
    async def test_two_runtimes_share_l2(
        self, redis_server: RedisServer, lm_server: LMServer
    ) -> None:
        """An answer one app cached in Redis is a hit for another app: one LM request in all."""
        async with open_app(_config(redis_server), lm_server=lm_server) as first:
            answer = await _ask(first, "shared?")
            await first.flush_cache()
        async with open_app(_config(redis_server), lm_server=lm_server) as second:
            assert await _ask(second, "shared?") == answer
            stats = await second.cache_statistics()
        assert lm_server.stats().requests == 1
        assert _tier(stats, "l2") == (1, 0)
        assert stats.l2_breaker == "closed"

    async def test_redis_keys_expire_after_the_stale_window(
        self, redis_server: RedisServer, lm_server: LMServer
    ) -> None:
        """Each key carries a Redis TTL of cache_ttl + stale_ttl, under the configured prefix."""
        config = _config(redis_server).model_copy(
            update={
                "cache": _config(redis_server).cache.model_copy(update={"stale_ttl": 100.0}),
                "modules": LmvisorConfig().modules.model_copy(update={"cache_ttl": 50.0}),
            }
        )
        async with open_app(config, lm_server=lm_server) as app:
            await _ask(app, "ttl?")
            await app.flush_cache()
        client = Redis.from_url(redis_server.url)
        keys = await client.keys("lmvisor:cache:*")
        assert len(keys) == 1
        assert 140_000 < await client.pttl(keys[0]) <= 150_000
        await client.aclose()


class TestRedisDies:
    async def test_calls_survive_a_dead_redis_and_the_breaker_recovers(
        self, redis_server: RedisServer, lm_server: LMServer, tmp_path: Path
    ) -> None:
        """Killing Redis mid-run: calls keep succeeding from L1/L3, nothing is lost, L2's breaker
        opens, and closes again once Redis is back."""
        clock = MockClock()
        async with open_app(
            _config(redis_server, tmp_path), lm_server=lm_server, clock=clock
        ) as app:
            await _ask(app, "before")
            await app.flush_cache()
            redis_server.kill()
            answers = [await _ask(app, f"during {i}") for i in range(6)]
            assert len(set(answers)) == 6
            await app.flush_cache()
            stats = await app.cache_statistics()
            assert stats.l2_breaker == "open"
            l3 = next(t for t in stats.tiers if t.layer == "l3")
            assert l3.entries == 7  # every answer reached the file while Redis was gone
            l2 = next(t for t in stats.tiers if t.layer == "l2")
            assert l2.errors >= 3
            assert app.runtime.metrics.value("lmvisor_cache_errors_total", layer="l2") == l2.errors
            redis_server.start()
            clock.advance(6.0)  # past cache.l2_breaker.recovery_time
            await _ask(app, "after")
            stats = await app.cache_statistics()
            assert stats.l2_breaker == "closed"
            changes = await app.events.query(type=BREAKER_STATE_CHANGED)
            moves = [
                (e.data["old"], e.data["new"]) for e in changes if e.data["breaker"] == "cache:l2"
            ]
            assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
        assert lm_server.stats().requests == 8

    @pytest.mark.lmvisor_config(cache={"l2_redis_url": "redis://127.0.0.1:1/0"})
    async def test_unreachable_redis_never_fails_a_call(self, app: App) -> None:
        """An L2 nobody listens on degrades to L1: calls succeed and repeat as hits."""
        first = await _ask(app, "x")
        assert await _ask(app, "x") == first
        stats = await app.cache_statistics()
        assert _tier(stats, "l1") == (1, 1)
