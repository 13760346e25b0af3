"""Library loggers that write through the chain of the runtime they run in.

`get_logger(name)` returns a small proxy. Each log call looks up the current
`LogRoute` (a contextvar that `Runtime.open` sets for its actors and for the
block it opens) and writes through that runtime's chain: its redaction, its
stream, its level, its captures. Outside any runtime the call goes to
structlog's global logger once the daemon has configured it, and before that
through lmvisor's console chain (still redacted) rather than structlog's
unredacted default. Library code
never configures logging itself.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from functools import cache
from typing import Any, Protocol, final

import structlog

__all__ = [
    "LogRoute",
    "RoutedLogger",
    "current_route",
    "get_logger",
    "set_route",
    "use_route",
]


class LogRoute(Protocol):
    """Where a runtime's library log lines go (`RuntimeLogging` is one)."""

    def get_logger(self, name: str | None = None) -> Any:
        """The bound logger for `name`."""
        ...

    def attach(self, sink: list[dict[str, Any]]) -> Callable[[], None]:
        """Also collect every processed event into `sink`; returns a remover."""
        ...


_route: ContextVar[LogRoute | None] = ContextVar("lmvisor_log_route", default=None)


def current_route() -> LogRoute | None:
    """The route library loggers use in this context, or None outside a runtime."""
    return _route.get()


@contextmanager
def use_route(route: LogRoute | None) -> Iterator[None]:
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


def set_route(route: LogRoute | None) -> None:
    """Route proxies through `route` in the current context (a runtime's own context)."""
    _route.set(route)


@final
class RoutedLogger:
    """A named logger resolved at each call; see the module docstring."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _target(self) -> Any:
        route = _route.get()
        if route is not None:
            return route.get_logger(self.name)
        if structlog.is_configured():
            return structlog.get_logger(self.name)
        return _unconfigured_logger(self.name)

    def debug(self, event: str, **kw: Any) -> None:
        self._target().debug(event, **kw)

    def info(self, event: str, **kw: Any) -> None:
        self._target().info(event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._target().warning(event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._target().error(event, **kw)

    def exception(self, event: str, **kw: Any) -> None:
        self._target().exception(event, **kw)

    def critical(self, event: str, **kw: Any) -> None:
        self._target().critical(event, **kw)

    def __repr__(self) -> str:
        return f"RoutedLogger({self.name!r})"


class _Stderr:
    """Whatever `sys.stderr` is at write time (tests and apps swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@cache
def _unconfigured_logger(name: str) -> Any:
    # structlog's own default chain has no redaction: outside a runtime and
    # before the daemon configures the process, lines still pass lmvisor's
    # chain (secrets out), rendered for the console on stderr, info and above,
    # so a script's own stdout stays its own.
    from lmvisor.runtime.logging import build_processors

    return structlog.wrap_logger(
        structlog.PrintLogger(_Stderr()),  # type: ignore[arg-type]
        processors=build_processors(mode="console"),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        context_class=dict,
    ).bind(logger=name)


def get_logger(name: str) -> RoutedLogger:
    """A logger for library code: the current runtime's chain, else structlog's global one."""
    return RoutedLogger(name)
