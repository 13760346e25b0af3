"""Logs: each runtime's structlog chain, and the library loggers that write through it.

Library code never calls `structlog.configure`. Each runtime owns a
`RuntimeLogging` (an explicit processor chain over its own stream, at its own
level); `get_logger(name)` returns a proxy that writes through the chain of
the runtime it is called in (a contextvar that `Runtime.open` sets for its
actors and for the block it opens). Outside any runtime the proxy uses
structlog's global chain once the daemon configured it
(`observe.process_logging`), and before that lmvisor's console chain on
stderr, still redacted. The chain:

    add_context -> add_log_level -> format exceptions
      -> Redactor (secrets out, long values cut) -> timestamp -> capture -> render

The per-line steps are built for a daemon writing a line per request
(`_log_steps`): redaction skips keys and short strings it already judged
clean, the time is formatted once per second, JSON is rendered by orjson. A
line is written and flushed as it is logged, but a `per_turn` logger's lines
(the daemon's access log) are written together at the end of the event-loop
turn they were logged in, and before any other line; `RuntimeLogging.flush()`
writes them now.

`add_context` adds `correlation_id` (from the correlation scope), the actor
the line comes from, and whatever `log_context(...)` bound for the current
task; keys passed explicitly win, so a report written later keeps the
context it was recorded in. `capture_logs()` collects the processed
(already redacted) event dicts instead of rendering them, for tests.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol, TextIO, final

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from lmvisor._redaction import Redactor
from lmvisor.runtime.correlation import current_scope
from lmvisor.runtime.observe._log_steps import (
    CleanMemo,
    Exceptions,
    LineWriter,
    Stamper,
    render_json,
)

__all__ = [
    "LEVELS",
    "LogMode",
    "RoutedLogger",
    "RuntimeLogging",
    "add_context",
    "build_processors",
    "capture_logs",
    "current_route",
    "get_logger",
    "iso_time",
    "level_number",
    "log_context",
    "post_chain",
    "pre_chain",
    "renderer",
    "set_log_actor",
    "set_route",
    "use_route",
]

LogMode = Literal["json", "console"]

LEVELS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "notset": 0,
        "debug": 10,
        "info": 20,
        "warn": 30,
        "warning": 30,
        "error": 40,
        "fatal": 50,
        "critical": 50,
    }
)
"""Level names (any case) and their numbers, as the stdlib and structlog number them."""

_context: ContextVar[Mapping[str, Any]] = ContextVar(
    "lmvisor_log_context", default=MappingProxyType({})
)
_captured: ContextVar[list[dict[str, Any]] | None] = ContextVar("lmvisor_log_capture", default=None)


class _Named(Protocol):
    @property
    def name(self) -> str: ...


_actor: ContextVar[_Named | None] = ContextVar("lmvisor_log_actor", default=None)
_route: ContextVar[RuntimeLogging | None] = ContextVar("lmvisor_log_route", default=None)


def level_number(level: int | str) -> int:
    """The number of a level given by name (any case) or number.

    Raises:
        ValueError: for an unknown level name.
    """
    if isinstance(level, int):
        return level
    number = LEVELS.get(level.lower())
    if number is None:
        raise ValueError(f"unknown log level {level!r}")
    return number


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Bind `values` (say `namespace`, `actor`) to every lmvisor log event in the block.

    Like the correlation scope this is a contextvar: tasks started inside
    inherit it, concurrent tasks do not see it. Nested blocks add to it.
    """
    token = _context.set(MappingProxyType({**_context.get(), **values}))
    try:
        yield
    finally:
        _context.reset(token)


def set_log_actor(actor: _Named) -> None:
    """Name `actor` (anything with `.name`) on log lines from the current context on.

    For a context made for one actor's task, which dies with it; the name is
    read only when a line is written, so spawning stays cheap.
    """
    _actor.set(actor)


def add_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: add `correlation_id`, `actor` and the `log_context` values (explicit keys win)."""
    scope = current_scope()
    if scope is not None:
        event_dict.setdefault("correlation_id", scope.id)
    actor = _actor.get()
    if actor is not None:
        event_dict.setdefault("actor", actor.name)
    for key, value in _context.get().items():
        event_dict.setdefault(key, value)
    return event_dict


def iso_time(seconds: float) -> str:
    """Seconds since the epoch as the chain writes them: ISO 8601, UTC, microseconds, ``Z``."""
    return Stamper().stamp(seconds)


def _capture(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    sink = _captured.get()
    if sink is not None:
        event_dict.setdefault("log_level", method_name)
        sink.append(dict(event_dict))
        raise structlog.DropEvent
    return event_dict


def pre_chain() -> list[Processor]:
    """The processors that add context and level (shared with the process chain)."""
    return [add_context, structlog.processors.add_log_level]


def post_chain(redactor: Redactor | None, capture: Processor = _capture) -> list[Processor]:
    """The processors after context and level: exceptions, redaction, time, capture.

    The time is stamped after redaction: the chain writes it, so nothing in it can be
    secret, and a line then costs no scan of a string that differs on every line.
    """
    return [
        Exceptions(),
        CleanMemo(redactor if redactor is not None else Redactor()),
        Stamper(),
        capture,
    ]


def build_processors(
    *,
    mode: LogMode = "json",
    redactor: Redactor | None = None,
    colors: bool = False,
    capture: Processor = _capture,
) -> list[Processor]:
    """The full chain ending in a renderer: JSON lines, or readable console lines.

    `capture` is the step that hands lines to log captures (see `post_chain`).
    """
    return [*pre_chain(), *post_chain(redactor, capture), renderer(mode, colors=colors)]


def renderer(mode: LogMode, *, colors: bool = False) -> Processor:
    """The last processor: one JSON object per line, or a readable console line."""
    if mode == "json":
        return render_json
    return structlog.dev.ConsoleRenderer(colors=colors)


@contextmanager
def capture_logs(route: Any = None) -> Iterator[list[dict[str, Any]]]:
    """Collect lmvisor log events (after redaction) instead of writing them.

    Captures events logged through `RuntimeLogging` loggers and the process
    chain from this task and tasks started inside the block, and everything
    the runtime in force here logs from its own actors (`route`: a
    `RuntimeLogging`, or any object with `.logging`; by default the runtime
    whose `async with Runtime.open()` block, or actor, this runs in). The
    runtime's pending reports are written on entry (outside the capture) and
    on exit (inside it), so the list holds exactly what the block reported.
    """
    sink: list[dict[str, Any]] = []
    target = getattr(route, "logging", route) if route is not None else _route.get()
    if target is not None:
        target.flush()
    token = _captured.set(sink)
    remove = target.attach(sink) if target is not None else None
    try:
        yield sink
    finally:
        try:
            if target is not None:
                target.flush()
        finally:
            _captured.reset(token)
            if remove is not None:
                remove()


@final
class RuntimeLogging:
    """One runtime's loggers: its own chain, stream and level; no global state touched.

    Args:
        namespace: bound to every event as `namespace`.
        mode: `json` (one object per line) or `console`.
        stream: where lines go; stderr when None.
        level: the least severe level written (`"debug"`, `"info"`, ... or an int).
        redactor: the chain's redaction (a default `Redactor` when None).

    Raises:
        ValueError: for an unknown level name.
    """

    __slots__ = (
        "_flush_hooks",
        "_loggers",
        "_processors",
        "_sinks",
        "_stream",
        "_wrapper",
        "_writer",
        "level",
        "mode",
        "namespace",
        "redactor",
    )

    def __init__(
        self,
        *,
        namespace: str,
        mode: LogMode = "json",
        stream: TextIO | None = None,
        level: int | str = "info",
        redactor: Redactor | None = None,
    ) -> None:
        self.namespace = namespace
        self.mode = mode
        self.level = level_number(level)
        self.redactor = redactor if redactor is not None else Redactor()
        self._stream = stream if stream is not None else sys.stderr
        self._writer = LineWriter(self._stream)
        self._sinks: tuple[list[dict[str, Any]], ...] = ()
        self._flush_hooks: tuple[Callable[[], None], ...] = ()
        self._loggers: dict[tuple[str, bool], FilteringBoundLogger] = {}
        # Captures attached to this runtime see events from its actors too,
        # whose tasks do not share the capturing test's context.
        self._processors = build_processors(
            mode=mode, redactor=self.redactor, capture=self._capture
        )
        self._wrapper = structlog.make_filtering_bound_logger(self.level)

    def enabled_for(self, level: int) -> bool:
        """Whether a line at `level` (a number, see `LEVELS`) would be written."""
        return level >= self.level

    def attach(self, sink: list[dict[str, Any]]) -> Callable[[], None]:
        """Also collect every processed event into `sink` (no output); returns a remover."""
        self._sinks = (*self._sinks, sink)

        def remove() -> None:
            self._sinks = tuple(s for s in self._sinks if s is not sink)

        return remove

    def add_flush_hook(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Run `hook()` on `flush()` (a writer of deferred lines registers); returns a remover."""
        self._flush_hooks = (*self._flush_hooks, hook)

        def remove() -> None:
            self._flush_hooks = tuple(h for h in self._flush_hooks if h is not hook)

        return remove

    def flush(self) -> None:
        """Write every deferred line now, then flush the stream.

        Deferred lines are the runtime's pending reports and the `per_turn` lines of
        this loop turn.
        """
        for hook in self._flush_hooks:
            hook()
        self._writer.flush()
        flush = getattr(self._stream, "flush", None)
        if flush is not None:
            flush()

    def _capture(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        # The task's own capture first (`capture_logs`), then this runtime's sinks.
        _capture(logger, method_name, event_dict)
        if self._sinks:
            event_dict.setdefault("log_level", method_name)
            for sink in self._sinks:
                sink.append(dict(event_dict))
            raise structlog.DropEvent
        return event_dict

    def get_logger(
        self, name: str | None = None, *, per_turn: bool = False, **bound: Any
    ) -> FilteringBoundLogger:
        """A logger writing through this runtime's chain, with `namespace` (and `logger`) bound.

        With `per_turn`, lines logged on the event loop are written at the end of the
        loop turn, with the others of that turn (a line per request); see the module
        docstring. Loggers without extra `bound` values are built once per name.
        """
        if not bound:
            key = (name or "", per_turn)
            cached = self._loggers.get(key)
            if cached is None:
                cached = self._loggers[key] = self._build(name, per_turn)
            return cached
        return self._build(name, per_turn, **bound)

    def _build(self, name: str | None, per_turn: bool, **bound: Any) -> FilteringBoundLogger:
        initial: dict[str, Any] = {"namespace": self.namespace}
        if name is not None:
            initial["logger"] = name
        initial.update(bound)
        logger: FilteringBoundLogger = structlog.wrap_logger(
            self._writer.per_turn if per_turn else self._writer,
            processors=self._processors,
            wrapper_class=self._wrapper,
            context_class=dict,
        )
        return logger.bind(**initial)

    def __repr__(self) -> str:
        return f"RuntimeLogging({self.namespace!r}, mode={self.mode!r}, level={self.level})"


# --- routing library loggers to the runtime they run in ---------------------------------


def current_route() -> RuntimeLogging | None:
    """The chain library loggers write through in this context, or None outside a runtime."""
    return _route.get()


@contextmanager
def use_route(route: RuntimeLogging | None) -> Iterator[None]:
    """Route `get_logger` proxies through `route` inside the block (and tasks it starts)."""
    token = _route.set(route)
    try:
        yield
    finally:
        try:
            _route.reset(token)
        except ValueError:
            # Entered and exited in different contexts (a test driving `__aenter__`
            # and `__aexit__` from separate loop runs): restore by value instead.
            old = token.old_value
            _route.set(None if old is Token.MISSING else old)


def set_route(route: RuntimeLogging | None) -> None:
    """Route proxies through `route` in the current context (a runtime's own context)."""
    _route.set(route)


@final
class RoutedLogger:
    """A named library logger resolved at each call; see the module docstring."""

    __slots__ = ("_fallback", "name", "per_turn")

    def __init__(self, name: str, *, per_turn: bool = False) -> None:
        self.name = name
        self.per_turn = per_turn
        self._fallback: FilteringBoundLogger | None = None

    def _target(self) -> Any:
        route = _route.get()
        if route is not None:
            return route.get_logger(self.name, per_turn=self.per_turn)
        if structlog.is_configured():
            return structlog.get_logger(self.name)
        if self._fallback is None:
            self._fallback = _unconfigured_logger(self.name)
        return self._fallback

    def debug(self, event: str, **kw: Any) -> None:
        """Write `event` at debug level."""
        self._target().debug(event, **kw)

    def info(self, event: str, **kw: Any) -> None:
        """Write `event` at info level."""
        self._target().info(event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        """Write `event` at warning level."""
        self._target().warning(event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        """Write `event` at error level."""
        self._target().error(event, **kw)

    def exception(self, event: str, **kw: Any) -> None:
        """Write `event` at error level with the exception being handled."""
        self._target().exception(event, **kw)

    def critical(self, event: str, **kw: Any) -> None:
        """Write `event` at critical level."""
        self._target().critical(event, **kw)

    def __repr__(self) -> str:
        return f"RoutedLogger({self.name!r}, per_turn={self.per_turn})"


class _Stderr:
    """Whatever `sys.stderr` is at write time (tests and apps swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _unconfigured_logger(name: str) -> FilteringBoundLogger:
    # structlog's own default chain has no redaction: outside a runtime and
    # before the daemon configures the process, lines still pass lmvisor's
    # chain (secrets out), rendered for the console on stderr, info and above,
    # so a script's own stdout stays its own.
    logger: FilteringBoundLogger = structlog.wrap_logger(
        structlog.PrintLogger(_Stderr()),  # type: ignore[arg-type]
        processors=build_processors(mode="console"),
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS["info"]),
        context_class=dict,
    )
    return logger.bind(logger=name)


def get_logger(name: str, *, per_turn: bool = False) -> RoutedLogger:
    """A logger for library code: the current runtime's chain, else the process's.

    `per_turn`: in a runtime, lines logged on the event loop go out at the end of the
    loop turn, together (`RuntimeLogging.get_logger`); for a line per request.
    """
    return RoutedLogger(name, per_turn=per_turn)
