"""The circuit breaker: stop calling a callee that keeps failing, probe it after a pause.

States and moves:

- CLOSED: calls pass. `failure_threshold` consecutive counted failures open
  the circuit; a success resets the count.
- OPEN: calls fail at once with `CircuitOpen` (carrying the seconds left).
  The first call after `recovery_time` moves to HALF_OPEN.
- HALF_OPEN: one trial call at a time; others get `CircuitOpen` with
  `retry_after=0`. `success_threshold` consecutive trial successes close the
  circuit; a counted trial failure opens it again for `recovery_time`.

Only failures that are the callee's fault count (see `counts_as_failure`):
a non-retryable `LmvisorError` (a 4xx such as bad auth or a bad request),
a protection's own refusal (`ProtectionError`) and cancellation do not.
Time comes from a `Clock`; the open -> half-open move happens lazily on the
next call, so no timer runs. State changes call listeners synchronously,
which is where events and gauges attach.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar, final

from lmvisor.runtime.clock import Clock, SystemClock
from lmvisor.runtime.errors import CircuitOpen, LmvisorError, ProtectionError
from lmvisor.runtime.observe.logs import get_logger

__all__ = [
    "BreakerListener",
    "BreakerState",
    "BreakerStatistics",
    "CircuitBreaker",
    "counts_as_failure",
]

T = TypeVar("T")

# The bounds (`CircuitBreakerConfig` has the same; a test ties them): half-open admits one trial
# at a time, so a huge success threshold kept a breaker half-open for good.
_MOST_FAILURES: Final = 1_000
_MOST_SUCCESSES: Final = 100
_LONGEST_RECOVERY: Final = 86_400.0  # a day: longer kept a breaker open for good

_log: Final = get_logger("lmvisor.runtime.protection")


class BreakerState(enum.Enum):
    """Where a circuit is; the value is the gauge reading (0 closed, 1 half-open, 2 open)."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


BreakerListener = Callable[["CircuitBreaker", BreakerState, BreakerState], None]
"""Called as `listener(breaker, old_state, new_state)` on every state change."""


def counts_as_failure(exc: BaseException) -> bool:
    """Whether `exc` counts against the callee: the default breaker predicate.

    Cancellation and other non-`Exception`s never count; neither does a
    protection's own refusal. An `LmvisorError` counts only if retryable
    (a timeout, 5xx or 429 is the callee's trouble; a 4xx is the caller's).
    Any other exception counts.
    """
    if not isinstance(exc, Exception) or isinstance(exc, ProtectionError):
        return False
    if isinstance(exc, LmvisorError):
        return exc.retryable
    return True


def _check_settings(failure_threshold: int, recovery_time: float, success_threshold: int) -> None:
    for field, value, most in (
        ("failure_threshold", failure_threshold, _MOST_FAILURES),
        ("success_threshold", success_threshold, _MOST_SUCCESSES),
    ):
        if value < 1:
            raise ValueError(f"{field} must be >= 1, got {value!r}")
        if value > most:
            raise ValueError(f"{field} must be <= {most}, got {value!r}")
    if not recovery_time > 0:
        raise ValueError(f"recovery_time must be > 0, got {recovery_time!r}")
    if not recovery_time <= _LONGEST_RECOVERY:
        raise ValueError(f"recovery_time must be <= 86400 (a day), got {recovery_time!r}")


@final
@dataclass(frozen=True, slots=True)
class BreakerStatistics:
    """A snapshot of one breaker."""

    name: str
    state: BreakerState
    consecutive_failures: int
    consecutive_successes: int
    trial_in_flight: bool
    calls: int
    failures: int
    rejections: int
    times_opened: int


@final
class CircuitBreaker:
    """A circuit breaker for one callee; see the module docstring for its rules.

    Use `call(fn)`, or the primitives the protection pipeline inlines:
    `before_call()` then exactly one of `on_success()` / `on_failure(exc)`.
    """

    __slots__ = (
        "_calls",
        "_clock",
        "_failures",
        "_is_failure",
        "_listeners",
        "_opened_at",
        "_rejections",
        "_state",
        "_streak",
        "_times_opened",
        "_trial",
        "failure_threshold",
        "name",
        "recovery_time",
        "success_threshold",
    )

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        recovery_time: float = 30.0,
        success_threshold: int = 1,
        clock: Clock | None = None,
        is_failure: Callable[[BaseException], bool] = counts_as_failure,
    ) -> None:
        """Build a closed breaker.

        Raises:
            ValueError: if a threshold is below 1 or above its bound (1,000 failures,
                100 successes) or `recovery_time` is not in (0, 86,400] seconds.
        """
        _check_settings(failure_threshold, recovery_time, success_threshold)
        self.name = name
        self.failure_threshold = failure_threshold
        self.recovery_time = recovery_time
        self.success_threshold = success_threshold
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._is_failure = is_failure
        self._listeners: list[BreakerListener] = []
        self._state = BreakerState.CLOSED
        self._streak = 0  # consecutive failures (closed) or trial successes (half-open)
        self._opened_at = 0.0
        self._trial = False
        self._calls = self._failures = self._rejections = self._times_opened = 0

    def reconfigure(
        self, *, failure_threshold: int, recovery_time: float, success_threshold: int
    ) -> None:
        """Take new thresholds now, keeping the state and its counts (an open breaker
        stays open, now for the new `recovery_time` from when it opened).

        Raises:
            ValueError: as the constructor does for these values (nothing changes).
        """
        _check_settings(failure_threshold, recovery_time, success_threshold)
        self.failure_threshold = failure_threshold
        self.recovery_time = recovery_time
        self.success_threshold = success_threshold

    @property
    def state(self) -> BreakerState:
        """The current state (OPEN stays OPEN until a call arrives after recovery)."""
        return self._state

    def add_listener(self, listener: BreakerListener) -> Callable[[], None]:
        """Call `listener(breaker, old, new)` on each state change; returns a remover.

        A listener that raises is logged and otherwise ignored: observers
        cannot break the call path.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def before_call(self) -> bool:
        """Admit one call or refuse it.

        Returns:
            True if the call is the half-open trial; pass it back to
            `on_success` / `on_failure` so late results of calls admitted
            while closed cannot be mistaken for the trial's.

        Raises:
            CircuitOpen: while open (with the seconds left) or while a half-open
                trial is already running (with `retry_after=0`).
        """
        state = self._state
        if state is BreakerState.CLOSED:
            self._calls += 1
            return False
        if state is BreakerState.OPEN:
            left = self._opened_at + self.recovery_time - self._clock.monotonic()
            if left > 0:
                self._rejections += 1
                raise CircuitOpen(name=self.name, retry_after=left)
            self._move(BreakerState.HALF_OPEN)
        if self._trial:
            self._rejections += 1
            raise CircuitOpen(name=self.name, retry_after=0.0)
        self._trial = True
        self._calls += 1
        return True

    def on_success(self, trial: bool = False) -> None:
        """Record that an admitted call succeeded; `trial` is what `before_call` returned."""
        if trial:
            self._trial = False
            if self._state is BreakerState.HALF_OPEN:
                self._streak += 1
                if self._streak >= self.success_threshold:
                    self._move(BreakerState.CLOSED)
        elif self._state is BreakerState.CLOSED:
            self._streak = 0

    def on_failure(self, exc: BaseException, trial: bool = False) -> None:
        """Record that an admitted call raised `exc`; counted only if the predicate says so."""
        if trial:
            self._trial = False
        if not self._is_failure(exc):
            return
        self._failures += 1
        if trial and self._state is BreakerState.HALF_OPEN:
            self._open()
        elif self._state is BreakerState.CLOSED:
            self._streak += 1
            if self._streak >= self.failure_threshold:
                self._open()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await `fn()` through the breaker.

        Raises:
            CircuitOpen: if the call is refused; `fn` is not called.
            BaseException: whatever `fn()` raises, after recording it.
        """
        trial = self.before_call()
        try:
            result = await fn()
        except BaseException as exc:
            self.on_failure(exc, trial)
            raise
        self.on_success(trial)
        return result

    def reset(self) -> None:
        """Force the circuit closed with clean counters (an operator's override)."""
        self._trial = False
        self._move(BreakerState.CLOSED)

    def statistics(self) -> BreakerStatistics:
        """A snapshot of state and counters."""
        return BreakerStatistics(
            name=self.name,
            state=self._state,
            consecutive_failures=self._streak if self._state is BreakerState.CLOSED else 0,
            consecutive_successes=self._streak if self._state is BreakerState.HALF_OPEN else 0,
            trial_in_flight=self._trial,
            calls=self._calls,
            failures=self._failures,
            rejections=self._rejections,
            times_opened=self._times_opened,
        )

    def _open(self) -> None:
        self._opened_at = self._clock.monotonic()
        self._times_opened += 1
        self._move(BreakerState.OPEN)

    def _move(self, new: BreakerState) -> None:
        old, self._state, self._streak = self._state, new, 0
        if old is new:
            return
        for listener in tuple(self._listeners):
            try:
                listener(self, old, new)
            except Exception as exc:
                _log.error("breaker listener failed", breaker=self.name, error=exc, exc_info=exc)

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker({self.name!r}, state={self._state.name.lower()}, "
            f"streak={self._streak}, trial={self._trial})"
        )
