"""`execute_protected`: one call through bulkhead, retry, breaker and limiter, in that order.

    bulkhead -> retry -> breaker -> limiter -> fn

- The bulkhead is outermost so it bounds everything a call holds, backoff
  sleeps included: a retry storm cannot exceed the concurrency budget.
- Retry wraps the breaker, so each attempt asks the breaker afresh; an open
  breaker's `CircuitOpen` carries its remaining time as `retry_after`, which
  retry either waits out (if within `max_delay`) or gives up on at once.
- The breaker comes before the limiter so a refused call spends no rate
  budget; a limiter refusal (`RateLimited`) is a `ProtectionError` and never
  counts as the callee's failure.

Every stage is optional; the common case (breaker and limiter with room)
runs without creating a task or yielding to the loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from lmvisor.runtime.protection.breaker import CircuitBreaker
from lmvisor.runtime.protection.bulkhead import Bulkhead
from lmvisor.runtime.protection.limiter import RateLimiter
from lmvisor.runtime.protection.retry import Retry

__all__ = ["execute_protected"]

T = TypeVar("T")


async def execute_protected(
    key: str,
    fn: Callable[[], Awaitable[T]],
    *,
    breaker: CircuitBreaker | None = None,
    limiter: RateLimiter | None = None,
    retry: Retry | None = None,
    bulkhead: Bulkhead | None = None,
    tokens: float = 1,
) -> T:
    """Await `fn()` under the given protections.

    Args:
        key: names the protected operation in `RetryExhausted`.
        fn: a zero-argument coroutine function; called once per attempt.
        tokens: the weight taken from the limiter's token budget per attempt.

    Cancellation propagates at once from any stage and releases what the
    call held (bulkhead slot, half-open trial, limiter queue place).

    Raises:
        BulkheadFull: the bulkhead has no slot or queue place.
        CircuitOpen: the breaker refused (when there is no retry, or retry
            was not allowed to wait it out; then chained in `RetryExhausted`).
        RateLimited: the limiter's `max_wait` would be exceeded.
        RetryExhausted: retries ran out; the last error is chained.
        Exception: whatever `fn` raises that is not retried.
    """
    if bulkhead is None:
        if retry is None:
            return await _attempt(fn, breaker, limiter, tokens)
        return await retry.call(lambda: _attempt(fn, breaker, limiter, tokens), key=key)
    await bulkhead.acquire()
    try:
        if retry is None:
            return await _attempt(fn, breaker, limiter, tokens)
        return await retry.call(lambda: _attempt(fn, breaker, limiter, tokens), key=key)
    finally:
        bulkhead.release()


async def _attempt(
    fn: Callable[[], Awaitable[T]],
    breaker: CircuitBreaker | None,
    limiter: RateLimiter | None,
    tokens: float,
) -> T:
    if breaker is None:
        if limiter is not None and limiter.reserve(tokens) > 0:
            await limiter.acquire(tokens)
        return await fn()
    trial = breaker.before_call()
    try:
        if limiter is not None and limiter.reserve(tokens) > 0:
            await limiter.acquire(tokens)
        result = await fn()
    except BaseException as exc:
        breaker.on_failure(exc, trial)
        raise
    breaker.on_success(trial)
    return result
