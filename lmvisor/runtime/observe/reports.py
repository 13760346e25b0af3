"""Lifecycle reports: recorded where they happen, written to logs and events a moment later.

Like OTP's reports, each is one fact with fixed keys (names in `observe.names`):

- `actor.crashed`: `actor`, `last_message`, `state`, `reason`, `caller`
- `actor.terminate_failed`: `actor`, `reason`
- `actor.unexpected_message`: `actor`, `message`
- `supervisor.report`: `supervisor`, `context`, `reason`, `offender`
- `supervisor.progress`: `supervisor`, `started` (debug-level logs only)
- `task.crashed`: `supervisor`, `task`, `reason`

A crash report renders a traceback, reprs the last message and the state
and redacts them all: hundreds of microseconds that must not sit between a
crash and the restart that follows it. So a `Reporter` only records the
objects (and the time, the traceback and the correlation scope) on the spot;
`flush()` renders them, `REPORT_DELAY` seconds later on a loop timer (on the
next loop turn once a thousand are pending), or at once when a test's
capture begins or ends, when the event store stops and when the runtime
closes. Each report is then one log line (when the runtime's level
lets it through, the traceback under `exception`) and, at warning level and
above, one event with the same keys as JSON-ready, redacted data, stamped
with the time it happened.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections import deque
from contextvars import Context
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, NamedTuple, final

from lmvisor._error import jsonable
from lmvisor._redaction import safe_repr
from lmvisor.runtime.correlation import CorrelationScope, current_scope
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.logs import LEVELS, RuntimeLogging, iso_time
from lmvisor.runtime.observe.names import (
    ACTOR_CRASHED,
    ACTOR_TERMINATE_FAILED,
    ACTOR_UNEXPECTED_MESSAGE,
    SUPERVISOR_PROGRESS,
    SUPERVISOR_REPORT,
    TASK_CRASHED,
)

__all__ = ["REPORT_DELAY", "Reporter", "ReporterStatistics"]

REPORT_DELAY: Final = 0.02
"""Seconds between the first pending report and the flush that writes it.

Long enough that a burst of crashes is written in one go after the burst,
not a report at a time between its restarts; short enough that a report is
in the logs and the event store before anyone goes looking.
"""

_MAX_PENDING: Final = 1000
_DEBUG: Final = LEVELS["debug"]
_WARNING: Final = LEVELS["warning"]
_ERROR: Final = LEVELS["error"]
_METHODS: Final = {_DEBUG: "debug", LEVELS["info"]: "info", _WARNING: "warning", _ERROR: "error"}


class _Report(NamedTuple):
    type: str
    level: int
    fields: dict[str, Any]
    exc: BaseException | None
    tb: TracebackType | None
    scope: CorrelationScope | None
    at: float


@final
@dataclass(frozen=True, slots=True)
class ReporterStatistics:
    """Reports waiting, written and failed so far, and the seconds spent writing them."""

    pending: int
    written: int
    failed: int
    write_seconds: float


@final
class Reporter:
    """One runtime's lifecycle reports (see the module docstring).

    Args:
        logging: the runtime's log chain; its `flush()` also flushes reports.
        events: the runtime's event ring.
        loop: the loop whose timer writes pending reports.
        delay: seconds from the first pending report to the flush.
    """

    __slots__ = ("_closed", "_events", "_failed", "_handle", "_log", "_logging", "_loop",
                 "_pending", "_timer_context", "_write_seconds", "_written", "delay")  # fmt: skip

    def __init__(
        self,
        *,
        logging: RuntimeLogging,
        events: EventRing,
        loop: asyncio.AbstractEventLoop,
        delay: float = REPORT_DELAY,
    ) -> None:
        self._logging = logging
        self._events = events
        self._loop = loop
        self._log = logging.get_logger("lmvisor.runtime")
        self._pending: deque[_Report] = deque()
        self._handle: asyncio.Handle | None = None
        # timers run in an empty context: none keeps a crashed actor's context alive
        self._timer_context = Context()
        self._closed = False
        self._written = 0
        self._failed = 0
        self._write_seconds = 0.0
        self.delay = delay
        logging.add_flush_hook(self.flush)

    # --- the reports ---------------------------------------------------------------

    def actor_crashed(
        self,
        *,
        actor: str,
        last_message: object,
        state: object,
        reason: object,
        caller: CorrelationScope | None,
    ) -> None:
        """An actor's handler (or deferred task) raised; keys as gen_server's crash report."""
        fields = {
            "actor": actor,
            "last_message": last_message,
            "state": state,
            "reason": reason,
            "caller": None if caller is None else caller.id,
        }
        self._add(ACTOR_CRASHED, _ERROR, fields, reason, caller)

    def terminate_failed(self, *, actor: str, reason: BaseException) -> None:
        """An actor's `terminate()` raised while it was stopping."""
        self._add(ACTOR_TERMINATE_FAILED, _ERROR, {"actor": actor, "reason": reason}, reason)

    def unexpected_message(self, *, actor: str, message: object) -> None:
        """A system message arrived that the actor has no handler for; it was dropped."""
        fields = {"actor": actor, "message": type(message).__qualname__}
        self._add(ACTOR_UNEXPECTED_MESSAGE, _WARNING, fields, None)

    def supervisor_report(
        self, *, supervisor: str, context: str, reason: object, offender: object
    ) -> None:
        """A supervisor fact worth an operator's eye.

        Args:
            context: "start_error", "child_terminated", "shutdown_error" or "shutdown".
            offender: the child id (or a description) the report is about.
        """
        fields = {
            "supervisor": supervisor,
            "context": context,
            "reason": reason,
            "offender": offender,
        }
        self._add(SUPERVISOR_REPORT, _ERROR, fields, None)

    def supervisor_progress(self, *, supervisor: str, started: object) -> None:
        """A supervisor started a child (debug-level logs only, like OTP's progress reports)."""
        if self._logging.enabled_for(_DEBUG):
            fields = {"supervisor": supervisor, "started": started}
            self._add(SUPERVISOR_PROGRESS, _DEBUG, fields, None)

    def task_crashed(self, *, supervisor: str, task: str, reason: BaseException) -> None:
        """A task under a task supervisor raised; the supervisor keeps running."""
        fields = {"supervisor": supervisor, "task": task, "reason": reason}
        self._add(TASK_CRASHED, _ERROR, fields, reason)

    # --- recording and writing ---------------------------------------------------

    def _add(
        self,
        type: str,
        level: int,
        fields: dict[str, Any],
        reason: object,
        scope: CorrelationScope | None = None,
    ) -> None:
        exc = reason if isinstance(reason, BaseException) else None
        report = _Report(
            type,
            level,
            fields,
            exc,
            None if exc is None else exc.__traceback__,  # as it is now: a re-raise extends it
            scope if scope is not None else current_scope(),
            time.time(),
        )
        if self._closed:
            self._write(report)
            return
        pending = self._pending
        pending.append(report)
        if self._handle is None:
            self._handle = self._loop.call_later(
                self.delay, self.flush, context=self._timer_context
            )
        elif len(pending) >= _MAX_PENDING:
            # a crash storm: write now rather than hold an unbounded backlog
            self._handle.cancel()
            self._handle = self._loop.call_soon(self.flush, context=self._timer_context)

    def flush(self) -> None:
        """Write every pending report now, oldest first.

        Runs in an empty context, so a report's lines carry only what was
        recorded with it, whatever task flushes.
        """
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()
        if self._pending:
            began = time.perf_counter()
            Context().run(self._drain)
            self._write_seconds += time.perf_counter() - began

    def close(self) -> None:
        """Write what is pending; later reports are written at once (the loop may be gone)."""
        self.flush()
        self._closed = True

    def _drain(self) -> None:
        pending = self._pending
        while pending:
            self._write(pending.popleft())

    def _write(self, report: _Report) -> None:
        try:
            text = _traceback_text(report)
            if report.level >= _WARNING:
                self._write_event(report, text)
            if self._logging.enabled_for(report.level):
                self._write_log(report, text)
            self._written += 1
        except Exception as exc:
            # a report must never take the runtime down, nor hold up the reports after it
            self._failed += 1
            self._log.error("report failed", report=report.type, error=safe_repr(exc))

    def _write_log(self, report: _Report, text: str | None) -> None:
        extra: dict[str, Any] = {"timestamp": iso_time(report.at)}
        if report.scope is not None:
            extra["correlation_id"] = report.scope.id
        if text is not None:
            extra["exception"] = text
        method = getattr(self._log, _METHODS[report.level])
        method(report.type, **report.fields, **extra)

    def _write_event(self, report: _Report, text: str | None) -> None:
        redactor = self._logging.redactor
        data: dict[str, Any] = redactor.redact(jsonable(report.fields))
        if text is not None:
            data["exception"] = redactor.redact(text, cut=False)
        self._events.emit_in(report.scope, report.type, data, timestamp=report.at)

    def statistics(self) -> ReporterStatistics:
        """Pending, written and failed counts (sync)."""
        return ReporterStatistics(
            pending=len(self._pending),
            written=self._written,
            failed=self._failed,
            write_seconds=self._write_seconds,
        )

    def __repr__(self) -> str:
        return f"<Reporter pending={len(self._pending)} written={self._written}>"


def _traceback_text(report: _Report) -> str | None:
    exc = report.exc
    if exc is None:
        return None
    return "".join(traceback.format_exception(type(exc), exc, report.tb)).rstrip("\n")
