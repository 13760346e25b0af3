"""Tests for lmvisor.services.cached_lm: hits, single flight, stale answers, corruption."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lmvisor.programs.lm import LMCapabilities, LMRequest, LMResponse, LMStreamItem, Usage
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.runtime.deadline import deadline
from lmvisor.runtime.errors import CircuitOpen, DeadlineExceeded, LmvisorError
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.metrics import Metrics
from lmvisor.runtime.observe.names import CACHE_ENTRY_DROPPED, CACHE_STALE_SERVED
from lmvisor.services.cache_entry import CacheEntry
from lmvisor.services.cache_key import request_key
from lmvisor.services.cache_memory import MemoryTier
from lmvisor.services.cache_store import CacheStore
from lmvisor.services.cached_lm import CachedLM, cache_policy, cache_report
from lmvisor.services.errors import CacheMiss


class Wall:
    """A hand-set epoch clock."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingLM:
    """An upstream that answers `answer <n>`, counting calls; it may wait or fail."""

    model = "test/model"
    capabilities = LMCapabilities()

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.error: BaseException | None = None
        self.requests: list[LMRequest] = []

    async def complete(self, request: LMRequest) -> LMResponse:
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return LMResponse(
            outputs=[f"answer {len(self.requests)}"],
            usage=Usage(prompt_tokens=5, completion_tokens=1, total_tokens=6),
            cost=0.01,
        )

    async def stream(self, request: LMRequest) -> AsyncIterator[LMStreamItem]:
        raise TypeError("not used")
        yield  # pragma: no cover


class Refused(LmvisorError):
    """A non-retryable failure (the caller's fault)."""

    code = "refused"


def _setup(
    delay: float = 0.0, ttl: float = 60.0
) -> tuple[CachedLM, CountingLM, CacheStore, Wall, EventRing, Metrics]:
    wall, events, metrics = Wall(), EventRing(), Metrics()
    store = CacheStore(metrics=metrics, events=events, wall=wall, write_queue=100)
    store.l1 = MemoryTier(max_entries=100, max_bytes=1 << 20, ttl=None, stale_ttl=3600.0)
    store.ttl = ttl
    store.enabled = True
    upstream = CountingLM(delay=delay)
    return CachedLM(upstream, store), upstream, store, wall, events, metrics


def _req(text: str = "2 + 2?", **params: Any) -> LMRequest:
    return LMRequest(
        model="test/model", messages=[{"role": "user", "content": text}], params=params
    )


class TestHits:
    async def test_second_identical_call_is_a_free_cached_copy(self) -> None:
        """The second call is answered by L1: marked cached, zero cost, usage as cached tokens."""
        lm, upstream, store, _, _, metrics = _setup()
        first = await lm.complete(_req())
        second = await lm.complete(_req())
        assert len(upstream.requests) == 1
        assert first.cached is False and first.cost == 0.01
        assert second.outputs == first.outputs
        assert second.cached is True and second.cost == 0.0
        assert second.usage == Usage(cached_tokens=6)
        second.outputs.append("mutated")
        assert (await lm.complete(_req())).outputs == ["answer 1"]
        assert metrics.value("lmvisor_cache_hits_total", layer="l1") == 2.0
        assert store.statistics().hit_rate == pytest.approx(2 / 3)

    async def test_prediction_says_it_came_from_cache(self) -> None:
        """A Predict answered entirely from the cache reports `cached` and no cost."""
        lm, upstream, *_ = _setup()
        upstream_reply = "[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"

        async def reply(request: LMRequest) -> LMResponse:
            upstream.requests.append(request)
            return LMResponse(outputs=[upstream_reply], cost=0.02)

        upstream.complete = reply  # type: ignore[method-assign]
        with context(lm=lm):
            fresh = await Predict("question -> answer")(question="2 + 2?")
            cached = await Predict("question -> answer")(question="2 + 2?")
        assert (fresh.cached, fresh.cost) == (False, 0.02)
        assert (cached.cached, cached.cost, cached.answer) == (True, 0.0, "4")

    async def test_expired_entry_is_a_miss(self) -> None:
        """After cache_ttl the next call goes upstream again."""
        lm, _, _, wall, _, _ = _setup(ttl=10.0)
        await lm.complete(_req())
        wall.now += 11.0
        assert (await lm.complete(_req())).outputs == ["answer 2"]

    async def test_disabled_cache_is_never_consulted(self) -> None:
        """With the cache disabled every call goes upstream and no lookup is counted."""
        lm, upstream, store, *_ = _setup()
        store.enabled = False
        await lm.complete(_req())
        await lm.complete(_req())
        assert len(upstream.requests) == 2 and store.lookups == 0

    async def test_answer_arriving_after_the_cache_is_disabled_is_not_stored(self) -> None:
        """A call in flight when the cache is switched off (as at shutdown) is not stored."""
        lm, upstream, store, *_ = _setup(delay=0.01)
        call = asyncio.ensure_future(lm.complete(_req()))
        while not upstream.requests:  # noqa: ASYNC110 (waiting for the call to go upstream)
            await asyncio.sleep(0)
        store.enabled = False
        assert (await call).outputs == ["answer 1"]
        assert store.pending_writes == 0
        store.enabled = True
        assert (await lm.complete(_req())).outputs == ["answer 2"]

    async def test_cache_false_opts_out_and_is_not_sent(self) -> None:
        """`cache=False` bypasses the cache; the vendor never sees `cache` or `rollout_id`."""
        lm, upstream, store, *_ = _setup()
        await lm.complete(_req(cache=False, rollout_id=1))
        await lm.complete(_req(cache=False, rollout_id=1))
        assert len(upstream.requests) == 2 and store.lookups == 0
        assert all(
            "cache" not in r.params and "rollout_id" not in r.params for r in upstream.requests
        )

    async def test_rollout_ids_are_separate_entries(self) -> None:
        """Another rollout id misses; the same one hits."""
        lm, upstream, *_ = _setup()
        await lm.complete(_req(rollout_id=1, temperature=1.0))
        await lm.complete(_req(rollout_id=2, temperature=1.0))
        await lm.complete(_req(rollout_id=1, temperature=1.0))
        assert len(upstream.requests) == 2


class TestSingleFlight:
    async def test_concurrent_identical_calls_make_one_upstream_call(self) -> None:
        """100 identical calls at once reach the upstream once; the others get cached copies."""
        lm, upstream, store, *_ = _setup(delay=0.02)
        results = await asyncio.gather(*(lm.complete(_req()) for _ in range(100)))
        assert len(upstream.requests) == 1
        assert sum(not r.cached for r in results) == 1
        assert {r.outputs[0] for r in results} == {"answer 1"}
        assert store.coalesced == 99

    async def test_a_flight_is_made_only_when_a_caller_joins(self) -> None:
        """A call nobody joins holds no Flight; the first caller to join makes the one all
        waiters share, and the table is empty once the call is done."""
        lm, _, store, *_ = _setup(delay=0.02)
        key = request_key(_req())
        leader = asyncio.ensure_future(lm.complete(_req()))
        await asyncio.sleep(0.005)
        assert key is not None and key in store.inflight and store.inflight[key] is None
        followers = [asyncio.ensure_future(lm.complete(_req())) for _ in range(2)]
        await asyncio.sleep(0.005)
        flight = store.inflight[key]
        assert flight is not None and repr(flight) == "Flight(waiters=2)"
        await asyncio.gather(leader, *followers)
        assert store.inflight == {}

    async def test_a_cancelled_leader_hands_over_to_a_waiter(self) -> None:
        """When the caller making the shared call is cancelled, a waiter makes its own."""
        lm, upstream, *_ = _setup(delay=0.05)
        leader = asyncio.ensure_future(lm.complete(_req()))
        await asyncio.sleep(0.01)
        follower = asyncio.ensure_future(lm.complete(_req()))
        await asyncio.sleep(0.01)
        leader.cancel()
        response = await follower
        assert response.outputs == ["answer 2"] and len(upstream.requests) == 2

    async def test_waiting_is_bounded_by_the_deadline(self) -> None:
        """A waiter whose deadline passes gets DeadlineExceeded; the leader still finishes."""
        lm, *_ = _setup(delay=0.2)
        leader = asyncio.ensure_future(lm.complete(_req()))
        await asyncio.sleep(0.01)
        with deadline(0.02), pytest.raises(DeadlineExceeded, match=r"^deadline exceeded during"):
            await lm.complete(_req())
        assert (await leader).outputs == ["answer 1"]

    async def test_waiters_share_the_leaders_failure(self) -> None:
        """If the one upstream call fails, every waiter gets that failure."""
        lm, upstream, *_ = _setup(delay=0.02)
        upstream.error = Refused("nope")
        results = await asyncio.gather(
            *(lm.complete(_req()) for _ in range(5)), return_exceptions=True
        )
        assert len(upstream.requests) == 1
        assert all(isinstance(r, Refused) for r in results)


class TestStale:
    async def _expired(self) -> tuple[CachedLM, CountingLM, CacheStore, EventRing]:
        lm, upstream, store, wall, events, _ = _setup(ttl=10.0)
        await lm.complete(_req())
        wall.now += 60.0
        upstream.error = CircuitOpen(name="lm_provider:test", retry_after=5.0)
        return lm, upstream, store, events

    async def test_stale_answer_stands_in_when_allowed(self) -> None:
        """With allow_stale, an open breaker is answered by the expired entry, and it is said."""
        lm, _, store, events = await self._expired()
        with cache_policy(allow_stale=True), cache_report() as report:
            response = await lm.complete(_req())
        assert response.outputs == ["answer 1"] and response.cached
        assert report.stale == 1 and store.stale_served == 1
        [event] = events.query(type=CACHE_STALE_SERVED)
        assert event.data["error"] == "CircuitOpen" and event.data["age_s"] == 50.0

    async def test_stale_answer_is_not_used_unless_allowed(self) -> None:
        """Without allow_stale the failure is raised."""
        lm, *_ = await self._expired()
        with pytest.raises(CircuitOpen):
            await lm.complete(_req())

    async def test_callers_fault_is_never_answered_stale(self) -> None:
        """A non-retryable error is raised even when stale answers are allowed."""
        lm, upstream, *_ = await self._expired()
        upstream.error = Refused("bad request")
        with cache_policy(allow_stale=True), pytest.raises(Refused):
            await lm.complete(_req())

    async def test_cache_only_answers_without_calling_upstream(self) -> None:
        """cache_only serves stale entries when allowed and raises CacheMiss on a miss."""
        lm, upstream, *_ = await self._expired()
        with cache_policy(allow_stale=True, cache_only=True):
            assert (await lm.complete(_req())).outputs == ["answer 1"]
            with pytest.raises(CacheMiss, match=r"^no cached answer for this 'test/model'"):
                await lm.complete(_req("another question"))
        assert len(upstream.requests) == 1


class TestCorruption:
    async def test_corrupt_l1_entry_is_dropped_counted_and_missed(self) -> None:
        """An undecodable entry never fails the call: it is dropped, counted, and refilled."""
        lm, upstream, store, wall, events, metrics = _setup()
        key = request_key(_req())
        assert key is not None and store.l1 is not None
        store.l1.put(key, CacheEntry(b"{not json", wall.now + 60), wall.now)
        response = await lm.complete(_req())
        assert response.outputs == ["answer 1"] and len(upstream.requests) == 1
        assert store.meters["l1"].dropped == 1
        assert metrics.value("lmvisor_cache_dropped_total", layer="l1", reason="corrupt") == 1.0
        assert events.query(type=CACHE_ENTRY_DROPPED)[0].data["layer"] == "l1"
        assert (await lm.complete(_req())).cached

    async def test_entry_versioned_true_is_dropped_as_corrupt(self) -> None:
        """An entry whose version is JSON true (equal to 1 in Python) is dropped and counted."""
        lm, upstream, store, wall, _events, metrics = _setup()
        key = request_key(_req())
        assert key is not None and store.l1 is not None
        payload = b'{"v": true, "outputs": ["forged"], "usage": {}}'
        store.l1.put(key, CacheEntry(payload, wall.now + 60), wall.now)
        response = await lm.complete(_req())
        assert response.outputs == ["answer 1"] and len(upstream.requests) == 1
        assert metrics.value("lmvisor_cache_dropped_total", layer="l1", reason="corrupt") == 1.0
