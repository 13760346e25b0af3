"""The process-wide log setup, for the daemon only: structlog's global chain and stdlib logging.

`configure_process_logging` points structlog's global configuration and the
root stdlib logger (so third-party libraries' records too) at lmvisor's chain:
context, redaction and truncation, rendered to one stream. Library code never
calls it; only `lmvisor serve` (or an application that wants lmvisor's format
for everything) does. This is the one lmvisor module that touches stdlib
`logging`, and only to install and remove that root handler.

Lines written on the event loop's thread are written and flushed together at
the end of the loop iteration (`_LineWriter`): a daemon writing an access line
per request makes one write call per loop turn instead of one per line. A line
written anywhere else (no running loop, another thread, a stdlib record) goes
out at once, after the lines still pending, so the order is kept; what is
pending when the process exits or the setup is reset is flushed then.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import threading
from typing import Final, TextIO, final

import structlog
from structlog.typing import EventDict, WrappedLogger

from lmvisor._redaction import Redactor
from lmvisor.runtime.observe.logs import (
    LogMode,
    _captured,
    level_number,
    post_chain,
    pre_chain,
    renderer,
)

__all__ = ["configure_process_logging", "reset_process_logging"]

# Lines a loop turn may hold before they are written at once (a burst stays bounded).
_MAX_PENDING: Final = 1024


class _Captured(Exception):
    """Raised inside the stdlib formatter once a record is captured (a Formatter cannot drop)."""


def _capture_stdlib(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    sink = _captured.get()
    if sink is not None:
        sink.append(dict(event_dict))
        raise _Captured
    return event_dict


@final
class _LineWriter:
    """structlog's logger and its factory for the daemon: lines to `stream`, batched per loop turn.

    On a thread running an event loop a line waits for the end of the current
    loop iteration, when every line of that iteration is written and flushed in
    one go; elsewhere a line is written and flushed at once, after the pending ones.
    """

    __slots__ = ("_lock", "_pending", "_scheduled", "stream")

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._pending: list[str] = []
        # The loop a flush is scheduled on: a loop that stopped before running it
        # does not strand the lines (the next line from another loop schedules again).
        self._scheduled: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def __call__(self, *args: object) -> _LineWriter:
        return self

    def msg(self, message: str) -> None:
        """Write one rendered line (see the class docstring for when)."""
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

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg
    failure = msg

    def flush(self) -> None:
        """Write and flush the pending lines now."""
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
        return f"_LineWriter({self.stream!r}, pending={len(self._pending)})"


class _ProcessHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler lmvisor installs; marked so it can be replaced or removed.

    A record goes out at once, after the chain's pending lines (`_LineWriter`).
    """

    def __init__(self, writer: _LineWriter) -> None:
        super().__init__(writer.stream)
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        if _captured.get() is None:
            self.writer.flush()
            super().emit(record)
            return
        try:
            self.format(record)
        except _Captured:
            return


def configure_process_logging(
    mode: LogMode = "json",
    *,
    level: int | str = "info",
    stream: TextIO | None = None,
    redactor: Redactor | None = None,
) -> None:
    """Configure the whole process (the daemon only): structlog and stdlib logging.

    structlog's global chain and the root stdlib logger both render through
    the lmvisor chain (context, redaction, truncation) to `stream` (stderr by
    default). Lines logged on a running event loop reach `stream` at the end of
    that loop iteration (see the module docstring). Calling again replaces the
    earlier setup (its pending lines are flushed first).

    Raises:
        ValueError: for an unknown level name.
    """
    number = level_number(level)
    out = stream if stream is not None else sys.stderr
    redactor = redactor if redactor is not None else Redactor()
    render = renderer(mode)
    _close_writer()
    writer = _LineWriter(out)
    atexit.register(writer.flush)
    structlog.configure(
        processors=[*pre_chain(), *post_chain(redactor), render],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=writer,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *post_chain(redactor, _capture_stdlib),
            render,
        ],
    )
    handler = _ProcessHandler(writer)
    handler.setFormatter(formatter)
    root = logging.root
    _remove_handlers(root)
    root.addHandler(handler)
    root.setLevel(number)


def reset_process_logging() -> None:
    """Undo `configure_process_logging`.

    Pending lines are flushed, structlog returns to its defaults, lmvisor's root
    handler is removed and the root level goes back to logging's default (WARNING).
    """
    _close_writer()
    structlog.reset_defaults()
    root = logging.root
    _remove_handlers(root)
    root.setLevel(logging.WARNING)


def _remove_handlers(root: logging.Logger) -> None:
    for handler in list(root.handlers):
        if isinstance(handler, _ProcessHandler):
            root.removeHandler(handler)


def _close_writer() -> None:
    writer = structlog.get_config().get("logger_factory")
    if isinstance(writer, _LineWriter):
        writer.flush()
        atexit.unregister(writer.flush)
