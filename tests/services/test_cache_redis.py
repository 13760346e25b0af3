"""Tests for the L2 tier (lmvisor.services.cache_redis) against a real redis-server process."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from lmvisor.config import load_config
from lmvisor.config.errors import ConfigError
from lmvisor.config.schema import LmvisorConfig
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.observe.names import BREAKER_STATE_CHANGED
from lmvisor.runtime.protection.breaker import BreakerState, CircuitBreaker
from lmvisor.services.app import App, open_app
from lmvisor.services.cache_entry import CacheEntry, encode_entry
from lmvisor.services.cache_redis import RedisTier
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


def _redis_tier(
    url: str,
    errors: list[BaseException],
    *,
    prefix: str = "t:",
    timeout: float = 1.0,
    breaker: CircuitBreaker | None = None,
) -> RedisTier:
    """A tier on `url` that appends each failure it counts to `errors`."""
    return RedisTier(
        url,
        prefix=prefix,
        timeout=timeout,
        stale_ttl=60.0,
        breaker=breaker or CircuitBreaker("cache:l2"),
        on_error=errors.append,
    )


def _tier_failing_at_once(url: str, errors: list[BaseException]) -> RedisTier:
    """A tier whose breaker opens at the first counted failure (none is expected)."""
    breaker = CircuitBreaker("cache:l2", failure_threshold=1, recovery_time=60.0)
    return _redis_tier(url, errors, breaker=breaker)


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

    async def test_an_endless_expiry_is_stored_for_a_century(
        self, redis_server: RedisServer
    ) -> None:
        """An entry that never expires (or whose expiry overflows milliseconds) is written
        with a century's TTL: OverflowError escaped the writer before, crashing the cache."""
        errors: list[BaseException] = []
        tier = _redis_tier(redis_server.url, errors)
        entries = [("inf", CacheEntry(b"x", math.inf)), ("big", CacheEntry(b"y", 1e308))]
        assert await tier.put_many(entries, 0.0)
        client = Redis.from_url(redis_server.url)
        ttls = [await client.pttl(f"t:{key}") for key, _ in entries]
        await client.aclose()
        await tier.aclose()
        assert errors == []
        assert all(99 * 365 * 86_400_000 < ttl <= 100 * 365 * 86_400_000 for ttl in ttls)


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


class TestSilentRedis:
    async def test_a_redis_that_never_answers_is_cut_off_by_the_timeout(self) -> None:
        """A server that accepts and never replies: each operation gives up at `timeout` as a
        counted timeout (a miss, a failed write), and the breaker opens."""
        accepted: list[asyncio.StreamWriter] = []

        async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)  # read nothing, answer nothing

        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        errors: list[BaseException] = []
        tier = _redis_tier(
            f"redis://127.0.0.1:{port}/0",
            errors,
            timeout=0.05,
            breaker=CircuitBreaker("cache:l2", failure_threshold=2, recovery_time=60.0),
        )
        try:
            async with asyncio.timeout(10):  # a missing bound fails the test, never hangs it
                assert await tier.get("k") is None
                assert await tier.put_many([("k", CacheEntry(b"{}", 1.0))], now=0.0) is False
                assert await tier.get("k") is None  # the breaker is open: not even tried
        finally:
            await tier.aclose()
            server.close()
            for writer in accepted:
                writer.close()
        assert len(errors) == 2
        assert all(isinstance(e, (TimeoutError, RedisTimeoutError)) for e in errors)
        assert tier.breaker.state is BreakerState.OPEN


class TestBadUrl:
    async def test_an_option_redis_cannot_read_is_a_config_error(self) -> None:
        """A URL option redis-py refuses when L2 opens (?socket_timeout=abc) is refused when
        the settings are loaded, naming cache.l2_redis_url and quoting no password (it was a
        StartError of the cache, and after a live update a crash of every restart)."""
        url = "redis://:hunter2@127.0.0.1:1/0?socket_timeout=abc"
        with pytest.raises(ConfigError, match=r"^invalid configuration \(load, 1 problem\)") as e:
            load_config(cache={"l2_redis_url": url})
        assert e.value.paths == ("cache.l2_redis_url",)
        assert "hunter2" not in str(e.value)


class TestGetConnections:
    async def test_a_connection_left_idle_across_a_redis_restart_is_replaced(
        self, redis_server: RedisServer
    ) -> None:
        """A restarted Redis closed the connection `get` kept idle: the next `get` still answers
        on a new one, with no failure counted and the breaker closed."""
        errors: list[BaseException] = []
        tier = _tier_failing_at_once(redis_server.url, errors)
        entry = CacheEntry(b'{"outputs": ["x"]}', 10.0)
        try:
            assert await tier.put_many([("k", entry)], now=0.0) is True
            assert await tier.get("k") == entry
            redis_server.kill()
            redis_server.start()
            raw = Redis.from_url(redis_server.url)  # the restarted Redis is empty: refill it
            await raw.set("t:k", encode_entry(entry))
            await raw.aclose()
            assert await tier.get("k") == entry
        finally:
            await tier.aclose()
        assert errors == []
        assert tier.breaker.state is BreakerState.CLOSED

    async def test_a_write_after_a_redis_restart_is_stored(self, redis_server: RedisServer) -> None:
        """The pooled connection the writes used died with the old Redis: the first write
        after the restart is still stored, with no failure counted and the breaker closed."""
        errors: list[BaseException] = []
        tier = _tier_failing_at_once(redis_server.url, errors)
        entry = CacheEntry(b'{"outputs": ["x"]}', 10.0)
        try:
            assert await tier.put_many([("k", entry)], now=0.0) is True
            redis_server.kill()
            redis_server.start()
            assert await tier.put_many([("k2", entry)], now=0.0) is True
            assert await tier.get("k2") == entry
        finally:
            await tier.aclose()
        assert errors == []
        assert tier.breaker.state is BreakerState.CLOSED

    async def test_many_gets_at_once_each_answer(self, redis_server: RedisServer) -> None:
        """Concurrent gets each take their own connection and each get their own key's entry."""
        tier = _redis_tier(redis_server.url, [])
        entries = [CacheEntry(f"{i}".encode(), 10.0) for i in range(20)]
        try:
            await tier.put_many([(f"k{i}", e) for i, e in enumerate(entries)], now=0.0)
            for _ in range(2):  # the second round reuses the idle connections
                got = await asyncio.gather(*(tier.get(f"k{i}") for i in range(20)))
                assert got == entries
        finally:
            await tier.aclose()

    async def test_a_non_ascii_prefix_and_key_are_found(self, redis_server: RedisServer) -> None:
        """`get` frames its GET itself: a prefix and key outside ASCII are sent as the UTF-8
        bytes redis-py stored them under (lengths in bytes), so the entry is found."""
        errors: list[BaseException] = []
        tier = _redis_tier(redis_server.url, errors, prefix="préfixe:")
        entry = CacheEntry(b'{"outputs": ["x"]}', 10.0)
        try:
            assert await tier.put_many([("clé-☃", entry)], now=0.0) is True
            assert await tier.get("clé-☃") == entry
            assert await tier.get("clé") is None
        finally:
            await tier.aclose()
        assert errors == []
