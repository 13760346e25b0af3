"""Start the LM side of an application: one provider actor per configured vendor.

`start_lm_providers(runtime, config)` adds a `DynamicSupervisor` named
`lm_providers` under the runtime's root and starts, under it, an `LMProvider`
for every vendor in `config.providers` that can be reached (a base URL, and an
API key where the vendor requires one). The returned `LMServices` builds
`RouterLM`s over them — what `settings.configure(lm=...)` receives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import final

from lmvisor.config.schema import InfrastructureConfig, LmvisorConfig, ProviderConfig
from lmvisor.providers import AnthropicProvider, OpenAICompatibleProvider, OpenAIProvider
from lmvisor.runtime.actor import ActorRef
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.clock import Clock
from lmvisor.runtime.dynamic_supervisor import DynamicSupervisor
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.metrics import Metrics
from lmvisor.runtime.observe.names import BREAKER_STATE_CHANGED
from lmvisor.runtime.protection import BreakerState, CircuitBreaker, RateLimiter, Retry
from lmvisor.runtime.runtime import Runtime
from lmvisor.runtime.supervisor import start_child
from lmvisor.services.budget import Budget
from lmvisor.services.cooldown import Cooldowns
from lmvisor.services.lm_provider import LMProvider, Provider, ProviderProtections, provider_spec
from lmvisor.services.router import RouterLM

__all__ = [
    "LMServices",
    "build_protections",
    "build_provider",
    "reachable",
    "start_lm_providers",
]

LM_PROVIDERS = "lm_providers"
# A Retry-After longer than this is not waited out: the router falls back instead.
_MAX_RETRY_WAIT = 20.0
_KEY_REQUIRED = frozenset({"openai", "anthropic"})


def reachable(config: ProviderConfig) -> bool:
    """True when a provider can be started: a base URL, and a key where the vendor needs one."""
    if config.base_url is None:
        return False
    return config.kind not in _KEY_REQUIRED or config.api_key is not None


def build_provider(name: str, config: ProviderConfig) -> Provider:
    """The vendor client for `config` (its pool sized for `max_in_flight`).

    Raises:
        ValueError: if the config has no `base_url`.
    """
    if config.base_url is None:
        raise ValueError(f"providers.{name}.base_url: a base URL is required")
    vendor: type[OpenAIProvider | AnthropicProvider | OpenAICompatibleProvider]
    if config.kind == "openai":
        vendor = OpenAIProvider
    elif config.kind == "anthropic":
        vendor = AnthropicProvider
    else:
        vendor = OpenAICompatibleProvider
    return vendor(
        name=name,
        api_key=None if config.api_key is None else config.api_key.get_secret_value(),
        base_url=config.base_url,
        default_model=config.default_model,
        timeout=config.timeout,
        max_connections=max(100, config.max_in_flight + 16),
    )


def build_protections(
    name: str, config: ProviderConfig, infra: InfrastructureConfig, *, clock: Clock
) -> ProviderProtections:
    """A vendor's breaker, limiters, retry and budget, from its config and the named protections."""
    breaker_cfg = infra.circuit_breakers.get(name) or infra.circuit_breakers.get("default")
    breaker = CircuitBreaker(
        f"lm_provider:{name}",
        clock=clock,
        **({} if breaker_cfg is None else breaker_cfg.model_dump()),
    )
    requests = (
        None
        if config.rpm is None
        else RateLimiter(f"lm_provider:{name}:rpm", limit=config.rpm, period=60.0, clock=clock)
    )
    tokens = (
        None
        if config.tpm is None
        # Weighted by each request's estimated tokens; its request count (tpm, and every
        # request is estimated at >= 1 token) never binds first.
        else RateLimiter(
            f"lm_provider:{name}:tpm",
            limit=config.tpm,
            token_limit=config.tpm,
            period=60.0,
            clock=clock,
        )
    )
    # No retry stage at all when none is wanted, so callers see the vendor's own error.
    retry = None
    if config.max_retries > 0:
        retry = Retry(
            f"lm_provider:{name}",
            max_attempts=config.max_retries + 1,
            base_delay=0.25,
            max_delay=_MAX_RETRY_WAIT,
            clock=clock,
        )
    budget = None
    if config.budget_usd is not None:
        budget = Budget(
            provider=name, limit=config.budget_usd, period=config.budget_period, clock=clock
        )
    return ProviderProtections(
        breaker=breaker, retry=retry, requests=requests, tokens=tokens, budget=budget
    )


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class LMServices:
    """The running provider actors of a runtime, and a factory for routers over them."""

    runtime: Runtime
    supervisor: ActorRef
    vendors: tuple[str, ...]
    protections: Mapping[str, ProviderProtections]
    cooldowns: Cooldowns

    def router(
        self, model: str, *, fallbacks: Sequence[str] = (), timeout: float | None = 120.0
    ) -> RouterLM:
        """A `RouterLM` for `model` with `fallbacks`, sharing this runtime's cooldowns.

        Raises:
            UnknownProvider: a model names a vendor with no provider running.
            ValueError: a model is not "vendor/model".
        """
        return RouterLM(
            self.runtime,
            model,
            fallbacks=fallbacks,
            vendors=self.vendors,
            timeout=timeout,
            cooldowns=self.cooldowns,
        )


async def start_lm_providers(
    runtime: Runtime,
    config: LmvisorConfig,
    *,
    events: EventRing | None = None,
    metrics: Metrics | None = None,
    make_provider: Callable[[str, ProviderConfig], Provider] = build_provider,
) -> LMServices:
    """Start the `lm_providers` supervisor and a provider actor per reachable vendor.

    Events and metrics go to the runtime's own event ring and `Metrics` unless
    others are given; breaker changes and limiter refusals are reported there too.

    Raises:
        StartError: a provider actor failed to start (the supervisor is left running).
    """
    events = events if events is not None else runtime.events.ring
    metrics = metrics if metrics is not None else runtime.metrics
    sup = await runtime.start_child(
        ChildSpec(
            id=LM_PROVIDERS,
            start=lambda: DynamicSupervisor(max_restarts=10, max_seconds=10.0),
            type="supervisor",
            name=LM_PROVIDERS,
        )
    )
    protections: dict[str, ProviderProtections] = {}
    for vendor, cfg in config.providers.items():
        if not reachable(cfg):
            continue
        prot = build_protections(vendor, cfg, config.infrastructure, clock=runtime.clock)
        _observe(prot, events, metrics)
        protections[vendor] = prot
        spec = provider_spec(
            vendor, _actor_factory(vendor, cfg, prot, events, metrics, make_provider)
        )
        await start_child(sup, spec)
    return LMServices(
        runtime=runtime,
        supervisor=sup,
        vendors=tuple(protections),
        protections=protections,
        cooldowns=Cooldowns(clock=runtime.clock),
    )


def _observe(prot: ProviderProtections, events: EventRing, metrics: Metrics) -> None:
    def changed(breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        data = {"breaker": breaker.name, "old": old.name.lower(), "new": new.name.lower()}
        events.emit(BREAKER_STATE_CHANGED, data)

    prot.breaker.add_listener(metrics.breaker_changed)
    prot.breaker.add_listener(changed)
    for limiter in (prot.requests, prot.tokens):
        if limiter is not None:
            limiter.add_rejection_listener(metrics.limiter_rejected)


def _actor_factory(
    vendor: str,
    cfg: ProviderConfig,
    protections: ProviderProtections,
    events: EventRing | None,
    metrics: Metrics | None,
    make_provider: Callable[[str, ProviderConfig], Provider],
) -> Callable[[], LMProvider]:
    def make() -> LMProvider:
        return LMProvider(
            vendor=vendor,
            make_provider=lambda: make_provider(vendor, cfg),
            protections=protections,
            max_in_flight=cfg.max_in_flight,
            events=events,
            metrics=metrics,
        )

    return make
