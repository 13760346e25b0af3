"""Shared helpers for the protection tests (no test collected here)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from lmvisor.runtime.errors import LmvisorError


class Flaky(LmvisorError):
    """A retryable failure: the callee's fault."""

    code = "flaky"
    retryable = True


class BadRequest(LmvisorError):
    """A non-retryable failure: the caller's fault (a 4xx)."""

    code = "bad_request"
    retryable = False


class Throttled(LmvisorError):
    """A retryable failure carrying a retry_after hint."""

    code = "throttled"
    retryable = True

    def __init__(self, retry_after: float) -> None:
        super().__init__("throttled")
        self.retry_after = retry_after


async def until(predicate: Callable[[], bool], *, rounds: int = 200) -> None:
    """Yield to the loop until `predicate()` holds; fail if it never does."""
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")
