"""The provider roster: starts and stops vendors' provider actors as `providers` changes.

One actor per runtime, subscribed to `providers`. A vendor added (or made
reachable: a base URL, a key where needed) gets its provider actor under
`lm_providers` and joins `LMServices.vendors`, so routers made from then on
accept its models. A vendor removed (or made unreachable) leaves
`LMServices.vendors` at once and its registered name is dropped, so new calls
stop reaching it (a router falls back past it), while the calls already in
flight finish: the roster waits for them, up to the vendor's longest call
(`timeout` x attempts, at most `DRAIN_LIMIT` seconds), then stops the actor; a
call still running then gets `ActorExited`. A change of a running vendor's
entry is its provider actor's own to apply (see `lm_provider`).

The roster compares the tree with the one it last saw, in a holder its
incarnations share: an update made while it restarted applies in `started()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, final

from lmvisor.config.schema import LmvisorConfig, ProviderConfig
from lmvisor.runtime.actor import Actor, ActorRef, handler
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.config_service import ConfigChanged, subscribe_config
from lmvisor.runtime.errors import LmvisorError
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.runtime.supervisor import start_child, terminate_child, which_children
from lmvisor.services.lm_provider import Drain, LMProvider, provider_name, provider_spec
from lmvisor.services.provider_settings import ProviderSettings

__all__ = ["DRAIN_LIMIT", "LM_PROVIDERS", "ProviderRoster", "RosterState", "provider_roster_spec"]

_log: Final = get_logger("lmvisor.services.provider_roster")

LM_PROVIDERS: Final = "lm_providers"
"""The registered name (and child id) of the dynamic supervisor of the provider actors."""

DRAIN_LIMIT: Final = 120.0
"""The longest a removed vendor's calls in flight are waited for (the router's deadline)."""

_STOP_TRIES: Final = 50
_STOP_PAUSE: Final = 0.05  # seconds between looks for a restarting child to stop


def _never() -> LMProvider:
    raise AssertionError("only the spec's id is read")


@final
@dataclass(kw_only=True, eq=False)
class RosterState:
    """What the roster's incarnations share: the running vendors and the tree last seen.

    Attributes:
        settings: each running vendor's settings (`LMServices` reads the same dict).
        seen: the `providers` tree the roster last acted on.
        start: builds a new vendor's settings from its entry.
        factory: the provider actor factory for a vendor's settings.
        reachable: whether an entry can be started.
        restarted: False until the roster's first start has started every vendor.
        parked: the settings of vendors removed, or not started after a restart of
            `lm_providers`, reused when the vendor is added again (a budget's spend kept).
    """

    settings: dict[str, ProviderSettings]
    seen: dict[str, ProviderConfig]
    start: Callable[[str, ProviderConfig], ProviderSettings]
    factory: Callable[[ProviderSettings], Callable[[], LMProvider]]
    reachable: Callable[[ProviderConfig], bool]
    restarted: bool = False
    parked: dict[str, ProviderSettings] = field(default_factory=dict)


@final
class ProviderRoster(Actor):
    """Keeps `lm_providers` in step with `providers`; see the module docstring."""

    def __init__(self, roster: RosterState) -> None:
        super().__init__()
        self._roster = roster

    @property
    def _supervisor(self) -> ActorRef:
        # By name: `lm_providers` restarted is a new supervisor (and this roster with it).
        return self.runtime.via(LM_PROVIDERS).resolve()

    async def started(self) -> None:
        # Subscribed before the tree is read: an update accepted in between is a notice
        # in the mailbox, and a second look at an unchanged tree does nothing.
        await subscribe_config(self.runtime.via("config"), self.ref, "providers")
        await self._start_running()
        await self._reconcile(self.runtime.config)

    async def _start_running(self) -> None:
        """Start the actor of every vendor the roster holds that `lm_providers` does not
        run: all of them at the app's start (a failure fails the start), after a restart
        of `lm_providers` (which comes back empty; a vendor failing then is parked,
        logged, and started again by its next change)."""
        roster, supervisor = self._roster, self._supervisor
        running = {child.id for child in await which_children(supervisor)}
        for vendor, settings in list(roster.settings.items()):
            spec = provider_spec(vendor, roster.factory(settings))
            if spec.id in running:
                continue
            try:
                await start_child(supervisor, spec)
            except (LmvisorError, ImportError, ValueError) as exc:
                if not roster.restarted:
                    raise  # the app's start fails with it
                _log.warning("lm_provider.not_started", provider=vendor, error=type(exc).__name__)
                roster.parked[vendor] = roster.settings.pop(vendor)
        roster.restarted = True

    @handler
    async def changed(self, msg: ConfigChanged) -> None:
        # The newest tree, not the notice's: updates accepted while this one waited (a
        # removal's drain) are then all in it, and their own notices find nothing to do.
        await self._reconcile(self.runtime.config)

    async def _reconcile(self, config: LmvisorConfig) -> None:
        roster = self._roster
        new = dict(config.providers)
        for vendor in sorted({*roster.seen, *new}):
            entry = new.get(vendor)
            if entry == roster.seen.get(vendor):
                continue
            wanted = entry is not None and roster.reachable(entry)
            if vendor in roster.settings and not wanted:
                await self._remove(vendor)
            elif vendor not in roster.settings and entry is not None and wanted:
                await self._add(vendor, entry)
        roster.seen = new

    async def _add(self, vendor: str, entry: ProviderConfig) -> None:
        roster = self._roster
        try:
            settings = roster.parked.pop(vendor, None)  # its budget's spend still counts
            if settings is None:
                settings = roster.start(vendor, entry)
            else:
                settings.update(entry)
            await start_child(self._supervisor, provider_spec(vendor, roster.factory(settings)))
        except (LmvisorError, ImportError, ValueError) as exc:
            # Logged by type: the message could carry the entry's URL.
            _log.warning("lm_provider.not_started", provider=vendor, error=type(exc).__name__)
            if settings is not None:
                roster.parked[vendor] = settings
            return
        roster.settings[vendor] = settings
        _log.info("lm_provider.added", provider=vendor)

    async def _remove(self, vendor: str) -> None:
        settings = self._roster.settings.pop(vendor)
        self._roster.parked[vendor] = settings  # added again: its budget's spend counts
        registry = self.runtime.registry
        ref = registry.whereis(provider_name(vendor))
        if ref is not None:
            # New calls find no provider (a router falls back); calls in flight finish.
            registry.unregister(provider_name(vendor))
            cfg = settings.config
            bound = min(DRAIN_LIMIT, cfg.timeout * (cfg.max_retries + 1))
            try:
                left = await ref.call(Drain(timeout=bound), timeout=bound + 1.0)
            except LmvisorError:
                left = -1  # it died meanwhile, or did not answer: stopped below regardless
            if left:
                _log.warning("lm_provider.drain_incomplete", provider=vendor, in_flight=left)
        await self._stop(vendor)

    async def _stop(self, vendor: str) -> None:
        """Terminate the vendor's child (a dynamic supervisor knows its children by ref:
        one being restarted is waited for, briefly)."""
        child_id = provider_spec(vendor, _never).id
        for _ in range(_STOP_TRIES):
            found = [c for c in await which_children(self._supervisor) if c.id == child_id]
            if not found:
                break
            ref = found[0].ref
            if ref is None:
                await asyncio.sleep(_STOP_PAUSE)
                continue
            try:
                await terminate_child(self._supervisor, ref)
            except ValueError:
                continue  # it exited and was restarted meanwhile: look again
            _log.info("lm_provider.removed", provider=vendor)
            return
        _log.warning("lm_provider.not_stopped", provider=vendor)

    def format_status(self) -> object:
        return {"vendors": sorted(self._roster.settings)}


def provider_roster_spec(roster: RosterState) -> ChildSpec:
    """The child spec of the roster: permanent, its state shared by its incarnations."""
    return ChildSpec(
        id="lm_provider_roster",
        start=lambda: ProviderRoster(roster),
        restart="permanent",
    )
