"""Child specifications, restart backoff, and the pure decisions a supervisor makes.

`ChildSpec(id, start, *, restart, shutdown, type, name, significant)`:

- ``id``: non-empty str, unique among a supervisor's children.
- ``start``: zero-argument callable returning the `Actor` to run (a supervisor too).
- ``restart``: "permanent" (default; always restarted), "transient" (restarted
  only after an abnormal exit: not normal, shutdown or `Shutdown(...)`),
  "temporary" (never restarted; its spec is dropped when it exits).
- ``shutdown``: seconds to wait for a graceful stop before killing
  (default 5.0 for a worker), "infinity" (default for a supervisor) or
  "brutal_kill" (cancel at once, `terminate` does not run).
- ``type``: "worker" (default) or "supervisor".
- ``name``: registry name given to each incarnation (None: unregistered).
- ``significant``: with the supervisor's `auto_shutdown`, this child's exit
  may stop the supervisor; only for transient or temporary children.

Specs validate themselves on construction: a bad field raises `ValueError`
naming the field and the value. `check_child_specs` also rejects duplicates.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Literal, final

from lmvisor.runtime.messages import is_shutdown_exit

if TYPE_CHECKING:
    from lmvisor.runtime.actor import Actor

__all__ = [
    "Backoff",
    "ChildSpec",
    "ChildType",
    "RestartType",
    "ShutdownSpec",
    "add_restart",
    "check_child_specs",
    "should_restart",
]

RestartType = Literal["permanent", "transient", "temporary"]
ChildType = Literal["worker", "supervisor"]
ShutdownSpec = float | Literal["brutal_kill", "infinity"]

_RESTARTS = ("permanent", "transient", "temporary")
_TYPES = ("worker", "supervisor")
_DEFAULT_WORKER_SHUTDOWN = 5.0


def _valid_id(value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"ChildSpec.id must be a non-empty str, got {value!r}")


def _valid_start(value: object) -> None:
    if not callable(value):
        raise ValueError(f"ChildSpec.start must be callable, got {value!r}")


def _valid_restart(value: object) -> None:
    if value not in _RESTARTS:
        raise ValueError(
            f"ChildSpec.restart must be one of 'permanent', 'transient', 'temporary', got {value!r}"
        )


def _valid_shutdown(value: object) -> None:
    if value in ("brutal_kill", "infinity"):
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or value < 0
    ):
        raise ValueError(
            f"ChildSpec.shutdown must be seconds >= 0, 'brutal_kill' or 'infinity', got {value!r}"
        )


def _valid_type(value: object) -> None:
    if value not in _TYPES:
        raise ValueError(f"ChildSpec.type must be 'worker' or 'supervisor', got {value!r}")


def _valid_name(value: object) -> None:
    # hash() rather than isinstance(Hashable): a tuple holding a list passes the latter
    try:
        hash(value)
    except TypeError:
        raise ValueError(f"ChildSpec.name must be hashable, got {value!r}") from None


def _valid_significant(value: object, restart: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"ChildSpec.significant must be a bool, got {value!r}")
    if value and restart == "permanent":
        raise ValueError(
            "ChildSpec.significant=True requires restart 'transient' or 'temporary', "
            "got restart='permanent'"
        )


@final
@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to start, restart and stop one child (see the module docstring)."""

    id: str
    start: Callable[[], Actor]
    _: KW_ONLY
    restart: RestartType = "permanent"
    shutdown: ShutdownSpec | None = None
    type: ChildType = "worker"
    name: Hashable | None = None
    significant: bool = False

    def __post_init__(self) -> None:
        _valid_id(self.id)
        _valid_start(self.start)
        _valid_restart(self.restart)
        _valid_type(self.type)
        if self.shutdown is None:
            default = "infinity" if self.type == "supervisor" else _DEFAULT_WORKER_SHUTDOWN
            object.__setattr__(self, "shutdown", default)
        _valid_shutdown(self.shutdown)
        _valid_name(self.name)
        _valid_significant(self.significant, self.restart)

    @property
    def shutdown_timeout(self) -> float | None:
        """Seconds to wait before killing: None for "infinity", 0 for "brutal_kill"."""
        if self.shutdown == "infinity":
            return None
        if self.shutdown == "brutal_kill":
            return 0.0
        assert isinstance(self.shutdown, int | float)
        return math.inf if math.isinf(self.shutdown) else float(self.shutdown)


def check_child_specs(specs: Iterable[object]) -> list[ChildSpec]:
    """Check a list of specs as a supervisor would; return them as a list.

    Raises:
        TypeError: an item is not a `ChildSpec`.
        ValueError: two specs share an id or a registry name.
    """
    seen_ids: set[str] = set()
    seen_names: dict[Hashable, str] = {}
    checked: list[ChildSpec] = []
    for spec in specs:
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"children must be ChildSpec instances, got {spec!r}")
        if spec.id in seen_ids:
            raise ValueError(f"duplicate child id {spec.id!r}")
        seen_ids.add(spec.id)
        if spec.name is not None:
            if spec.name in seen_names:
                raise ValueError(
                    f"duplicate child name {spec.name!r} "
                    f"(children {seen_names[spec.name]!r} and {spec.id!r})"
                )
            seen_names[spec.name] = spec.id
        checked.append(spec)
    return checked


@final
@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential restart delay: ``min * 2**attempt``, capped at ``max``, +/- ``jitter``.

    `attempt` counts the restarts already inside the current intensity window,
    so a child that keeps crashing waits longer each time, and every delayed
    restart still counts against the supervisor's intensity.
    """

    min: float = 0.01
    max: float = 1.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        for field in ("min", "max", "jitter"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"Backoff.{field} must be a number >= 0, got {value!r}")
        if self.max < self.min:
            raise ValueError(f"Backoff.max must be >= Backoff.min, got max={self.max!r}")
        if self.jitter > 1:
            raise ValueError(f"Backoff.jitter must be <= 1, got {self.jitter!r}")

    def delay(self, attempt: int, rand: float) -> float:
        """The delay before restart number `attempt` (0-based); `rand` is uniform in [0, 1)."""
        base = min(self.max, self.min * 2.0 ** min(attempt, 64))
        return max(0.0, min(self.max, base * (1.0 + self.jitter * (2.0 * rand - 1.0))))


def add_restart(times: deque[float], now: float, max_restarts: int, max_seconds: float) -> bool:
    """Record a restart at `now` in `times`; False when more than `max_restarts` fall in the window.

    `times` holds the restart times still inside the window, oldest first; it
    is updated in place (older entries dropped, `now` appended), in amortised
    O(1) so a busy supervisor does not slow down as restarts accumulate.
    """
    # OTP keeps a restart made exactly `max_seconds` ago (Now - Then =< Period)
    while times and now - times[0] > max_seconds:
        times.popleft()
    times.append(now)
    return len(times) <= max_restarts


def should_restart(restart: RestartType, reason: object) -> bool:
    """OTP's rule: permanent always; transient unless the exit was orderly; temporary never."""
    if restart == "permanent":
        return True
    if restart == "transient":
        return not is_shutdown_exit(reason)
    return False
