"""A vendor's live settings: its `providers.<vendor>` entry and the protections built from it.

One `ProviderSettings` per vendor is shared by every incarnation of the vendor's
provider actor, so a restarted actor builds its client and call policy from the
settings now in force, not from those at start. `update(config)` applies a changed
entry to the protections: the rate limiter (the runtime's, by the vendor's name)
is reconfigured in place, the budget keeps what it spent and takes the new cap
(switched off and on again, too), the bulkhead is resized in place and the retry
stage rebuilt only when its own fields changed (calls in flight keep the one they
started with). The breaker is the runtime's
and follows `infrastructure`, not the vendor's entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Final, final

from lmvisor.config.schema import ProviderConfig, RateLimiterConfig
from lmvisor.providers.client import VendorClient
from lmvisor.runtime.protection import Bulkhead, Retry
from lmvisor.runtime.runtime import Runtime
from lmvisor.services.budget import Budget
from lmvisor.services.lm_provider import ProviderProtections

__all__ = ["ProviderSettings"]

_RETRY_BASE_DELAY: Final = 0.25
_QUEUED_PER_SLOT: Final = 4  # calls a vendor's bulkhead queues per running slot (at least 1,000)


@final
class ProviderSettings:
    """The current entry of one vendor and its protections, shared across actor restarts.

    Attributes:
        vendor: the vendor's name under `providers`.
        config: the entry in force.
        protections: built from `config` (and the runtime's `infrastructure`).
        seen: the runtime's entry for the vendor when it was last applied (a
            start-up `config` may differ from the runtime's tree: only a change of
            the tree applies).
        version: bumped by every accepted change; an actor built from an older
            version rebuilds its client and policy.
    """

    __slots__ = (
        "_make_client",
        "_runtime",
        "config",
        "protections",
        "seen",
        "spent",
        "vendor",
        "version",
    )

    def __init__(
        self,
        runtime: Runtime,
        vendor: str,
        config: ProviderConfig,
        make_client: Callable[[str, ProviderConfig], VendorClient],
        *,
        seen: ProviderConfig | None = None,
    ) -> None:
        self._runtime = runtime
        self._make_client = make_client
        self.vendor = vendor
        self.config = config
        # The roster passes the entry it built from: a later change of the tree, made
        # before the actor subscribed, then differs from it and applies in `started()`.
        self.seen = runtime.config.providers.get(vendor) if seen is None else seen
        self.protections = _protections(runtime, vendor, config, None)
        self.version = 0
        self.spent: Budget | None = None  # a budget switched off, its spend kept for its return

    def client(self, config: ProviderConfig | None = None) -> VendorClient:
        """A new vendor client for `config` (default: the entry in force).

        Raises:
            ValueError: the entry has no `base_url`.
            ImportError: its transport's library is not installed.
        """
        return self._make_client(self.vendor, self.config if config is None else config)

    def update(self, config: ProviderConfig) -> bool:
        """Take `config` as the vendor's entry; False (nothing done) when it is unchanged."""
        self.seen = config
        if config == self.config:
            return False
        self.protections = _protections(self._runtime, self.vendor, config, self)
        self.config = config
        self.version += 1
        return True

    def refresh_limiter(self) -> bool:
        """Take the vendor's named limiter if it has one now and had none (an
        `infrastructure.rate_limiters` entry added at run time); True when it changed."""
        if self.protections.limiter is not None:
            return False
        limiter = self._runtime.protections.limiter(self.vendor, default=_own_limit(self.config))
        if limiter is None:
            return False
        self.protections = replace(self.protections, limiter=limiter)
        return True

    def __repr__(self) -> str:
        # The entry holds the API key: only the vendor and the version are shown.
        return f"ProviderSettings(vendor={self.vendor!r}, version={self.version})"


def _own_limit(config: ProviderConfig) -> RateLimiterConfig | None:
    """The vendor's own rpm/tpm as a limiter entry (None: neither is set)."""
    if config.rpm is None and config.tpm is None:
        return None
    # One limiter takes a request and its estimated tokens at once; with only a
    # tpm, the request count (every request is >= 1 token) never binds first.
    return RateLimiterConfig(
        limit=config.rpm if config.rpm is not None else config.tpm or 1,
        scale=60.0,
        tokens=config.tpm,
    )


def _protections(
    runtime: Runtime, name: str, config: ProviderConfig, previous: ProviderSettings | None
) -> ProviderProtections:
    """A vendor's breaker and limiter (the runtime's, by its name), bulkhead, retry and
    budget; with `previous`, the parts whose fields did not change are kept."""
    old = None if previous is None else previous.config
    kept = None if previous is None else previous.protections
    clock = runtime.clock
    # Always set, not only looked up: a vendor removed and added again finds its
    # named limiter still held by the runtime, built from its old rpm/tpm.
    limiter = runtime.protections.set_default(name, _own_limit(config))
    retry = None if kept is None else kept.retry
    if old is None or (old.max_retries, old.retry_max_wait) != (
        config.max_retries,
        config.retry_max_wait,
    ):
        retry = None  # no retry stage at all when none is wanted: callers see the vendor's error
        if config.max_retries > 0:
            retry = Retry(
                name,
                max_attempts=config.max_retries + 1,
                base_delay=_RETRY_BASE_DELAY,
                max_delay=config.retry_max_wait,
                clock=clock,
            )
    budget = None if kept is None else kept.budget
    if budget is None and previous is not None:
        budget, previous.spent = previous.spent, None  # off and on again: the spend counts
    if config.budget_usd is None:
        if previous is not None and budget is not None:
            previous.spent = budget
        budget = None
    elif budget is not None:
        budget.reconfigure(limit=config.budget_usd, period=config.budget_period)
    else:
        budget = Budget(
            provider=name, limit=config.budget_usd, period=config.budget_period, clock=clock
        )
    slots = config.max_in_flight
    queued = max(1000, slots * _QUEUED_PER_SLOT)
    bulkhead = None if kept is None or old is None else kept.bulkhead
    if bulkhead is None:
        bulkhead = Bulkhead(name, max_concurrent=slots, max_queued=queued)
    elif old is not None and old.max_in_flight != slots:
        # In place: a new bulkhead left the queued calls on the old one, drained at the
        # old width (raised) or running beside the new one (lowered).
        bulkhead.resize(max_concurrent=slots, max_queued=queued)
    return ProviderProtections(
        breaker=runtime.protections.breaker(name),
        limiter=limiter,
        bulkhead=bulkhead,
        retry=retry,
        budget=budget,
    )
