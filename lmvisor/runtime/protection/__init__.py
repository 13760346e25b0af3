"""lmvisor.runtime.protection: circuit breaker, rate limiter, retry, bulkhead and their pipeline.

Pure asyncio with an injected `Clock`; no actors. See `pipeline` for the order
the stages compose in.
"""

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_package

if TYPE_CHECKING:
    from lmvisor.runtime.protection.breaker import BreakerListener as BreakerListener
    from lmvisor.runtime.protection.breaker import BreakerState as BreakerState
    from lmvisor.runtime.protection.breaker import BreakerStatistics as BreakerStatistics
    from lmvisor.runtime.protection.breaker import CircuitBreaker as CircuitBreaker
    from lmvisor.runtime.protection.breaker import counts_as_failure as counts_as_failure
    from lmvisor.runtime.protection.bulkhead import Bulkhead as Bulkhead
    from lmvisor.runtime.protection.bulkhead import BulkheadStatistics as BulkheadStatistics
    from lmvisor.runtime.protection.limiter import LimiterStatistics as LimiterStatistics
    from lmvisor.runtime.protection.limiter import RateLimiter as RateLimiter
    from lmvisor.runtime.protection.limiter import RejectionListener as RejectionListener
    from lmvisor.runtime.protection.named import Protections as Protections
    from lmvisor.runtime.protection.pipeline import execute_protected as execute_protected
    from lmvisor.runtime.protection.retry import Retry as Retry
    from lmvisor.runtime.protection.retry import RetryStatistics as RetryStatistics
    from lmvisor.runtime.protection.retry import is_retryable as is_retryable
else:
    __all__, __getattr__, __dir__ = lazy_package(__name__, __file__)
