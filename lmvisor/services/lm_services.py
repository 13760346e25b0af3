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
vendors added to `providers` and stops those removed (see `provider_roster`). The
two run under one `rest_for_one` supervisor, `lm`: the roster starts every vendor's
actor, and a `lm_providers` that restarts (empty, as a dynamic supervisor does) is
followed by a roster restart that starts them all again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, final

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
from lmvisor.runtime.supervisor import Supervisor
from lmvisor.services.cooldown import Cooldowns
from lmvisor.services.lm_provider import LMProvider, ProviderProtections
from lmvisor.services.provider_roster import LM_PROVIDERS, RosterState, provider_roster_spec
from lmvisor.services.provider_settings import ProviderSettings
from lmvisor.services.router import DEFAULT_CALL_TIMEOUT, RouterLM

__all__ = [
    "LM_GROUP",
    "LMServices",
    "build_client",
    "reachable",
    "start_lm_providers",
]

LM_GROUP: Final = "lm"
"""The child id of the supervisor of `lm_providers` and the roster (`rest_for_one`)."""

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
    settings: Mapping[str, ProviderSettings]
    cooldowns: Cooldowns

    @property
    def supervisor(self) -> ActorRef:
        """The `lm_providers` supervisor running now (a restart makes a new one).

        Raises:
            NameNotRegistered: it is restarting.
        """
        return self.runtime.via(LM_PROVIDERS).resolve()

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
    """Start `lm` (the `lm_providers` supervisor and the roster that starts a provider
    actor per reachable vendor, and starts and stops vendors as `providers` changes).

    Events and metrics go to the runtime's own event ring and `Metrics` unless
    others are given (breaker changes and limiter refusals always go to the
    runtime's, through its named protections).

    Raises:
        StartError: a provider actor failed to start (nothing of `lm` is left running).
    """
    events = events if events is not None else runtime.events.ring
    metrics = metrics if metrics is not None else runtime.metrics
    settings = {
        vendor: ProviderSettings(runtime, vendor, cfg, make_client)
        for vendor, cfg in config.providers.items()
        if reachable(cfg)
    }
    roster = RosterState(
        settings=settings,
        seen=dict(runtime.config.providers),
        start=lambda vendor, cfg: ProviderSettings(runtime, vendor, cfg, make_client, seen=cfg),
        factory=lambda entry: _provider_factory(runtime, entry, events, metrics),
        reachable=reachable,
    )
    providers = ChildSpec(
        id=LM_PROVIDERS,
        start=lambda: DynamicSupervisor(max_restarts=10, max_seconds=10.0),
        type="supervisor",
        name=LM_PROVIDERS,
    )
    # rest_for_one: the roster (which starts the vendors' actors) follows a restart of
    # the dynamic supervisor, which comes back empty.
    await runtime.start_child(
        ChildSpec(
            id=LM_GROUP,
            start=lambda: Supervisor(
                [providers, provider_roster_spec(roster)],
                strategy="rest_for_one",
                max_restarts=10,
                max_seconds=10.0,
            ),
            type="supervisor",
        )
    )
    return LMServices(
        runtime=runtime,
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
