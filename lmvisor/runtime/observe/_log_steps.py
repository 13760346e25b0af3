"""The log chain's per-line steps, built for a daemon writing a line per request.

- `CleanMemo`: the chain's redaction (`lmvisor._redaction.Redactor`) that skips
  what it has already judged: keys known not to be secret, and short strings it
  has seen come through unchanged. Lines repeat the same strings (event and
  logger names, namespaces, routes, methods), so most values cost a set lookup
  instead of a scan for credential-looking text.
- `Stamper`: the ISO 8601 UTC time of the line, formatting the date and time
  once per second.
- `render_json`: one JSON object per line through orjson, falling back to the
  stdlib where orjson refuses a value.

What reaches the output is what the plain `Redactor` would let through: a
string is remembered only after redaction left it unchanged (so no secret is
ever stored), only up to the redactor's cut length, and a value under a secret
key is always replaced.
"""

from __future__ import annotations

import json
import time
from collections.abc import MutableMapping
from typing import Any, Final, final

import orjson
from structlog.typing import EventDict, WrappedLogger

from lmvisor._redaction import Redactor

__all__ = ["CleanMemo", "Stamper", "render_json"]

# Bounds on what the memo keeps: the strings a line repeats are few and short, and a
# flood of distinct ones (correlation ids) costs one clear per this many entries.
_MEMO_SIZE: Final = 4096
_MEMO_LENGTH: Final = 256
# Values the redactor returns unchanged whatever they are (under a key that is not secret).
_SCALARS: Final = (int, float, bool, type(None))
# Objects go to `_fallback` (their repr, redacted upstream) rather than being walked by
# orjson: a dataclass field with `repr=False` must not surface in a log line.
_ORJSON_OPTIONS: Final = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
)


@final
class CleanMemo:
    """A structlog processor: `redactor` over the event, skipping what is known clean.

    Args:
        redactor: the redaction in force; it decides every value the memo has not seen.
    """

    __slots__ = ("_clean", "_limit", "_plain_keys", "redactor")

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self._limit = min(_MEMO_LENGTH, redactor.max_length)
        self._clean: set[str] = set()
        self._plain_keys: set[str] = set()

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        clean = self._clean
        plain = self._plain_keys
        rest: dict[str, Any] | None = None
        for key, value in event_dict.items():
            if key in plain or self._plain_key(key):
                kind = type(value)
                if (kind is str and value in clean) or kind in _SCALARS:
                    continue
            if rest is None:
                rest = {}
            rest[key] = value
        if rest is None:
            return event_dict
        redacted = self.redactor(logger, method_name, dict(rest))
        for key, value in rest.items():
            out = redacted[key]
            event_dict[key] = out
            if type(value) is str and out is value and len(value) <= self._limit:
                self._remember(value)
        return event_dict

    def _plain_key(self, key: object) -> bool:
        if self.redactor.is_secret_key(key) or type(key) is not str:
            return False
        if len(self._plain_keys) < _MEMO_SIZE:
            self._plain_keys.add(key)
        return True

    def _remember(self, text: str) -> None:
        if len(self._clean) >= _MEMO_SIZE:
            self._clean.clear()
        self._clean.add(text)

    def __repr__(self) -> str:
        return f"CleanMemo({self.redactor!r}, remembered={len(self._clean)})"


@final
class Stamper:
    """A structlog processor: `timestamp` in ISO 8601 UTC with microseconds and `Z`.

    A line that already carries its time (a report written after the fact) keeps it.
    """

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if "timestamp" not in event_dict:
            event_dict["timestamp"] = self.stamp(time.time())
        return event_dict

    def stamp(self, seconds: float) -> str:
        """`seconds` since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`."""
        whole = int(seconds)
        if whole != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            self._second = whole
        return f"{self._prefix}.{int((seconds - whole) * 1_000_000):06d}Z"


def _fallback(value: object) -> object:
    # What structlog's JSONRenderer does with a value JSON cannot hold.
    structlog_view = getattr(value, "__structlog__", None)
    if callable(structlog_view):
        return structlog_view()
    return repr(value)


def render_json(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
    """A structlog renderer: the event as one compact JSON object.

    Raises:
        TypeError: a key JSON cannot hold (neither orjson nor the stdlib takes it).
    """
    try:
        return orjson.dumps(event_dict, default=_fallback, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        # orjson refuses a few values the stdlib writes (integers past 64 bits)
        return json.dumps(event_dict, default=_fallback)
