"""The root of lmvisor's error tree, in a leaf module every layer can import (config included).

Config imports nothing else from lmvisor, so the root error cannot live in the
runtime: it lives here, and `lmvisor.runtime.errors` re-exports it as the
public `LmvisorError`. An error records the correlation id current when it is
built; the id is read from `CORRELATION`, the context variable that
`lmvisor.runtime.correlation` opens and closes scopes in.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, ClassVar, Final

from lmvisor._redaction import Redactor, safe_repr

__all__ = ["CORRELATION", "LmvisorError", "jsonable"]

CORRELATION: Final[ContextVar[Any]] = ContextVar("lmvisor_correlation", default=None)
"""The innermost open correlation scope (a `CorrelationScope`), or None."""

_REDACTOR: Final = Redactor()
_MAX_DEPTH: Final = 8


class LmvisorError(Exception):
    """Root of every lmvisor failure; subclasses set `code` and `retryable`.

    Attributes:
        code: a stable snake_case identifier for the failure kind.
        retryable: whether the same call may succeed if made again.
        message: the human-readable text (also `str(error)`).
        context: structured details (JSON-ready through `to_dict`).
        correlation_id: the scope the error was built in, if any.
    """

    code: ClassVar[str] = "lmvisor_error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        context: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = dict(context or {})
        if correlation_id is None:
            scope = CORRELATION.get()
            correlation_id = None if scope is None else scope.id
        self.correlation_id = correlation_id

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view for events and HTTP error bodies, secrets redacted.

        Context values under secret-named keys, and credential-looking text in
        the message or any context value, become `[REDACTED]` as in log lines.
        """
        context = {k: jsonable(v) for k, v in self.context.items()}
        return {
            "type": type(self).__name__,
            "code": self.code,
            "message": _REDACTOR.redact(self.message, cut=False),
            "context": _REDACTOR.redact(context, cut=False),
            "correlation_id": self.correlation_id,
            "retryable": self.retryable,
        }

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


def jsonable(value: Any, *, depth: int = 0) -> Any:
    """`value` as JSON-ready data: scalars kept, lists and mappings walked, anything else repr'd.

    Nesting deeper than eight levels (a structure that holds itself, say)
    becomes ``"[...]"``.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if depth >= _MAX_DEPTH:
        return "[...]"
    if isinstance(value, list | tuple):
        return [jsonable(v, depth=depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth=depth + 1) for k, v in value.items()}
    return safe_repr(value)
