"""Fault rules for the loopback LM: what to break, for which requests, how often.

`FaultRule` is the public, validated description of one fault; `FaultBook` holds the
server's rules and decides, with a seeded RNG, which rule (if any) a request gets.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, final, get_args

__all__ = ["FaultBook", "FaultKind", "FaultRule", "fault_rule_from_dict"]

FaultKind = Literal[
    "status",
    "drop",
    "disconnect_mid_stream",
    "error_event",
    "endless_line",
    "keepalive_stall",
    "slow_first_byte",
    "malformed_json",
]
FaultApi = Literal["openai", "anthropic", "any"]

_KINDS: frozenset[str] = frozenset(get_args(FaultKind))
_APIS: frozenset[str] = frozenset(get_args(FaultApi))
_STREAM_ONLY: frozenset[str] = frozenset({"error_event", "endless_line", "keepalive_stall"})
_MAX_SECONDS = 3600.0
"""The longest delay or Retry-After a rule may ask for: a test never waits an hour."""


@final
@dataclass(frozen=True, kw_only=True)
class FaultRule:
    """One fault the loopback server injects into matching requests.

    Kinds:
        status: answer with `status` and the API's error body (plus Retry-After /
            retry-after-ms headers when given).
        drop: close the TCP connection before any response byte.
        disconnect_mid_stream: send part of the answer, then abort the connection
            (a stream: the first events; a plain body: half of it).
        error_event: streams only: send the first events, then an error event
            (OpenAI: `data: {"error": ...}`; Anthropic: `event: error`, overloaded_error).
        endless_line: streams only: send the first events, then a `data:` line that never
            ends (written until the client hangs up, 256 MiB at most).
        keepalive_stall: streams only: send the first events, then only `: keep-alive`
            comments, one every `delay` seconds (0.05 when 0), until the client hangs up
            (an hour at most): the connection stays busy, the answer never comes.
        slow_first_byte: wait `delay` more seconds before the first byte, then answer.
        malformed_json: status 200 with a truncated JSON body (or SSE data line).

    Matching: `api` ("openai", "anthropic" or "any") and `model` (None = every model).
    The first matching rule whose probability roll succeeds applies; it is spent after
    `times` applications (None = never). Rolls use the server's seeded RNG, so a fixed
    seed and request order give the same faults.

    Raises:
        ValueError: a field out of range (the message names the field and value).
    """

    kind: FaultKind
    status: int = 500
    probability: float = 1.0
    times: int | None = None
    retry_after: float | None = None
    retry_after_ms: float | None = None
    delay: float = 0.0
    api: FaultApi = "any"
    model: str | None = None
    message: str | None = None
    code: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"FaultRule.kind must be one of {sorted(_KINDS)}, got {self.kind!r}")
        if self.api not in _APIS:
            raise ValueError(f"FaultRule.api must be one of {sorted(_APIS)}, got {self.api!r}")
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            raise ValueError(f"FaultRule.status must be an int, got {self.status!r}")
        if not 400 <= self.status <= 599:
            raise ValueError(f"FaultRule.status must be in 400..599, got {self.status!r}")
        _check_number("probability", self.probability, high=1.0)
        if self.times is not None and (
            isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 0
        ):
            raise ValueError(f"FaultRule.times must be None or an int >= 0, got {self.times!r}")
        for name in ("retry_after", "retry_after_ms"):
            value = getattr(self, name)
            if value is not None:
                _check_number(name, value, high=_MAX_SECONDS * (1000 if name.endswith("ms") else 1))
        _check_number("delay", self.delay, high=_MAX_SECONDS)
        for name in ("model", "message", "code"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"FaultRule.{name} must be None or a string, got {value!r}")

    def matches(self, *, api: str, model: str, stream: bool) -> bool:
        """True when this rule targets a request of `api` for `model` (streamed or not)."""
        if self.api != "any" and self.api != api:
            return False
        if self.model is not None and self.model != model:
            return False
        return stream or self.kind not in _STREAM_ONLY


def _check_number(name: str, value: object, *, high: float) -> None:
    """Refuse `value` unless it is a real number (not a bool) in [0, high], naming `name`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and 0 <= value <= high)
    ):
        raise ValueError(f"FaultRule.{name} must be a number in [0, {high:g}], got {value!r}")


_RULE_FIELDS = frozenset(f.name for f in fields(FaultRule))


def fault_rule_from_dict(data: Mapping[str, Any]) -> FaultRule:
    """A `FaultRule` from its JSON form (the subprocess `--fault` flag, the control API).

    Raises:
        ValueError: not a JSON object, an unknown key, a missing `kind`, or a field out
            of range.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"FaultRule: expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _RULE_FIELDS)
    if unknown:
        raise ValueError(f"FaultRule: unknown field(s) {unknown}")
    if "kind" not in data:
        raise ValueError("FaultRule.kind is required")
    return FaultRule(**data)


@dataclass(slots=True)
class _Entry:
    """A rule and how many times it has been applied."""

    rule: FaultRule
    used: int = 0

    @property
    def spent(self) -> bool:
        return self.rule.times is not None and self.used >= self.rule.times


@final
class FaultBook:
    """The server's fault rules, with how many times each has been applied."""

    __slots__ = ("_entries", "_rng")

    def __init__(self, rules: Iterable[FaultRule], *, seed: int) -> None:
        self._rng = random.Random(seed)
        self._entries: list[_Entry] = []
        for rule in rules:
            self.add(rule)

    def add(self, rule: FaultRule) -> None:
        """Append `rule` (rules are tried in the order they were added).

        Raises:
            TypeError: `rule` is not a FaultRule.
        """
        if not isinstance(rule, FaultRule):
            raise TypeError(f"add_fault: rule must be a FaultRule, got {type(rule).__name__}")
        self._entries.append(_Entry(rule))

    def clear(self) -> None:
        """Forget every rule."""
        self._entries.clear()

    @property
    def rules(self) -> list[FaultRule]:
        """The rules not yet spent, in order."""
        return [entry.rule for entry in self._entries if not entry.spent]

    def pick(self, *, api: str, model: str, stream: bool) -> FaultRule | None:
        """The rule this request gets, or None; counts the application against `times`.

        A rule below probability 1 draws from the seeded RNG only when it matches.
        """
        for entry in self._entries:
            rule = entry.rule
            if entry.spent or not rule.matches(api=api, model=model, stream=stream):
                continue
            if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                continue
            entry.used += 1
            return rule
        return None
