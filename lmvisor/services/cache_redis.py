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

That bound is kept by one timer for the whole tier (`_Watchdog`), not by an
`asyncio.timeout` per operation, whose timer and task look-ups cost an L2 hit about
7 us on a VM.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar, final

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

    __slots__ = (
        "_client",
        "_idle",
        "_on_error",
        "_watchdog",
        "breaker",
        "prefix",
        "stale_ttl",
        "timeout",
    )

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
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._idle: list[AbstractConnection] = []
        self._watchdog = _Watchdog()

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
            if bound is None:
                result = await op()
            else:
                with self._watchdog.bound(bound):
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
        self._watchdog.close()
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.disconnect()
        await self._client.aclose()

    def __repr__(self) -> str:
        return f"RedisTier(prefix={self.prefix!r}, breaker={self.breaker.state.name.lower()})"


@final
class _Watchdog:
    """Bounds the tier's operations in flight with one timer, not one per operation.

    `asyncio.timeout` arms a timer per operation and cancels it after, and finds the task
    and loop through three `getpid` calls: about 7 us per L2 operation on a VM, more than
    the rest of a hit's own work. Here each operation records its task's deadline; one
    timer, set for the nearest deadline when none nearer is set, cancels the tasks past
    theirs and sets itself for the next. An operation so cut off raises `TimeoutError` as
    under `asyncio.timeout`, and a cancellation from elsewhere stays a cancellation.
    Used from one event loop at a time (as the Redis connections are).
    """

    __slots__ = ("_expired", "_handle", "_loop", "_watched", "_when")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watched: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._when = math.inf

    def bound(self, seconds: float) -> _Bound:
        """A `with` block that the current task leaves by `TimeoutError` after `seconds`.

        Raises:
            RuntimeError: not called from inside a task.
        """
        loop = self._loop
        # The task, without asking the running loop (a `getpid` each time): only when this
        # loop has none running is the running loop looked up.
        task = None if loop is None else asyncio.current_task(loop)
        if task is None:
            loop = asyncio.get_running_loop()
            if loop is not self._loop:
                self._loop, self._handle, self._when = loop, None, math.inf
            task = asyncio.current_task(loop)
            if task is None:
                raise RuntimeError("an L2 operation must run inside a task")
        assert loop is not None
        when = loop.time() + seconds
        self._watched[task] = when
        if when < self._when:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = loop.call_at(when, self._fire)
            self._when = when
        return _Bound(self, task)

    def _fire(self) -> None:
        """Cancel the tasks past their deadline; set the timer for the nearest other one."""
        loop = self._loop
        assert loop is not None
        self._handle, self._when = None, math.inf
        now = loop.time()
        nearest = math.inf
        for task, when in self._watched.items():
            if when > now:
                nearest = min(nearest, when)
            elif task not in self._expired:
                self._expired.add(task)
                task.cancel()
        if nearest < math.inf:
            self._handle = loop.call_at(nearest, self._fire)
            self._when = nearest

    def close(self) -> None:
        """Stop the timer (the tier is closing)."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._when = None, math.inf

    def end(self, task: asyncio.Task[Any], cancelling: int, exc: BaseException | None) -> None:
        """Forget `task`'s deadline; if it was cut off, raise `TimeoutError` for the
        cancellation this watchdog caused (not for one requested from elsewhere too)."""
        self._watched.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            if task.uncancel() <= cancelling and isinstance(exc, asyncio.CancelledError):
                raise TimeoutError from exc


@final
class _Bound:
    """One operation's `with` block under the watchdog (see `_Watchdog.bound`)."""

    __slots__ = ("_cancelling", "_task", "_watchdog")

    def __init__(self, watchdog: _Watchdog, task: asyncio.Task[Any]) -> None:
        self._watchdog = watchdog
        self._task = task
        self._cancelling = task.cancelling()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self._watchdog.end(self._task, self._cancelling, exc)


def _get_command(name: str) -> bytes:
    """`GET name` in RESP: an array of the two bulk strings `GET` and `name` (UTF-8)."""
    data = name.encode()
    return b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(data), data)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _escape(prefix: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
