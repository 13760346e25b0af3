"""The log chain's per-line steps, built for a daemon writing a line per request.

- `CleanMemo`: the chain's redaction (`lmvisor._redaction.Redactor`) that skips
  what it has already judged: keys known not to be secret, and short strings it
  has seen come through unchanged, and the correlation id lmvisor generated
  for the current scope (`CorrelationScope.generated`: made, not given, so
  never secret; a fresh one per request would only churn the memo). Lines
  repeat the same strings (event and logger names, namespaces, routes,
  methods), so most values cost a set lookup instead of a scan for
  credential-looking text.
- `Exceptions`: structlog's `StackInfoRenderer` and `format_exc_info` as one
  step that costs a line carrying neither `stack_info` nor `exc_info` two
  key lookups.
- `Stamper`: the ISO 8601 UTC time of the line, formatting the date and time
  once per second.
- `render_json`: one JSON object per line through orjson, falling back to the
  stdlib where orjson refuses a value.
- `LineWriter`: the output. A line is written and flushed as it is logged,
  but a logger built over `LineWriter.per_turn` (the access log's) leaves its
  lines to the end of the event-loop turn, when all of that turn's are written
  and flushed together: one write per turn rather than one per request. Any
  other line first writes the pending ones, so the stream keeps their order.

What reaches the output is what the plain `Redactor` would let through: a
string is remembered only after redaction left it unchanged (so no secret is
ever stored), only up to the redactor's cut length, and a value under a secret
key is always replaced.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import MutableMapping
from typing import Any, Final, TextIO, final

import orjson
from structlog.processors import StackInfoRenderer, format_exc_info
from structlog.typing import EventDict, WrappedLogger

from lmvisor._redaction import Redactor
from lmvisor.runtime.correlation import current_scope

__all__ = ["CleanMemo", "Exceptions", "LineWriter", "Stamper", "render_json"]

# Bounds on what the memo keeps: the strings a line repeats are few and short, and a
# flood of distinct ones (correlation ids) costs one clear per this many entries.
_MEMO_SIZE: Final = 4096
_MEMO_LENGTH: Final = 256
# Lines a loop turn may hold before they are written at once (a burst stays bounded).
_MAX_PENDING: Final = 1024
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
        # The correlation id lmvisor made for this scope holds nothing secret (the very
        # object: an id a caller gave, or an equal string, is judged as any other).
        scope = current_scope()
        made = (
            scope.id
            if scope is not None and scope.generated and len(scope.id) <= self._limit
            else None
        )
        rest: dict[str, Any] | None = None
        for key, value in event_dict.items():
            if key in plain or self._plain_key(key):
                kind = type(value)
                if kind is str and (value in clean or value is made):
                    continue
                if kind in _SCALARS:
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
class Exceptions:
    """A structlog processor: `stack_info` and `exc_info` rendered as structlog renders them.

    The same as `StackInfoRenderer()` then `format_exc_info`, both of which only
    act on (and pop) those two keys; most lines carry neither and pass untouched.
    """

    __slots__ = ("_stack",)

    def __init__(self) -> None:
        # This module's frame is skipped too: the stack starts where the line was logged.
        self._stack = StackInfoRenderer(additional_ignores=[__name__])

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if "exc_info" not in event_dict and "stack_info" not in event_dict:
            return event_dict
        return format_exc_info(logger, method_name, self._stack(logger, method_name, event_dict))


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


@final
class LineWriter:
    """A structlog logger: rendered lines to `stream`, each written and flushed at once.

    `per_turn` is a second logger over the same stream whose lines, on a thread
    running an event loop, wait for the end of the current loop iteration (a
    callback); off a loop, or past `_MAX_PENDING` lines, they go out at once.
    A line written any other way (and `flush()`) first writes the pending ones.
    A pending line is never stranded by a loop that stopped before its
    callback ran: the next line or `flush()` writes it.
    """

    __slots__ = ("_lock", "_pending", "_scheduled", "per_turn", "stream")

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.per_turn = _PerTurn(self)
        self._pending: list[str] = []
        # The loop a flush callback is scheduled on (a line from another loop schedules again).
        self._scheduled: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def msg(self, message: str) -> None:
        """Write one line now, after the pending ones, and flush."""
        self._write(message)

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg
    failure = msg

    def defer(self, message: str) -> None:
        """Write one line at the end of this loop turn (at once without a running loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write(message)
            return
        with self._lock:
            self._pending.append(message)
            full = len(self._pending) >= _MAX_PENDING
            schedule = self._scheduled is not loop
            if schedule:
                self._scheduled = loop
        if full:
            self.flush()
        elif schedule:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the pending lines now and flush the stream."""
        self._write(None)

    def _write(self, message: str | None) -> None:
        with self._lock:
            lines = self._pending
            self._pending = []
            self._scheduled = None
            if message is not None:
                lines.append(message)
            if lines:
                lines.append("")
                self.stream.write("\n".join(lines))
                self.stream.flush()

    def __repr__(self) -> str:
        return f"LineWriter({self.stream!r}, pending={len(self._pending)})"


@final
class _PerTurn:
    """`LineWriter.per_turn`: the structlog logger whose lines wait for the loop turn's end."""

    __slots__ = ("_writer",)

    def __init__(self, writer: LineWriter) -> None:
        self._writer = writer

    def msg(self, message: str) -> None:
        self._writer.defer(message)

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg
    failure = msg

    def __repr__(self) -> str:
        return f"{self._writer!r}.per_turn"
