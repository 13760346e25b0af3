"""Start the LM side of an application: one provider actor per configured vendor.

`start_lm_providers(runtime, config)` adds a `DynamicSupervisor` named
`lm_providers` under the runtime's root and starts, under it, an `LMProvider`
for every vendor in `config.providers` that can be reached (a base URL, and an
API key where the vendor requires one). The returned `LMServices` builds
`RouterLM`s over them — what `settings.configure(lm=...)` receives.

A vendor's breaker and rate limiter are the runtime's named protections
under the vendor's name (`runtime.protections.breaker("openai")`), so
`infrastructure.circuit_breakers.<vendor>` and `infrastructure.rate_limiters.<vendor>`
configure them and they report to the runtime's metrics and events; without a
rate-limiter entry the vendor's own `rpm`/`tpm` make its limiter.

`providers` applies while the app runs: each vendor's entry and protections live
in a `ProviderSettings` its actor's incarnations share (see `lm_provider` for how a
changed entry is applied), and a `ProviderRoster` next to the supervisor starts
vendors added to `providers` and stops those removed (see `provider_roster`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import final

from lmvisor.config.schema import LmvisorConfig, ProviderConfig
from lmvisor.providers.anthropic import AnthropicClient
from lmvisor.providers.client import ClientOptions, VendorClient
from lmvisor.providers.openai import OpenAIClient
from lmvisor.providers.openai_compatible import OpenAICompatibleClient
from lmvisor.runtime.actor import ActorRef
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.dynamic_supervisor import DynamicSupervisor
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.metrics import Metrics
from lmvisor.runtime.runtime import Runtime
from lmvisor.runtime.supervisor import start_child
from lmvisor.services.cooldown import Cooldowns
from lmvisor.services.lm_provider import LMProvider, ProviderProtections, provider_spec
from lmvisor.services.provider_roster import RosterState, provider_roster_spec
from lmvisor.services.provider_settings import ProviderSettings
from lmvisor.services.router import DEFAULT_CALL_TIMEOUT, RouterLM

__all__ = [
    "LM_PROVIDERS",
    "LMServices",
    "build_client",
    "reachable",
    "start_lm_providers",
]

LM_PROVIDERS = "lm_providers"
"""The registered name (and child id) of the supervisor of the provider actors."""

_KEY_REQUIRED = frozenset({"openai", "anthropic"})


def reachable(config: ProviderConfig) -> bool:
    """True when a provider can be started: a base URL, and a key where the vendor needs one."""
    if config.base_url is None:
        return False
    return config.kind not in _KEY_REQUIRED or config.api_key is not None


def build_client(name: str, config: ProviderConfig) -> VendorClient:
    """The vendor client for `config`, its pool sized for `max_in_flight`.

    Raises:
        ValueError: the config has no `base_url`.
        ImportError: `transport = "pyreqwest"` and pyreqwest is not installed.
    """
    if config.base_url is None:
        raise ValueError(f"providers.{name}.base_url: a base URL is required")
    options = ClientOptions(
        name=name,
        api_key=None if config.api_key is None else config.api_key.get_secret_value(),
        base_url=config.base_url,
        default_model=config.default_model,
        timeout=config.timeout,
        transport=config.transport,
        max_connections=config.max_in_flight,
    )
    if config.kind == "openai":
        return OpenAIClient(options)
    if config.kind == "anthropic":
        return AnthropicClient(options)
    return OpenAICompatibleClient(options)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class LMServices:
    """The running provider actors of a runtime, and a factory for routers over them.

    `vendors` and `protections` follow the configuration: a vendor added under
    `providers` while the app runs shows here once its provider actor started.
    """

    runtime: Runtime
    supervisor: ActorRef
    settings: Mapping[str, ProviderSettings]
    cooldowns: Cooldowns

    @property
    def vendors(self) -> tuple[str, ...]:
        """The vendors with a provider actor running (or restarting) now."""
        return tuple(self.settings)

    @property
    def protections(self) -> Mapping[str, ProviderProtections]:
        """Each running vendor's protections now in force."""
        return {vendor: entry.protections for vendor, entry in self.settings.items()}

    def router(
        self,
        model: str,
        *,
        fallbacks: Sequence[str] = (),
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
        deployment_timeout: float | None = None,
    ) -> RouterLM:
        """A `RouterLM` for `model` with `fallbacks`, sharing this runtime's cooldowns.

        The router finds each vendor's provider by its registered name on every call,
        so it reaches a provider whose settings changed, or that was removed and added
        again, without being rebuilt.

        Raises:
            UnknownProvider: a model names a vendor with no provider running.
            ValueError: a model is not "vendor/model", or a timeout is not positive.
        """
        return RouterLM(
            self.runtime,
            model,
            fallbacks=fallbacks,
            vendors=self.vendors,
            timeout=timeout,
            deployment_timeout=deployment_timeout,
            cooldowns=self.cooldowns,
        )


async def start_lm_providers(
    runtime: Runtime,
    config: LmvisorConfig,
    *,
    events: EventRing | None = None,
    metrics: Metrics | None = None,
    make_client: Callable[[str, ProviderConfig], VendorClient] = build_client,
) -> LMServices:
    """Start the `lm_providers` supervisor, a provider actor per reachable vendor, and
    the roster that starts and stops vendors as `providers` changes.

    Events and metrics go to the runtime's own event ring and `Metrics` unless
    others are given (breaker changes and limiter refusals always go to the
    runtime's, through its named protections).

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
    settings: dict[str, ProviderSettings] = {}
    for vendor, cfg in config.providers.items():
        if not reachable(cfg):
            continue
        entry = ProviderSettings(runtime, vendor, cfg, make_client)
        await start_child(
            sup, provider_spec(vendor, _provider_factory(runtime, entry, events, metrics))
        )
        settings[vendor] = entry
    roster = RosterState(
        settings=settings,
        seen=dict(runtime.config.providers),
        start=lambda vendor, cfg: ProviderSettings(runtime, vendor, cfg, make_client),
        factory=lambda entry: _provider_factory(runtime, entry, events, metrics),
        reachable=reachable,
    )
    await runtime.start_child(provider_roster_spec(sup, roster))
    return LMServices(
        runtime=runtime,
        supervisor=sup,
        settings=settings,
        cooldowns=Cooldowns(clock=runtime.clock),
    )


def _provider_factory(
    runtime: Runtime,
    entry: ProviderSettings,
    events: EventRing,
    metrics: Metrics,
) -> Callable[[], LMProvider]:
    """What the supervisor calls to start (and restart) a vendor's provider actor; every
    incarnation shares the vendor's settings, so a restart builds from those in force."""

    def make() -> LMProvider:
        return LMProvider(
            vendor=entry.vendor,
            settings=entry,
            clock=runtime.clock,
            events=events,
            metrics=metrics,
        )

    return make
