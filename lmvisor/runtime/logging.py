"""Logging: structlog chains that add correlation context, redact secrets and truncate.

Library code never calls `structlog.configure`. Each runtime builds its own
loggers with `RuntimeLogging` (an explicit processor chain over its own
stream); only the daemon calls `configure_process_logging`, which sets up
structlog's global chain and routes stdlib `logging` through the same
processors. Both chains:

    add_context -> add_log_level -> timestamp -> format exceptions
      -> Redactor (secrets out, long values cut) -> capture -> render

`add_context` adds `correlation_id` (from the correlation scope) and whatever
`log_context(namespace=..., actor=...)` bound for the current task. The
`Redactor` replaces values under secret-looking keys (api_key, authorization,
token, password, secret, ...) and anything in any value that looks like a
credential (`sk-...`, `sk-ant-...`, `Bearer ...`, `api_key=...`), at any
depth, exception text included. `capture_logs()` collects the processed
(already redacted) event dicts instead of rendering them, for tests.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol, TextIO, final

import structlog
from pydantic import SecretBytes, SecretStr
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from lmvisor.runtime.correlation import current_scope
from lmvisor.runtime.logger import current_route

__all__ = [
    "DEFAULT_SECRET_KEYS",
    "DEFAULT_SECRET_PATTERNS",
    "REDACTED",
    "LogMode",
    "Redactor",
    "RuntimeLogging",
    "add_context",
    "build_processors",
    "capture_logs",
    "configure_process_logging",
    "log_context",
    "reset_process_logging",
    "set_log_actor",
]

LogMode = Literal["json", "console"]

REDACTED: Final = "[REDACTED]"
DEFAULT_SECRET_KEYS: Final = (
    "api_key",
    "apikey",
    "authorization",
    "token",
    "password",
    "passwd",
    "secret",
    "cookie",
    "credential",
    "private_key",
    "access_key",
)
"""Key fragments marking a secret value. `token` matches whole words only, so
`access_token` is secret but `max_tokens` is not."""

# A secret-named key and its separator, in any text: `api_key=v`, `"password": "v"`,
# `x-api-key: v`, `Authorization: Token v`, a repr's `api_key='v'`. Token counts
# (`max_tokens: 5`) are not keys: `token` must end the name. The match starts at
# the secret word (text before it is left alone) and the name's tail is bounded,
# so scanning stays linear in the text.
_SECRET_NAME: Final = (
    r"(?:api[_-]?key|authorization|password|passwd|secret|credential|private[_-]?key"
    r"|access[_-]?key|cookie)[\w-]{0,40}|token"
)
_KEY_VALUE: Final = (
    rf"(?i:(?P<keep>(?:{_SECRET_NAME})[\"']?[ \t]*[:=][ \t]*[\"']?(?:(?:bearer|basic|token) +)?)"
    r"[^\s&\"',;})\]]+)"
)

DEFAULT_SECRET_PATTERNS: Final = (
    r"\bsk-[A-Za-z0-9][A-Za-z0-9_\-]{7,}",
    r"(?i:\bbearer\s+)[A-Za-z0-9._~+/\-]+=*",
    r"(?i:\bbasic\s+)[A-Za-z0-9+/]{8,}=*",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",
    r"\bxox[abpr]-[A-Za-z0-9\-]{10,}",
    r"\bAIza[0-9A-Za-z_\-]{35}",
    _KEY_VALUE,
)
"""Regexes for credential-looking text inside any string value. Text a match
captures in a group named `keep` stays (the `api_key=` before a value)."""

_UNTRUNCATED: Final = frozenset({"exception", "stack"})
_MAX_DEPTH: Final = 8
_WORD = re.compile(r"[^a-z0-9]+")

_context: ContextVar[Mapping[str, Any]] = ContextVar(
    "lmvisor_log_context", default=MappingProxyType({})
)
_captured: ContextVar[list[dict[str, Any]] | None] = ContextVar("lmvisor_log_capture", default=None)


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


class _Named(Protocol):
    @property
    def name(self) -> str: ...


_actor: ContextVar[_Named | None] = ContextVar("lmvisor_log_actor", default=None)


def set_log_actor(actor: _Named) -> None:
    """Name `actor` (anything with `.name`) on log lines from the current context on.

    For a context made for one actor's task, which dies with it; the name is
    read only when a line is written, so spawning stays cheap.
    """
    _actor.set(actor)


def add_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: add `correlation_id` and the `log_context` values (explicit keys win)."""
    scope = current_scope()
    if scope is not None:
        event_dict.setdefault("correlation_id", scope.id)
    actor = _actor.get()
    if actor is not None:
        event_dict.setdefault("actor", actor.name)
    for key, value in _context.get().items():
        event_dict.setdefault(key, value)
    return event_dict


@final
class Redactor:
    """Processor: replace secrets with `[REDACTED]` and cut long values, at any depth.

    Args:
        keys: key fragments that mark a value secret (see `DEFAULT_SECRET_KEYS`).
        patterns: regexes of credential-looking text (see `DEFAULT_SECRET_PATTERNS`).
        max_length: longer strings are cut, with a note of how much went;
            the `exception` and `stack` texts are redacted but never cut.
    """

    __slots__ = ("_keys", "_pattern", "max_length")

    def __init__(
        self,
        *,
        keys: Sequence[str] = DEFAULT_SECRET_KEYS,
        patterns: Sequence[str] = DEFAULT_SECRET_PATTERNS,
        max_length: int = 2000,
    ) -> None:
        if max_length < 16:
            raise ValueError(f"max_length must be >= 16, got {max_length!r}")
        self._keys = tuple(key.lower() for key in keys)
        self._pattern = re.compile("|".join(f"(?:{p})" for p in patterns))
        self.max_length = max_length

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        for key, value in event_dict.items():
            if self.is_secret_key(key):
                event_dict[key] = REDACTED
            else:
                event_dict[key] = self.redact(value, cut=key not in _UNTRUNCATED)
        return event_dict

    def is_secret_key(self, key: object) -> bool:
        """Whether a value stored under `key` must be hidden."""
        if not isinstance(key, str):
            return False
        lowered = _WORD.sub("_", key.lower())
        words = lowered.split("_")
        for fragment in self._keys:
            if fragment == "token":
                if "token" in words or lowered.endswith("token"):
                    return True
            elif fragment in lowered:
                return True
        return False

    def redact(self, value: Any, *, cut: bool = True, depth: int = 0) -> Any:
        """`value` with secrets replaced and long strings cut; containers are copied."""
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self._text(value, cut)
        if isinstance(value, SecretStr | SecretBytes):
            return REDACTED
        if depth >= _MAX_DEPTH:
            return "[...]"
        if isinstance(value, Mapping):
            return {
                k: REDACTED if self.is_secret_key(k) else self.redact(v, cut=cut, depth=depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            if len(value) == 2 and isinstance(value, list | tuple) and self.is_secret_key(value[0]):
                # A (name, value) pair, as in a raw header list.
                return [value[0], REDACTED]
            return [self.redact(item, cut=cut, depth=depth + 1) for item in value]
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else repr(value)
        cleaned = self._text(text, cut)
        return value if cleaned == text and not isinstance(value, bytes) else cleaned

    def _text(self, text: str, cut: bool) -> str:
        if self._pattern.search(text):
            text = self._pattern.sub(_replace, text)
        if cut and len(text) > self.max_length:
            return f"{text[: self.max_length]}...[{len(text) - self.max_length} more chars]"
        return text


def _replace(match: re.Match[str]) -> str:
    return (match.groupdict().get("keep") or "") + REDACTED


class _Captured(Exception):
    """Raised inside the stdlib formatter once a record is captured (a Formatter cannot drop)."""


def _capture(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    sink = _captured.get()
    if sink is not None:
        event_dict.setdefault("log_level", method_name)
        sink.append(dict(event_dict))
        raise structlog.DropEvent
    return event_dict


def _capture_stdlib(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    sink = _captured.get()
    if sink is not None:
        sink.append(dict(event_dict))
        raise _Captured
    return event_dict


@contextmanager
def capture_logs(route: Any = None) -> Iterator[list[dict[str, Any]]]:
    """Collect lmvisor log events (after redaction) instead of writing them.

    Captures events logged through `RuntimeLogging` loggers and the process
    chain from this task and tasks started inside the block, and everything
    the runtime in force here logs from its own actors (`route`: a
    `RuntimeLogging`, or any object with `.logging`; by default the runtime
    whose `async with Runtime.open()` block, or actor, this runs in).
    """
    sink: list[dict[str, Any]] = []
    token = _captured.set(sink)
    target = getattr(route, "logging", route) if route is not None else current_route()
    remove = target.attach(sink) if target is not None else None
    try:
        yield sink
    finally:
        _captured.reset(token)
        if remove is not None:
            remove()


def build_processors(
    *, mode: LogMode = "json", redactor: Redactor | None = None, colors: bool = False
) -> list[Processor]:
    """The full chain ending in a renderer: JSON lines, or readable console lines."""
    renderer: Processor = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if mode == "json"
        else structlog.dev.ConsoleRenderer(colors=colors)
    )
    return [*_pre_chain(), *_post_chain(redactor), renderer]


def _pre_chain() -> list[Processor]:
    return [
        add_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _post_chain(redactor: Redactor | None, capture: Processor = _capture) -> list[Processor]:
    return [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redactor if redactor is not None else Redactor(),
        capture,
    ]


def _level(level: int | str) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}")
    return value


@final
class RuntimeLogging:
    """One runtime's loggers: its own chain, stream and level; no global state touched.

    Args:
        namespace: bound to every event as `namespace`.
        mode: `json` (one object per line) or `console`.
        stream: where lines go; stderr when None.
        level: the least severe level written (`"debug"`, `"info"`, ... or an int).

    Raises:
        ValueError: for an unknown level name.
    """

    __slots__ = ("_loggers", "_processors", "_sinks", "_stream", "_wrapper", "mode", "namespace")

    def __init__(
        self,
        *,
        namespace: str,
        mode: LogMode = "json",
        stream: TextIO | None = None,
        level: int | str = logging.INFO,
        redactor: Redactor | None = None,
    ) -> None:
        self.namespace = namespace
        self.mode = mode
        self._stream = stream if stream is not None else sys.stderr
        self._sinks: tuple[list[dict[str, Any]], ...] = ()
        self._loggers: dict[str, FilteringBoundLogger] = {}
        processors = build_processors(mode=mode, redactor=redactor)
        # Captures attached to this runtime see events from its actors too,
        # whose tasks do not share the capturing test's context.
        processors.insert(len(processors) - 1, self._capture)
        self._processors = processors
        self._wrapper = structlog.make_filtering_bound_logger(_level(level))

    def attach(self, sink: list[dict[str, Any]]) -> Callable[[], None]:
        """Also collect every processed event into `sink` (no output); returns a remover."""
        self._sinks = (*self._sinks, sink)

        def remove() -> None:
            self._sinks = tuple(s for s in self._sinks if s is not sink)

        return remove

    def _capture(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if self._sinks:
            event_dict.setdefault("log_level", method_name)
            for sink in self._sinks:
                sink.append(dict(event_dict))
            raise structlog.DropEvent
        return event_dict

    def get_logger(self, name: str | None = None, **bound: Any) -> FilteringBoundLogger:
        """A logger writing through this runtime's chain, with `namespace` (and `logger`) bound.

        Loggers without extra `bound` values are built once per name.
        """
        if not bound:
            cached = self._loggers.get(name or "")
            if cached is None:
                cached = self._loggers[name or ""] = self._build(name)
            return cached
        return self._build(name, **bound)

    def _build(self, name: str | None, **bound: Any) -> FilteringBoundLogger:
        initial: dict[str, Any] = {"namespace": self.namespace}
        if name is not None:
            initial["logger"] = name
        initial.update(bound)
        logger: FilteringBoundLogger = structlog.wrap_logger(
            structlog.PrintLogger(self._stream),
            processors=self._processors,
            wrapper_class=self._wrapper,
            context_class=dict,
        )
        return logger.bind(**initial)

    def __repr__(self) -> str:
        return f"RuntimeLogging({self.namespace!r}, mode={self.mode!r})"


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
    level: int | str = logging.INFO,
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
    number = _level(level)
    out = stream if stream is not None else sys.stderr
    redactor = redactor if redactor is not None else Redactor()
    structlog.configure(
        processors=build_processors(mode=mode, redactor=redactor),
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    renderer = build_processors(mode=mode, redactor=redactor)[-1]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_pre_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_post_chain(redactor, _capture_stdlib),
            renderer,
        ],
    )
    handler = _ProcessHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    _remove_handlers(root)
    root.addHandler(handler)
    root.setLevel(number)


def reset_process_logging() -> None:
    """Undo `configure_process_logging`.

    structlog returns to its defaults, lmvisor's root handler is removed and
    the root level goes back to logging's default (WARNING).
    """
    structlog.reset_defaults()
    root = logging.getLogger()
    _remove_handlers(root)
    root.setLevel(logging.WARNING)


def _remove_handlers(root: logging.Logger) -> None:
    for handler in list(root.handlers):
        if isinstance(handler, _ProcessHandler):
            root.removeHandler(handler)
