"""L2: the Redis cache tier, shared by every process and daemon that points at one Redis.

Each entry is one Redis string under `prefix + key` holding the expiry and the
payload (`cache_entry.encode_entry`), with a Redis TTL that ends its stale
window. Every operation is bounded by `timeout` and by what is left of the
call's deadline, and runs through a circuit breaker: after consecutive
failures the breaker opens and L2 is skipped at once (a dead Redis costs
nothing) until `recovery_time` passes and one trial operation finds it back.

Failures never reach the caller: `get` answers None (a miss) and `put_many`
gives up, and each failure is counted through `on_error`. redis-py's own
retries are off, so a dead Redis fails fast instead of backing off inside
the call.

`get` is on every L1 miss, so it skips redis-py's command layer (its pool lock,
connection check and per-command observability): it sends `GET` on a connection
of its own idle list and reads the raw reply. The request is framed here (RESP:
an array of two bulk strings), not by redis-py's general `pack_command`, which
would cost more than the framing itself. Those connections have no socket
timeout of their own (which would cost a task per send): the operation's own bound
covers them, and a connection an error or cancellation interrupted is closed, never
reused.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar, final

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from lmvisor.runtime.deadline import bound_timeout
from lmvisor.runtime.errors import CircuitOpen
from lmvisor.runtime.protection.breaker import CircuitBreaker
from lmvisor.services.cache_entry import CacheEntry, CorruptEntry, decode_entry, encode_entry

__all__ = ["RedisTier"]

# What a dead, slow or confused Redis raises (TimeoutError covers asyncio's too).
_FAILURES: Final = (RedisError, OSError, TimeoutError)
_SCAN_COUNT: Final = 500
_LONGEST_TTL: Final = 100 * 365 * 86_400.0  # a century, as the config allows at most
_MAX_IDLE: Final = 64  # idle `get` connections kept; more are closed when returned
_T = TypeVar("_T")
_D = TypeVar("_D")


@final
class RedisTier:
    """The L2 tier over the Redis at `url`; see the module docstring.

    Args:
        url: a redis://, rediss:// or unix:// URL (credentials in it stay out of logs).
        prefix: prepended to every key, so several apps can share one Redis.
        timeout: seconds one operation may take.
        stale_ttl: seconds an expired entry is kept for stale answers.
        breaker: skips L2 while Redis keeps failing.
        on_error: called with each failure (counted by the cache; never raises).
    """

    __slots__ = ("_client", "_idle", "_on_error", "breaker", "prefix", "stale_ttl", "timeout")

    name = "l2"

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        timeout: float,
        stale_ttl: float,
        breaker: CircuitBreaker,
        on_error: Callable[[BaseException], None],
    ) -> None:
        self.prefix = prefix
        self.timeout = timeout
        self.stale_ttl = stale_ttl
        self.breaker = breaker
        self._on_error = on_error
        self._client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One retry, on a broken connection only: a pooled connection that outlived a
            # Redis restart fails its first command; a timeout is not retried.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            health_check_interval=0,
        )
        self._idle: list[AbstractConnection] = []

    async def get(self, key: str) -> CacheEntry | None:
        """The entry for `key` (fresh or expired), or None when absent, skipped or failed.

        Raises:
            CorruptEntry: the stored value is not an entry (the caller drops it).
        """
        raw = await self._guarded(lambda: self._get(_get_command(self.prefix + key)), default=None)
        if raw is None:
            return None
        if not isinstance(raw, bytes):
            raise CorruptEntry("the Redis value is not bytes")
        return decode_entry(raw)

    async def _get(self, command: bytes) -> object:
        """`command` (a framed `GET`) on an idle connection, the raw reply.

        A connection left idle may have been closed by Redis meanwhile (a restart): when a
        reused one finds its peer gone, the others are dropped too and a new one asks.
        """
        idle = self._idle
        if idle:
            try:
                return await self._get_on(idle.pop(), command)
            except (RedisConnectionError, OSError):
                stale, self._idle = idle, []
                for conn in stale:
                    await conn.disconnect(nowait=True)
        pool = self._client.connection_pool
        # No socket timeout of its own: `_guarded` bounds the operation.
        kwargs = {**pool.connection_kwargs, "socket_timeout": None}
        return await self._get_on(pool.connection_class(**kwargs), command)

    async def _get_on(self, conn: AbstractConnection, command: bytes) -> object:
        try:
            await conn.send_packed_command(command, check_health=False)
            raw = await conn.read_response(disable_decoding=True)
        except BaseException:
            # The reply may be half read: the connection cannot carry another command.
            await conn.disconnect(nowait=True)
            raise
        if len(self._idle) < _MAX_IDLE:
            self._idle.append(conn)
        else:
            await conn.disconnect()
        return raw

    async def put_many(self, items: Sequence[tuple[str, CacheEntry]], now: float) -> bool:
        """Store `items`, each with a Redis TTL ending its stale window; False if skipped/failed."""

        async def send() -> bool:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, entry in items:
                    ttl = entry.expires_at + self.stale_ttl - now
                    if ttl > 0:
                        pipe.set(self.prefix + key, encode_entry(entry), px=_ms(ttl))
                await pipe.execute()
            return True

        return bool(await self._guarded(send, default=False))

    async def delete_many(self, keys: Sequence[str]) -> bool:
        """Remove `keys`; False if skipped or failed."""
        if not keys:
            return True
        done = await self._guarded(
            lambda: self._client.delete(*(self.prefix + k for k in keys)), default=None
        )
        return done is not None

    async def clear(self) -> bool:
        """Remove every key under the prefix; False if skipped or failed."""

        async def scan_and_delete() -> bool:
            batch: list[bytes] = []
            async for name in self._client.scan_iter(
                match=_escape(self.prefix) + "*", count=_SCAN_COUNT
            ):
                batch.append(name)
                if len(batch) >= _SCAN_COUNT:
                    await self._client.delete(*batch)
                    batch.clear()
            if batch:
                await self._client.delete(*batch)
            return True

        return bool(await self._guarded(scan_and_delete, default=False, scale=20.0))

    async def _guarded(
        self,
        op: Callable[[], Awaitable[_T]],
        *,
        default: _D,
        scale: float = 1.0,
    ) -> _T | _D:
        bound = bound_timeout(self.timeout * scale)
        if bound is not None and bound <= 0:
            return default
        try:
            trial = self.breaker.before_call()
        except CircuitOpen:
            return default
        try:
            async with asyncio.timeout(bound):
                result = await op()
        except _FAILURES as exc:
            self.breaker.on_failure(exc, trial)
            self._on_error(exc)
            return default
        except BaseException as exc:
            self.breaker.on_failure(exc, trial)
            raise
        self.breaker.on_success(trial)
        return result

    async def aclose(self) -> None:
        """Close the connection pool and the idle `get` connections."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.disconnect()
        await self._client.aclose()

    def __repr__(self) -> str:
        return f"RedisTier(prefix={self.prefix!r}, breaker={self.breaker.state.name.lower()})"


def _get_command(name: str) -> bytes:
    """`GET name` in RESP: an array of the two bulk strings `GET` and `name` (UTF-8)."""
    data = name.encode()
    return b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(data), data)


def _ms(seconds: float) -> int:
    # Capped: an infinite or huge TTL (from a store built by hand) raised OverflowError
    # out of the writer, or Redis refused the expiry and the failure counted against L2.
    return max(1, math.ceil(min(seconds, _LONGEST_TTL) * 1000))


def _escape(prefix: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
