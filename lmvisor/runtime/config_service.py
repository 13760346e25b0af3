"""The live config service: one actor per runtime that reads, updates and announces settings.

- `GetConfig(path)` returns the setting at a dotted path ("" for the whole tree).
- `UpdateConfig(path, value)` validates a new tree against the schema; if the
  value is refused the caller gets the `ConfigError`, the old value stays and
  nobody is notified. A change that nothing running would apply (no prefix ever
  subscribed to covers the setting: a provider's key, the data directory, the
  server's port are read once at start) is refused the same way, naming it.
  On success it returns the new tree, records a `config.changed` event (the
  path only) in the runtime's events and casts `ConfigChanged` to every
  subscriber whose prefix covers the path (or lies under it: replacing
  `providers` concerns a `providers.openai` subscriber).
  An `infrastructure` update first reconfigures the runtime's named breakers
  and limiters in place (`Protections.reconfigure`).
- `SubscribeConfig(subscriber, prefix)` lists the subscriber under the
  registry duplicate key `("lmvisor.config", prefix)`, so a subscriber that
  dies drops out by itself. Each subscriber gets at most one notice per update.

The current tree and the subscribed prefixes live in a holder shared by the
actor's incarnations, so a restarted service resumes with the latest accepted
configuration and keeps notifying the same subscribers.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Final, final

from lmvisor.config.errors import ConfigError, ConfigProblem
from lmvisor.config.loading import get_value, replace_value
from lmvisor.config.schema import LmvisorConfig
from lmvisor.runtime.actor import Actor, ActorRef, ErrorReply, handler
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.errors import ActorExited, MailboxFull
from lmvisor.runtime.messages import Call, Cast
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.runtime.observe.names import CONFIG_CHANGED
from lmvisor.runtime.registry import Via

__all__ = [
    "CONFIG_SERVICE_NAME",
    "ConfigChanged",
    "ConfigHolder",
    "ConfigService",
    "GetConfig",
    "SubscribeConfig",
    "UnsubscribeConfig",
    "UpdateConfig",
    "config_service_spec",
    "config_subscription_key",
    "covers",
    "get_config",
    "subscribe_config",
    "update_config",
]

_log: Final = get_logger("lmvisor.runtime.config")

CONFIG_SERVICE_NAME: Final = "config"
"""The registry name the config service runs under."""


@final
@dataclass(frozen=True, slots=True)
class GetConfig(Call[Any]):
    """The setting at `path` (dotted; "" for the whole tree)."""

    path: str = ""


@final
@dataclass(frozen=True, slots=True)
class UpdateConfig(Call[LmvisorConfig]):
    """Set `path` to `value`; replies with the new tree or raises `ConfigError`."""

    path: str
    value: Any


@final
@dataclass(frozen=True, slots=True)
class SubscribeConfig(Call[None]):
    """Send `ConfigChanged` to `subscriber` for updates at or under / above `prefix`."""

    subscriber: ActorRef
    prefix: str = ""


@final
@dataclass(frozen=True, slots=True)
class UnsubscribeConfig(Call[None]):
    """Stop what `SubscribeConfig` with the same fields asked for."""

    subscriber: ActorRef
    prefix: str = ""


@final
@dataclass(frozen=True, slots=True)
class ConfigChanged(Cast):
    """Sent to subscribers after an accepted update: the path, old and new values, new tree."""

    path: str
    old: Any
    new: Any
    config: LmvisorConfig


@final
class ConfigHolder:
    """The current tree, shared by the service's incarnations (and readable without a call).

    `prefixes` records every prefix ever subscribed to; the registry says who
    is still listening under each.
    """

    __slots__ = ("config", "prefixes")

    def __init__(self, config: LmvisorConfig) -> None:
        self.config = config
        self.prefixes: set[str] = set()

    def __repr__(self) -> str:
        return f"ConfigHolder(at {id(self.config):#x})"


def config_subscription_key(prefix: str) -> tuple[str, str]:
    """The registry duplicate key subscribers to `prefix` are listed under."""
    return ("lmvisor.config", prefix)


def covers(prefix: str, path: str) -> bool:
    """Whether an update at `path` concerns a subscriber to `prefix`.

    True when one is the other or an ancestor of it on dot boundaries; the
    empty prefix covers everything.
    """
    if not prefix or prefix == path:
        return True
    return path.startswith(prefix + ".") or prefix.startswith(path + ".")


@final
class ConfigService(Actor):
    """Serves one runtime's configuration; see the module docstring."""

    def __init__(self, holder: ConfigHolder) -> None:
        self._holder = holder
        self.dropped_notices = 0

    @property
    def config(self) -> LmvisorConfig:
        """The current configuration."""
        return self._holder.config

    @handler
    def get(self, msg: GetConfig) -> Any:
        if not msg.path:
            return self._holder.config
        try:
            return get_value(self._holder.config, msg.path)
        except ConfigError as exc:
            return ErrorReply(exc)

    @handler
    def update(self, msg: UpdateConfig) -> LmvisorConfig | ErrorReply:
        old_tree = self._holder.config
        try:
            new_tree = replace_value(old_tree, msg.path, msg.value)
            old = get_value(old_tree, msg.path) if _present(old_tree, msg.path) else None
            new = get_value(new_tree, msg.path)
        except ConfigError as exc:
            return ErrorReply(exc)
        unapplied = _first_unapplied(self._holder.prefixes, old_tree, new_tree, msg.path)
        if unapplied is not None:
            problem = (
                "is read at start only: nothing running would apply a new value"
                " (no subscriber covers it); set it in the configuration and restart"
            )
            refused = ConfigError(problems=[ConfigProblem(unapplied, problem)], action="update")
            return ErrorReply(refused)
        self._holder.config = new_tree
        if covers("infrastructure", msg.path):
            # The runtime's named breakers and limiters are held by services, not
            # subscribers: changed in place here, before anyone hears of the update.
            self.runtime.protections.reconfigure(new_tree.infrastructure)
        # The event and the log line name the path only: values may be secrets.
        self.runtime.events.emit(CONFIG_CHANGED, {"path": msg.path})
        _log.info(CONFIG_CHANGED, path=msg.path)
        self._notify(ConfigChanged(path=msg.path, old=old, new=new, config=new_tree))
        return new_tree

    @handler
    def subscribe(self, msg: SubscribeConfig) -> ErrorReply | None:
        try:
            self.runtime.registry.register_duplicate(
                config_subscription_key(msg.prefix), msg.subscriber
            )
        except (ActorExited, ValueError) as exc:
            return ErrorReply(exc)
        self._holder.prefixes.add(msg.prefix)
        return None

    @handler
    def unsubscribe(self, msg: UnsubscribeConfig) -> None:
        self.runtime.registry.unregister_duplicate(
            config_subscription_key(msg.prefix), msg.subscriber
        )

    def _notify(self, change: ConfigChanged) -> None:
        registry = self.runtime.registry
        sent: set[ActorRef] = set()
        for prefix in sorted(self._holder.prefixes):
            if not covers(prefix, change.path):
                continue
            for ref in registry.lookup_all(config_subscription_key(prefix)):
                if ref in sent:
                    continue
                sent.add(ref)
                try:
                    ref.cast_nowait(change)
                except (MailboxFull, ActorExited, TypeError):
                    # A slow, dead or deaf subscriber must not fail the update.
                    self.dropped_notices += 1

    def format_status(self) -> object:
        # The tree holds secrets; crash reports show only what is subscribed.
        return {"prefixes": sorted(self._holder.prefixes)}


_APPLIED_HERE: Final = "infrastructure"  # the service reconfigures the runtime's protections


def _first_unapplied(
    prefixes: set[str], old_tree: LmvisorConfig, new_tree: LmvisorConfig, path: str
) -> str | None:
    """The first setting under `path` that the update changes and that no prefix ever
    subscribed to (nor the service itself) covers: accepting it would announce a change
    that nothing applies (a provider's key or limit, the data directory, the server's port
    are read once at start)."""
    applied = (*prefixes, _APPLIED_HERE)
    old: Any = old_tree.model_dump()
    new: Any = new_tree.model_dump()
    for key in path.split(".") if path else ():
        old = old.get(key) if isinstance(old, dict) else None
        new = new.get(key) if isinstance(new, dict) else None
    for changed in _changed_paths(old, new, path):
        if not any(not p or changed == p or changed.startswith(p + ".") for p in applied):
            return changed
    return None


def _changed_paths(old: Any, new: Any, path: str) -> list[str]:
    """The dotted paths of the leaves (or whole values) that differ between two dumps."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[str] = []
        for key in sorted({*old, *new}, key=str):
            at = f"{path}.{key}" if path else str(key)
            found.extend(_changed_paths(old.get(key), new.get(key), at))
        return found
    return [] if old == new else [path]


def _present(config: LmvisorConfig, path: str) -> bool:
    try:
        get_value(config, path)
    except ConfigError:
        return False
    return True


def config_service_spec(
    config: LmvisorConfig | ConfigHolder,
    *,
    id: str = "config",
    name: Hashable = CONFIG_SERVICE_NAME,
) -> ChildSpec:
    """A permanent child running the config service, registered as `name`.

    Every incarnation shares one `ConfigHolder`, so accepted updates survive
    a restart of the service.
    """
    holder = config if isinstance(config, ConfigHolder) else ConfigHolder(config)

    def start() -> ConfigService:
        return ConfigService(holder)

    return ChildSpec(id, start, name=name)


async def get_config(service: ActorRef | Via, path: str = "") -> Any:
    """The setting at `path` from the service.

    Raises:
        ConfigError: no setting lives at `path`.
        CallTimeout, ActorExited, NameNotRegistered: as `call` does.
    """
    return await service.call(GetConfig(path))


async def update_config(service: ActorRef | Via, path: str, value: Any) -> LmvisorConfig:
    """Set `path` to `value`; returns the new tree.

    Raises:
        ConfigError: the value is refused (the old value stays; nobody is notified).
        CallTimeout, ActorExited, NameNotRegistered: as `call` does.
    """
    return await service.call(UpdateConfig(path, value))


async def subscribe_config(service: ActorRef | Via, subscriber: ActorRef, prefix: str = "") -> None:
    """Have `subscriber` (which must handle `ConfigChanged`) hear of updates under `prefix`.

    Raises:
        ActorExited: `subscriber` is dead.
        CallTimeout, NameNotRegistered: as `call` does.
    """
    await service.call(SubscribeConfig(subscriber, prefix))
