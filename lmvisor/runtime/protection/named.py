"""Named protections built from `infrastructure` config, one instance per name.

A runtime holds one `Protections`; services ask it for `breaker("openai")`
or `limiter("openai")` and always get the same object for a name, so every
caller of a callee shares its breaker and budget. Listeners added here are
attached to every breaker and limiter, present and future: that is where
the runtime hooks events and gauges.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, final

from lmvisor.config.schema import CircuitBreakerConfig, InfrastructureConfig, RateLimiterConfig
from lmvisor.runtime.clock import Clock, SystemClock
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.runtime.observe.names import BREAKER_STATE_CHANGED, LIMITER_REJECTED
from lmvisor.runtime.protection.breaker import BreakerListener, BreakerState, CircuitBreaker
from lmvisor.runtime.protection.limiter import RateLimiter, RejectionListener

if TYPE_CHECKING:
    # Only for annotations: metrics imports the protection package.
    from lmvisor.runtime.observe.metrics import Metrics

__all__ = ["Protections"]

_log: Final = get_logger("lmvisor.runtime.protection")


@final
class Protections:
    """Breakers and limiters by name, configured from `InfrastructureConfig`.

    A breaker name with no entry uses the `default` entry (or the schema's
    defaults if there is none); a limiter name with no entry has no limiter.
    """

    __slots__ = (
        "_breaker_listeners",
        "_breakers",
        "_clock",
        "_config",
        "_defaults",
        "_limiters",
        "_rejection_listeners",
    )

    def __init__(self, config: InfrastructureConfig, *, clock: Clock | None = None) -> None:
        self._config = config
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._limiters: dict[str, RateLimiter | None] = {}
        self._defaults: dict[str, RateLimiterConfig] = {}
        self._breaker_listeners: list[BreakerListener] = []
        self._rejection_listeners: list[RejectionListener] = []

    def breaker(self, name: str) -> CircuitBreaker:
        """The breaker for `name`, built on first use."""
        found = self._breakers.get(name)
        if found is None:
            spec = _breaker_spec(self._config, name)
            found = CircuitBreaker(
                name,
                failure_threshold=spec.failure_threshold,
                recovery_time=spec.recovery_time,
                success_threshold=spec.success_threshold,
                clock=self._clock,
            )
            for listener in self._breaker_listeners:
                found.add_listener(listener)
            self._breakers[name] = found
        return found

    def limiter(self, name: str, *, default: RateLimiterConfig | None = None) -> RateLimiter | None:
        """The limiter for `name`, built on first use; None if `name` has no entry.

        `default` is the limit a service knows for the callee (a vendor's own
        rpm/tpm) when the configuration has no entry: an entry always wins.
        """
        found = self._limiters.get(name)
        if found is not None or (name in self._limiters and default is None):
            return found
        if default is not None:
            self._defaults[name] = default
        spec = self._config.rate_limiters.get(name) or default
        built = None
        if spec is not None:
            built = RateLimiter(
                name,
                limit=spec.limit,
                period=spec.scale,
                token_limit=spec.tokens,
                clock=self._clock,
            )
            for listener in self._rejection_listeners:
                built.add_rejection_listener(listener)
        self._limiters[name] = built
        return built

    def set_default(self, name: str, default: RateLimiterConfig | None) -> RateLimiter | None:
        """Change the callee's own limit (a vendor's new rpm/tpm) in place.

        An `infrastructure.rate_limiters` entry still wins. A limiter already built
        is reconfigured (its waiters re-timed) or, left with no limit, lifted (callers
        in flight may hold it) and None returned; one not built yet is built now.
        """
        if default is None:
            self._defaults.pop(name, None)
        else:
            self._defaults[name] = default
        found = self._limiters.get(name)
        if found is None:
            self._limiters.pop(name, None)
            return self.limiter(name, default=default)
        spec = self._config.rate_limiters.get(name) or default
        if spec is None:
            found.lift()
            return None
        found.reconfigure(limit=spec.limit, period=spec.scale, token_limit=spec.tokens)
        return found

    def reconfigure(self, config: InfrastructureConfig) -> None:
        """Apply a changed `infrastructure` to every breaker and limiter built so far, in
        place: their holders (provider actors) keep the same objects, breakers keep their
        state and waiting callers are re-timed against the new limits.

        A limiter whose entry is removed falls back to the callee's own limit it was
        built with (a vendor's rpm/tpm), else is lifted (`RateLimiter.lift`): callers
        hold it. A callee that had no limiter and now has an entry gets one built by its
        holder's next `limiter()` (a provider asks when it hears of the change).
        """
        self._config = config
        for name, breaker in self._breakers.items():
            spec = _breaker_spec(config, name)
            breaker.reconfigure(
                failure_threshold=spec.failure_threshold,
                recovery_time=spec.recovery_time,
                success_threshold=spec.success_threshold,
            )
        for name, limiter in list(self._limiters.items()):
            found = config.rate_limiters.get(name) or self._defaults.get(name)
            if limiter is None:
                if found is not None:
                    del self._limiters[name]  # built by the next `limiter(name)`
                continue
            if found is None:
                limiter.lift()
            else:
                limiter.reconfigure(limit=found.limit, period=found.scale, token_limit=found.tokens)

    def add_breaker_listener(self, listener: BreakerListener) -> None:
        """Attach `listener` to every breaker, those built later included."""
        self._breaker_listeners.append(listener)
        for breaker in self._breakers.values():
            breaker.add_listener(listener)

    def add_rejection_listener(self, listener: RejectionListener) -> None:
        """Attach `listener` to every limiter, those built later included."""
        self._rejection_listeners.append(listener)
        for limiter in self._limiters.values():
            if limiter is not None:
                limiter.add_rejection_listener(listener)

    def observe(self, *, metrics: Metrics | None = None, events: EventRing | None = None) -> None:
        """Report every breaker change and limiter refusal to `metrics` and/or `events`.

        Metrics: the breaker state gauge and the rejection counter. Events:
        `breaker.state_changed` (`breaker`, `old`, `new`), also logged (a
        warning when a breaker opens), and `limiter.rejected` (`limiter`,
        `retry_after`), not logged: refusals are frequent and counted instead.
        """
        if metrics is not None:
            self.add_breaker_listener(metrics.breaker_changed)
            self.add_rejection_listener(metrics.limiter_rejected)
        if events is not None:
            ring = events

            def breaker_event(
                breaker: CircuitBreaker, old: BreakerState, new: BreakerState
            ) -> None:
                data = {"breaker": breaker.name, "old": old.name.lower(), "new": new.name.lower()}
                ring.emit(BREAKER_STATE_CHANGED, data)
                log = _log.warning if new is BreakerState.OPEN else _log.info
                log(BREAKER_STATE_CHANGED, **data)

            def rejection_event(limiter: RateLimiter, retry_after: float) -> None:
                ring.emit(LIMITER_REJECTED, {"limiter": limiter.name, "retry_after": retry_after})

            self.add_breaker_listener(breaker_event)
            self.add_rejection_listener(rejection_event)

    @property
    def breakers(self) -> Mapping[str, CircuitBreaker]:
        """The breakers built so far, by name (read-only view)."""
        return MappingProxyType(self._breakers)

    @property
    def limiters(self) -> Mapping[str, RateLimiter]:
        """The limiters built so far, by name."""
        return {name: lim for name, lim in self._limiters.items() if lim is not None}

    def __repr__(self) -> str:
        return f"Protections(breakers={sorted(self._breakers)}, limiters={sorted(self.limiters)})"


def _breaker_spec(config: InfrastructureConfig, name: str) -> CircuitBreakerConfig:
    entries = config.circuit_breakers
    return entries.get(name) or entries.get("default") or CircuitBreakerConfig()
