"""Deployment cooldown, with LiteLLM Router's semantics.

A deployment that fails more than `allowed_fails` times within `window`
seconds is taken out of rotation for `cooldown` seconds; a success clears its
count. Pure bookkeeping on the runtime's clock. Deployments come from programs' models,
which clients choose: once `MAX_TRACKED` are tracked, a new one first drops those with no
failure left in the window and no cooldown running, so only the last window's are kept.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final, final

from lmvisor.runtime.clock import Clock

__all__ = ["MAX_TRACKED", "CooldownStatistics", "Cooldowns"]

MAX_TRACKED: Final = 1024
"""Deployments tracked before those with nothing left to remember are dropped."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class CooldownStatistics:
    """Which deployments are cooling down now, and how many cooldowns began in all."""

    cooling: tuple[str, ...]
    cooldowns_started: int
    tracked: int = 0
    """Deployments whose failures or cooldown are remembered (see `MAX_TRACKED`)."""


@final
class Cooldowns:
    """Failure counts and cooldown deadlines per deployment name."""

    __slots__ = (
        "_allowed",
        "_clock",
        "_cooldown",
        "_failures",
        "_prune_at",
        "_started",
        "_until",
        "_window",
    )

    def __init__(
        self, *, clock: Clock, allowed_fails: int = 3, window: float = 60.0, cooldown: float = 5.0
    ) -> None:
        if allowed_fails < 0:
            raise ValueError(f"Cooldowns: allowed_fails must be >= 0, got {allowed_fails!r}")
        if window <= 0 or cooldown < 0:
            raise ValueError("Cooldowns: window must be > 0 and cooldown >= 0")
        self._clock = clock
        self._allowed = allowed_fails
        self._window = window
        self._cooldown = cooldown
        self._failures: dict[str, deque[float]] = {}
        self._until: dict[str, float] = {}
        self._started = 0
        self._prune_at = MAX_TRACKED

    def is_cooling(self, name: str) -> bool:
        """True while `name` is out of rotation."""
        until = self._until.get(name)
        if until is None:
            return False
        if self._clock.monotonic() >= until:
            del self._until[name]
            return False
        return True

    def failure(self, name: str) -> bool:
        """Record a failure of `name`; return True when it starts a cooldown."""
        now = self._clock.monotonic()
        times = self._failures.get(name)
        if times is None:
            if len(self._failures) >= self._prune_at:
                self._forget_idle(now)
                # Next scan when the kept have doubled: every kept one failed within the
                # window, so scanning again at once would free nothing, per new name.
                self._prune_at = max(MAX_TRACKED, 2 * len(self._failures))
            times = self._failures[name] = deque()
        times.append(now)
        while times and now - times[0] > self._window:
            times.popleft()
        if len(times) > self._allowed:
            times.clear()
            self._until[name] = now + self._cooldown
            self._started += 1
            return True
        return False

    def success(self, name: str) -> None:
        """Record a success of `name`: its failure count starts again."""
        times = self._failures.get(name)
        if times:
            times.clear()

    def _forget_idle(self, now: float) -> None:
        """Drop the deployments with no failure in the window and no cooldown running."""
        for name, times in list(self._failures.items()):
            if (not times or now - times[-1] > self._window) and not self.is_cooling(name):
                del self._failures[name]
        for name in list(self._until):
            self.is_cooling(name)  # drops an ended cooldown

    def statistics(self) -> CooldownStatistics:
        cooling = tuple(sorted(n for n in list(self._until) if self.is_cooling(n)))
        tracked = len(self._failures.keys() | self._until.keys())
        return CooldownStatistics(cooling=cooling, cooldowns_started=self._started, tracked=tracked)

    def __repr__(self) -> str:
        return f"Cooldowns(cooling={list(self._until)}, allowed_fails={self._allowed})"
