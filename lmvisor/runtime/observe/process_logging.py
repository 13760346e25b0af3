"""The process-wide log setup, for the daemon only: structlog's global chain and stdlib logging.

`configure_process_logging` points structlog's global configuration and the
root stdlib logger (so third-party libraries' records too) at lmvisor's chain:
context, redaction and truncation, rendered to one stream. Library code never
calls it; only `lmvisor serve` (or an application that wants lmvisor's format
for everything) does. This is the one lmvisor module that touches stdlib
`logging`, and only to install and remove that root handler.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

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


class _Captured(Exception):
    """Raised inside the stdlib formatter once a record is captured (a Formatter cannot drop)."""


def _capture_stdlib(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    sink = _captured.get()
    if sink is not None:
        sink.append(dict(event_dict))
        raise _Captured
    return event_dict


class _ProcessHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler lmvisor installs; marked so it can be replaced or removed."""

    def emit(self, record: logging.LogRecord) -> None:
        if _captured.get() is None:
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
    default). Calling again replaces the earlier setup.

    Raises:
        ValueError: for an unknown level name.
    """
    number = level_number(level)
    out = stream if stream is not None else sys.stderr
    redactor = redactor if redactor is not None else Redactor()
    render = renderer(mode)
    structlog.configure(
        processors=[*pre_chain(), *post_chain(redactor), render],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(out),
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
    handler = _ProcessHandler(out)
    handler.setFormatter(formatter)
    root = logging.root
    _remove_handlers(root)
    root.addHandler(handler)
    root.setLevel(number)


def reset_process_logging() -> None:
    """Undo `configure_process_logging`.

    structlog returns to its defaults, lmvisor's root handler is removed and
    the root level goes back to logging's default (WARNING).
    """
    structlog.reset_defaults()
    root = logging.root
    _remove_handlers(root)
    root.setLevel(logging.WARNING)


def _remove_handlers(root: logging.Logger) -> None:
    for handler in list(root.handlers):
        if isinstance(handler, _ProcessHandler):
            root.removeHandler(handler)
