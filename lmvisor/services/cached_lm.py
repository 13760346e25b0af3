"""`CachedLM`: the LM programs see in an application, a cache in front of the router.

`complete(request)`:

1. With the cache disabled (`modules.cache_enabled = false`, or the cache
   manager not running) or the call opted out (`cache=False` in the params),
   the request goes upstream as is (minus the cache's control params).
2. Otherwise its key (`cache_key.request_key`) is looked up L1 -> L2 -> L3; a
   fresh hit is returned as a new response marked `cached` with zero cost.
3. A miss makes one upstream call per key at a time (single flight): callers
   arriving while it runs wait for it and get their own cached-marked copy,
   so N identical concurrent requests reach the vendor once. The answer is
   kept in L1 and queued for L2/L3.
4. Stale-on-error: if the upstream call fails in a way another try might not
   (a retryable error, an open breaker, a limiter or retry giving up) and the
   caller's `cache_policy` has `allow_stale`, an expired entry still in its
   stale window answers instead (a `cache.stale_served` event says so, and
   the `cache_report()` open around the call counts it).

Waiting for another caller's identical request is bounded by the call's
deadline (`DeadlineExceeded`). Streams are not cached: `stream` passes
through. `cache_policy(cache_only=True)` answers only from the cache (stale
entries too with `allow_stale`) and raises `CacheMiss` otherwise, sending
nothing: the module manager's "stale cache" fallback.

Once the app has closed (`CacheStore.close`), every call raises `AppClosed`, an answer
the cache still holds included: a held LM is spent with its app.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Final, final

from lmvisor._redaction import clipped
from lmvisor.programs.lm import (
    LM,
    MAX_MODEL_NAME,
    LMCapabilities,
    LMRequest,
    LMResponse,
    LMStreamItem,
    Usage,
)
from lmvisor.runtime.deadline import time_left
from lmvisor.runtime.errors import DeadlineExceeded, LmvisorError, ProtectionError
from lmvisor.runtime.observe.names import CACHE_STALE_SERVED
from lmvisor.services.cache_entry import CacheEntry, CorruptEntry, decode_response
from lmvisor.services.cache_key import cache_wanted, request_key, vendor_request
from lmvisor.services.cache_store import CacheStore, Flight
from lmvisor.services.errors import AppClosed, CacheMiss

__all__ = [
    "CachePolicy",
    "CacheReport",
    "CachedLM",
    "cache_policy",
    "cache_report",
]


@final
@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How the running call may use the cache (see `cache_policy`)."""

    allow_stale: bool = False
    cache_only: bool = False


@final
@dataclass(slots=True)
class CacheReport:
    """What the cache did for the calls inside one `cache_report()` block."""

    stale: int = 0


# Every policy there is, built once: entering a `cache_policy` block builds none.
_POLICIES: Final[dict[tuple[bool, bool], CachePolicy]] = {
    (stale, only): CachePolicy(allow_stale=stale, cache_only=only)
    for stale in (False, True)
    for only in (False, True)
}
_policy: ContextVar[CachePolicy] = ContextVar(
    "lmvisor_cache_policy", default=_POLICIES[False, False]
)
_report: ContextVar[CacheReport | None] = ContextVar("lmvisor_cache_report", default=None)


@final
class cache_policy:  # a class, not a generator: cheaper on every execution
    """Set how LM calls in the `with` block (and tasks started in it) may use the cache.

    Args:
        allow_stale: an expired answer may stand in for a failed call.
        cache_only: answer only from the cache; a miss raises `CacheMiss`.
    """

    __slots__ = ("_policy", "_token")

    def __init__(self, *, allow_stale: bool = False, cache_only: bool = False) -> None:
        self._policy = _POLICIES[bool(allow_stale), bool(cache_only)]
        self._token: Token[CachePolicy] | None = None

    def __enter__(self) -> CachePolicy:
        self._token = _policy.set(self._policy)
        return self._policy

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _policy.reset(self._token)
            self._token = None


@final
class cache_report:  # a class, not a generator: cheaper on every execution
    """Count, in the report it yields, the stale answers given inside the `with` block."""

    __slots__ = ("_report", "_token")

    def __init__(self) -> None:
        self._report = CacheReport()
        self._token: Token[CacheReport | None] | None = None

    def __enter__(self) -> CacheReport:
        self._token = _report.set(self._report)
        return self._report

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _report.reset(self._token)
            self._token = None


class _LeaderGone(Exception):
    """The caller making the shared upstream call was cancelled; a waiter takes over."""


@final
class CachedLM:
    """An `LM` that answers from the cache and otherwise asks `upstream` (see the module doc).

    Args:
        upstream: the LM behind the cache (the router).
        store: the application's cache.
    """

    __slots__ = ("_store", "_upstream")

    def __init__(self, upstream: LM, store: CacheStore) -> None:
        self._upstream = upstream
        self._store = store

    @property
    def model(self) -> str:
        return self._upstream.model

    @property
    def capabilities(self) -> LMCapabilities:
        return self._upstream.capabilities

    @property
    def upstream(self) -> LM:
        """The LM behind the cache."""
        return self._upstream

    async def complete(self, request: LMRequest) -> LMResponse:
        """The cached answer to `request`, or the upstream's (see the module docstring).

        Raises:
            AppClosed: the app has closed (whatever the cache holds).
            CacheMiss: `cache_only` and nothing usable is cached.
            DeadlineExceeded: the deadline passed while waiting for an identical call.
            LmvisorError: whatever the upstream raises, when no stale answer may stand in.
        """
        store = self._store
        if not store.enabled or not cache_wanted(request):
            if store.closed_in is not None:  # closing turns `enabled` off: no cost on a hit
                raise self._closed(request)
            return await self._upstream.complete(vendor_request(request))
        key = request_key(request)
        if key is None:
            return await self._upstream.complete(vendor_request(request))
        if store.l2 is None:  # nothing to wait for: no lookup coroutine
            response, stale = store.lookup_local(key, store.wall())
        else:
            response, stale = await store.lookup(key, store.wall())
        if response is not None:
            return response
        policy = _policy.get()
        if policy.cache_only:
            answer = self._stale(stale, request, None) if policy.allow_stale else None
            if answer is None:
                raise CacheMiss(model=request.model)
            return answer
        inflight = store.inflight
        if key in inflight:
            joined = await self._join(key, request, stale, policy)
            if joined is not None:
                return joined
        # Lead the upstream call, callers arriving meanwhile waiting for it (here, not in a
        # helper: one coroutine fewer on every miss). The first caller to join makes the
        # `Flight`: a call nobody joins (nearly every miss) builds none.
        inflight[key] = None
        try:
            response = await self._upstream.complete(vendor_request(request))
        except BaseException as exc:
            return self._failed(inflight.pop(key), exc, stale, request, policy)
        flight = inflight.pop(key)
        if flight is not None:
            flight.succeed(response)
        store.save(key, response, store.wall())
        return response

    async def _join(
        self, key: str, request: LMRequest, stale: CacheEntry | None, policy: CachePolicy
    ) -> LMResponse | None:
        """The answer of the identical call in flight; None once none is (its leader was
        cancelled): the caller then leads the next one."""
        inflight = self._store.inflight
        while key in inflight:
            shared = inflight[key]
            if shared is None:
                shared = inflight[key] = Flight()
            try:
                return await self._follow(shared)
            except _LeaderGone:
                continue
            except Exception as exc:
                return self._or_stale(exc, stale, request, policy)
        return None

    def _failed(
        self,
        flight: Flight | None,
        exc: BaseException,
        stale: CacheEntry | None,
        request: LMRequest,
        policy: CachePolicy,
    ) -> LMResponse:
        """The leader's call failed: tell its waiters (if any joined), then answer stale or
        raise `exc`."""
        if isinstance(exc, asyncio.CancelledError):
            if flight is not None:
                flight.fail(_LeaderGone())  # a waiter takes over the call
            raise exc
        if flight is not None:
            flight.fail(exc)
        if isinstance(exc, Exception):
            return self._or_stale(exc, stale, request, policy)
        raise exc

    async def _follow(self, shared: Flight) -> LMResponse:
        self._store.coalesced += 1
        left = time_left()
        if left is not None and left <= 0:
            raise DeadlineExceeded(operation="waiting for an identical LM request")
        answer = shared.join()
        try:
            done, _ = await asyncio.wait((answer,), timeout=left)
        finally:
            _stop_waiting(answer)
        if not done:
            raise DeadlineExceeded(operation="waiting for an identical LM request")
        return _as_cached(answer.result())

    def _or_stale(
        self,
        exc: Exception,
        stale: CacheEntry | None,
        request: LMRequest,
        policy: CachePolicy,
    ) -> LMResponse:
        if policy.allow_stale and _stale_may_answer(exc):
            answer = self._stale(stale, request, exc)
            if answer is not None:
                return answer
        raise exc

    def _stale(
        self, stale: CacheEntry | None, request: LMRequest, error: Exception | None
    ) -> LMResponse | None:
        if stale is None:
            return None
        try:
            response = decode_response(stale.payload)
        except CorruptEntry:
            return None
        store = self._store
        store.stale_served += 1
        report = _report.get()
        if report is not None:
            report.stale += 1
        store.events.emit(
            CACHE_STALE_SERVED,
            {
                "model": request.model,
                "age_s": round(store.wall() - stale.expires_at, 3),
                "error": None if error is None else type(error).__name__,
            },
        )
        return response

    async def stream(self, request: LMRequest) -> AsyncIterator[LMStreamItem]:
        """Stream from upstream; streamed answers are not cached.

        Raises:
            AppClosed: the app has closed.
        """
        if self._store.closed_in is not None:
            raise self._closed(request)
        async for item in self._upstream.stream(vendor_request(request)):
            yield item

    def _closed(self, request: LMRequest) -> AppClosed:
        namespace = self._store.closed_in
        assert namespace is not None
        model = clipped(request.model or self.model, MAX_MODEL_NAME)
        return AppClosed(namespace=namespace, operation=f"a call to {model}")

    def __repr__(self) -> str:
        return f"CachedLM({self._upstream!r})"


def _stale_may_answer(exc: BaseException) -> bool:
    """Failures another try might not repeat: retryable errors and protections' refusals."""
    return isinstance(exc, ProtectionError) or (isinstance(exc, LmvisorError) and exc.retryable)


def _as_cached(response: LMResponse) -> LMResponse:
    """A waiter's own copy of the leader's answer: served without a vendor call, at no cost."""
    return dataclasses.replace(
        response,
        outputs=list(response.outputs),
        usage=Usage(cached_tokens=response.usage.total_tokens),
        cost=0.0,
        cached=True,
    )


def _stop_waiting(answer: asyncio.Future[LMResponse]) -> None:
    """Cancel a wait given up on; an answer already there is read, so no error goes unread."""
    if not answer.done():
        answer.cancel()
    elif not answer.cancelled():
        answer.exception()
