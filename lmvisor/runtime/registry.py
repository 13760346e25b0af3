"""Per-runtime names for actors: unique names, duplicate keys (pub/sub), and `via` addresses.

Names are any hashable (``"cache"``, ``("lm_provider", "openai")``); an actor
may hold several (OTP's `register` allows one a process). A taken name raises
`NameAlreadyRegistered`. An entry is removed the moment its actor dies, so a
name never points at a dead actor; a supervisor re-registers a restarted
child under its spec's name, and `via(name)` resolves to whichever
incarnation holds the name at each send. Once the runtime has closed (its block
exited, or its root supervisor gave up), a name that resolves to nothing raises
`RuntimeClosed` rather than `NameNotRegistered`: nobody will hold it again.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, final

from lmvisor.runtime.errors import (
    ActorExited,
    NameAlreadyRegistered,
    NameNotRegistered,
    RuntimeClosed,
)
from lmvisor.runtime.messages import Call, Cast

if TYPE_CHECKING:
    from lmvisor.runtime._process import _Process
    from lmvisor.runtime.actor import ActorRef

__all__ = ["Registry", "RegistryStatistics", "Via"]

R = TypeVar("R")


@final
@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    """How many unique names, duplicate keys and duplicate entries are registered."""

    names: int
    duplicate_keys: int
    duplicate_entries: int


@final
class Registry:
    """The name table of one runtime; created by `Runtime.open`, never shared."""

    __slots__ = ("_closed", "_duplicate", "_duplicate_changes", "_namespace", "_unique")

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        # Set once by the runtime as it closes; read only where a name resolved to nothing.
        self._closed = False
        self._unique: dict[Hashable, ActorRef] = {}
        self._duplicate: dict[Hashable, dict[ActorRef, None]] = {}
        # Bumped on every change to a duplicate key, so a reader may cache lookups.
        self._duplicate_changes = 0

    @property
    def duplicate_changes(self) -> int:
        """How many times an entry was added to or removed from a duplicate key.

        A reader that caches `lookup_all` results may keep them while this is unchanged.
        """
        return self._duplicate_changes

    @property
    def closed(self) -> bool:
        """True once the runtime has closed (see `close`): nothing will register again."""
        return self._closed

    def close(self) -> None:
        """Mark the runtime closed (called by the runtime as its block exits or its root
        gives up): from now on a name that resolves to nothing raises `RuntimeClosed`.
        Names of actors still alive (a tree stopping) keep resolving until they exit."""
        self._closed = True

    def _not_found(self, name: Hashable) -> NameNotRegistered | RuntimeClosed:
        """The error for `name` resolving to nothing: `RuntimeClosed` once closed."""
        if self._closed:
            return RuntimeClosed(namespace=self._namespace, operation=f"a message to {name!r}")
        return NameNotRegistered(name=name, namespace=self._namespace)

    @property
    def namespace(self) -> str:
        """The namespace of the runtime this registry belongs to."""
        return self._namespace

    def _check(self, ref: ActorRef) -> _Process:
        proc = ref._proc
        if proc.runtime.registry is not self:
            raise ValueError(
                f"{ref.name} belongs to namespace {proc.runtime.namespace!r}, "
                f"not {self._namespace!r}"
            )
        if not ref.alive:
            raise ActorExited(actor=ref.name, reason=ref.exit_reason)
        return proc

    def register(self, name: Hashable, ref: ActorRef) -> None:
        """Give `ref` the unique `name` until it dies or is unregistered.

        Raises:
            NameAlreadyRegistered: `name` is held by a live actor (a `ValueError`).
            ValueError: `ref` is from another runtime.
            ActorExited: `ref` is dead.
        """
        proc = self._check(ref)
        holder = self._unique.get(name)
        if holder is not None:
            raise NameAlreadyRegistered(name=name, namespace=self._namespace, holder=holder.name)
        self._unique[name] = ref
        if proc.names is None:
            proc.names = []
        proc.names.append((True, name))

    def unregister(self, name: Hashable) -> None:
        """Drop the unique `name`; a no-op if it is not registered."""
        ref = self._unique.pop(name, None)
        if ref is not None and ref._proc.names is not None:
            ref._proc.names.remove((True, name))

    def whereis(self, name: Hashable) -> ActorRef | None:
        """The live actor holding `name`, or None."""
        return self._unique.get(name)

    def register_duplicate(self, key: Hashable, ref: ActorRef) -> None:
        """Add `ref` under `key`, which many actors may share (pub/sub); idempotent.

        Raises:
            ValueError: `ref` is from another runtime.
            ActorExited: `ref` is dead.
        """
        proc = self._check(ref)
        entries = self._duplicate.setdefault(key, {})
        if ref in entries:
            return
        entries[ref] = None
        self._duplicate_changes += 1
        if proc.names is None:
            proc.names = []
        proc.names.append((False, key))

    def unregister_duplicate(self, key: Hashable, ref: ActorRef) -> None:
        """Remove `ref` from `key`; a no-op if it is not there."""
        entries = self._duplicate.get(key)
        if entries is None or ref not in entries:
            return
        del entries[ref]
        self._duplicate_changes += 1
        if not entries:
            del self._duplicate[key]
        if ref._proc.names is not None:
            ref._proc.names.remove((False, key))

    def lookup_all(self, key: Hashable) -> list[ActorRef]:
        """Every live actor registered under the duplicate `key`, in registration order."""
        entries = self._duplicate.get(key)
        return [] if entries is None else list(entries)

    def via(self, name: Hashable) -> Via:
        """An address that resolves `name` to its current holder at each send."""
        return Via(self, name)

    def statistics(self) -> RegistryStatistics:
        """Counts of names and duplicate entries."""
        return RegistryStatistics(
            names=len(self._unique),
            duplicate_keys=len(self._duplicate),
            duplicate_entries=sum(len(e) for e in self._duplicate.values()),
        )

    def _forget(self, proc: _Process) -> None:
        names = proc.names
        if not names:
            return
        proc.names = None
        ref = proc.ref
        for unique, name in names:
            if unique:
                if self._unique.get(name) is ref:
                    del self._unique[name]
            else:
                entries = self._duplicate.get(name)
                if entries is not None and entries.pop(ref, False) is None:
                    self._duplicate_changes += 1
                    if not entries:
                        del self._duplicate[name]

    def __repr__(self) -> str:
        return (
            f"<Registry namespace={self._namespace!r} names={len(self._unique)} "
            f"duplicate_keys={len(self._duplicate)}>"
        )


@final
class Via:
    """A registered name used as an address: same call/cast/stop API as `ActorRef`.

    Each operation resolves the name afresh, so it reaches a restarted actor.
    """

    __slots__ = ("_name", "_registry")

    def __init__(self, registry: Registry, name: Hashable) -> None:
        self._registry = registry
        self._name = name

    @property
    def name(self) -> Hashable:
        """The registered name this address resolves."""
        return self._name

    def resolve(self) -> ActorRef:
        """The current holder of the name.

        Raises:
            NameNotRegistered: no live actor holds the name (it may be restarting).
            RuntimeClosed: no live actor holds it and the runtime has closed.
        """
        ref = self._registry._unique.get(self._name)
        if ref is None:
            raise self._registry._not_found(self._name)  # the closed check: failures only
        return ref

    @property
    def alive(self) -> bool:
        """True if a live actor holds the name now."""
        return self._name in self._registry._unique

    async def call(self, msg: Call[R], timeout: float | None = 5.0) -> R:  # noqa: ASYNC109 (DESIGN: call_later timers)
        """`ActorRef.call` on the current holder; also raises what `resolve` raises."""
        return await self.resolve().call(msg, timeout)

    async def cast(self, msg: Cast) -> None:
        """`ActorRef.cast` on the current holder; also raises what `resolve` raises."""
        await self.resolve().cast(msg)

    def cast_nowait(self, msg: Cast) -> None:
        """`ActorRef.cast_nowait` on the current holder; also raises what `resolve` raises."""
        self.resolve().cast_nowait(msg)

    async def stop(self, reason: object = "normal", *, timeout: float | None = 5.0) -> None:  # noqa: ASYNC109 (DESIGN: call_later timers)
        """Stop the current holder, if any; a no-op when the name is free."""
        ref = self._registry._unique.get(self._name)
        if ref is not None:
            await ref.stop(reason, timeout=timeout)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Via):
            return NotImplemented
        return self._registry is other._registry and self._name == other._name

    def __hash__(self) -> int:
        return hash((id(self._registry), self._name))

    def __repr__(self) -> str:
        return f"<Via {self._name!r} in {self._registry._namespace!r}>"
