"""lmvisor.runtime.protection: circuit breaker, rate limiter, retry, bulkhead and their pipeline.

Pure asyncio with an injected `Clock`; no actors. See `pipeline` for the order
the stages compose in.
"""

from lmvisor.runtime.protection.breaker import (
    BreakerListener,
    BreakerState,
    BreakerStatistics,
    CircuitBreaker,
    counts_as_failure,
)
from lmvisor.runtime.protection.bulkhead import Bulkhead, BulkheadStatistics
from lmvisor.runtime.protection.limiter import LimiterStatistics, RateLimiter, RejectionListener
from lmvisor.runtime.protection.named import Protections
from lmvisor.runtime.protection.pipeline import execute_protected
from lmvisor.runtime.protection.retry import Retry, RetryStatistics, is_retryable

__all__ = [
    "BreakerListener",
    "BreakerState",
    "BreakerStatistics",
    "Bulkhead",
    "BulkheadStatistics",
    "CircuitBreaker",
    "LimiterStatistics",
    "Protections",
    "RateLimiter",
    "RejectionListener",
    "Retry",
    "RetryStatistics",
    "counts_as_failure",
    "execute_protected",
    "is_retryable",
]
