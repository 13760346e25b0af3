"""One protected vendor call under a deadline: the loop `complete` and `stream` both use.

    slot (bulkhead) -> [ deadline? -> breaker -> limiter (rpm, tpm) -> attempt ] x retries

- The vendor's bulkhead slot is taken first and held for the whole call (a
  stream: until its end), so retries and backoff count against the vendor's
  concurrency; the wait for a slot is bounded by the deadline.
- Each attempt asks the breaker afresh (a refusal carries the breaker's
  remaining time, which is a retry hint like a 429's Retry-After), then the
  rate limiter: a wait for rate budget that would outlast the deadline fails
  at once with `RateLimited`, so the caller can fall back.
- Each attempt gets min(`timeout`, time left); a backoff that would end at or
  after the deadline is not slept: the retries end there. A retry hint longer
  than the policy's `max_delay` ends them too.

Time is the actor's `Clock`; deadlines are absolute times on it. Pure asyncio,
no actor: `LMProvider` owns one `CallPolicy` per incarnation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar, final

from lmvisor.runtime.clock import Clock
from lmvisor.runtime.errors import DeadlineExceeded, RetryExhausted
from lmvisor.runtime.protection import Bulkhead, CircuitBreaker, RateLimiter, Retry, is_retryable

__all__ = ["CallPolicy", "RetryListener", "acquire_slot", "protected", "slot"]

T = TypeVar("T")
_A = TypeVar("_A")
_B = TypeVar("_B")

RetryListener = Callable[[int, Exception, float], None]
"""Called as `listener(attempt, error, delay)` before each backoff sleep."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class CallPolicy:
    """How one vendor's calls are protected; resolved once, read on every call.

    Attributes:
        key: names the vendor in errors (`RetryExhausted`, `DeadlineExceeded`).
        breaker: the vendor's circuit breaker.
        limiter: its request/token rate limiter, or None (its token limit is read per call:
            a live `infrastructure` update may change it).
        bulkhead: its concurrency bound.
        retry: backoff and retry predicate, or None for a single attempt.
        timeout: seconds one attempt may take at most.
        clock: the time line deadlines are on.
    """

    key: str
    breaker: CircuitBreaker
    limiter: RateLimiter | None
    bulkhead: Bulkhead
    retry: Retry | None
    timeout: float
    clock: Clock


@asynccontextmanager
async def slot(policy: CallPolicy, deadline: float | None = None) -> AsyncIterator[None]:
    """Hold one of the vendor's bulkhead slots for the block.

    With a `deadline`, a wait for a slot ends when it passes; without one the
    wait is the caller's to bound (the provider actor's callers time out and
    cancel their work).

    Raises:
        BulkheadFull: every slot is busy and the queue is full.
        DeadlineExceeded: the deadline passed while waiting for a slot.
    """
    await acquire_slot(policy, deadline)
    try:
        yield
    finally:
        policy.bulkhead.release()


async def acquire_slot(policy: CallPolicy, deadline: float | None) -> None:
    """Take one of the vendor's bulkhead slots, waiting at most until `deadline`.

    The caller releases it (`policy.bulkhead.release()`).

    Raises:
        BulkheadFull: every slot is busy and the queue is full.
        DeadlineExceeded: the deadline passed while waiting for a slot.
    """
    bulkhead = policy.bulkhead
    if bulkhead.try_acquire():
        return
    if deadline is None:
        await bulkhead.acquire()
        return
    left = deadline - policy.clock.monotonic()
    try:
        async with asyncio.timeout(max(left, 0.0)):
            await bulkhead.acquire()
    except TimeoutError:
        raise DeadlineExceeded(operation=f"waiting for a {policy.key} call slot") from None


async def protected(
    policy: CallPolicy,
    attempt: Callable[[_A, _B, float], Awaitable[T]],
    first: _A,
    second: _B,
    *,
    deadline: float | None,
    tokens: float = 0,
    on_retry: RetryListener | None = None,
) -> T:
    """Await `attempt(first, second, timeout)` through breaker and limiter, retrying
    within the deadline.

    The attempt's arguments are passed apart (not bound in a `partial` or a closure):
    this runs for every LM call, and whatever it holds lives as long as the call.

    Cancellation propagates at once from any wait and hands a half-open trial
    back to the breaker.

    Raises:
        DeadlineExceeded: the deadline passed before an attempt could start.
        CircuitOpen: the breaker refused and no retry may wait it out (no retry policy).
        RateLimited: the rate budget frees up only after the deadline.
        RetryExhausted: retryable failures outlasted the attempts, the hints or
            the deadline; the last error is chained.
        Exception: a non-retryable error of `attempt`, at once.
    """
    retry, breaker, limiter = policy.retry, policy.breaker, policy.limiter
    number = 1
    while True:
        # One coroutine frame for the whole loop; the decisions are plain functions.
        timeout, left = _attempt_time(policy, deadline)
        try:
            trial = breaker.before_call()
            try:
                if limiter is not None:
                    await _take(policy, limiter, tokens, left)
                result = await attempt(first, second, timeout)
            except BaseException as exc:
                breaker.on_failure(exc, trial)
                raise
            breaker.on_success(trial)
            return result
        except Exception as exc:
            if retry is None or not _retryable(exc):
                raise
            delay = _retry_delay(policy, retry, number, exc, deadline)
            if on_retry is not None:
                on_retry(number, exc, delay)
        await policy.clock.sleep(delay)
        number += 1


def _attempt_time(policy: CallPolicy, deadline: float | None) -> tuple[float, float | None]:
    """The next attempt's timeout and the seconds left before `deadline` (None: no deadline).

    Raises:
        DeadlineExceeded: the deadline has passed.
    """
    if deadline is None:
        return policy.timeout, None
    left = deadline - policy.clock.monotonic()
    if left <= 0:
        raise DeadlineExceeded(operation=f"calling {policy.key}")
    return min(policy.timeout, left), left


def _retry_delay(
    policy: CallPolicy, retry: Retry, number: int, exc: Exception, deadline: float | None
) -> float:
    """The wait before attempt `number + 1`, after attempt `number` failed with `exc`.

    Raises:
        RetryExhausted: no attempt is left, the policy gives up on `exc`, or the
            next attempt could not start before the deadline; `exc` is chained.
    """
    delay = retry.delay(number, exc) if number < retry.max_attempts else None
    if delay is not None and deadline is not None and policy.clock.monotonic() + delay >= deadline:
        delay = None  # it could not finish in time: do not start it
    if delay is None:
        raise RetryExhausted(name=policy.key, attempts=number, last_error=exc) from exc
    return delay


def _retryable(exc: Exception) -> bool:
    # A passed deadline is final here, whatever its `retryable` says to callers above.
    return not isinstance(exc, DeadlineExceeded) and is_retryable(exc)


async def _take(
    policy: CallPolicy, limiter: RateLimiter, tokens: float, left: float | None
) -> None:
    """Take rate budget, waiting for it only if it frees up within `left` seconds (None: any).

    Raises:
        RateLimited: the budget frees up only after `left` seconds.
    """
    cap = limiter.token_limit
    if cap is not None and tokens > cap:
        tokens = cap  # a request estimated above the whole budget takes all of it
    wait = limiter.reserve(tokens)
    if wait == 0.0:
        return
    if left is not None and wait >= left:
        # No room now and none in time: refuse (and report) at once; should the
        # budget have freed meanwhile, this takes it.
        limiter.try_acquire(tokens)
        return
    await limiter.acquire(tokens)
