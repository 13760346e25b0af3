"""Message base classes, system messages and exit reasons shared by every actor.

A message is a frozen dataclass subclassing `Call[R]` (the sender awaits a
reply of type R) or `Cast` (no reply). `Down` and `Exit` are the system
messages the runtime delivers for monitors and trapped links. An exit reason is
`"normal"`, `"shutdown"`, a `Shutdown(detail)`, `"killed"` or the exception
that ended the actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar, final

if TYPE_CHECKING:
    from lmvisor.runtime.actor import ActorRef

__all__ = [
    "Call",
    "Cast",
    "ChildExit",
    "Down",
    "Exit",
    "Shutdown",
    "is_normal_exit",
    "is_shutdown_exit",
]

R_co = TypeVar("R_co", covariant=True)


class Call(Generic[R_co]):
    """Base of request messages whose reply has type `R_co`.

    Subclass as a frozen dataclass: ``@dataclass(frozen=True, slots=True)
    class Get(Call[int]): key: str``. `ref.call(Get(...))` is then typed `int`.
    """

    __slots__ = ()


class Cast:
    """Base of one-way messages: the sender gets no reply."""

    __slots__ = ()


@final
@dataclass(frozen=True, slots=True)
class Shutdown:
    """An orderly exit carrying a detail, like OTP's ``{shutdown, Detail}``.

    Transient children are not restarted after it; supervisors exit with
    ``Shutdown("reached_max_restart_intensity")`` when they escalate.
    """

    detail: object


@final
@dataclass(frozen=True, slots=True)
class Down(Cast):
    """A monitored actor exited; `reason` is its exit reason ("noproc" if already dead)."""

    ref: ActorRef
    reason: object


@final
@dataclass(frozen=True, slots=True)
class Exit(Cast):
    """A linked actor exited and this actor traps exits; `reason` is the exit reason."""

    ref: ActorRef
    reason: object


@final
@dataclass(frozen=True, slots=True)
class ChildExit(Cast):
    """A child this actor started (as its supervisor) exited with `reason`."""

    ref: ActorRef
    reason: object


def is_normal_exit(reason: object) -> bool:
    """True for the reason of an actor that finished its work: ``"normal"``."""
    return reason == "normal"


def is_shutdown_exit(reason: object) -> bool:
    """True for reasons that are not failures: normal, shutdown or `Shutdown(...)`."""
    return reason == "normal" or reason == "shutdown" or type(reason) is Shutdown
