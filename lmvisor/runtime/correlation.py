"""The correlation id: one contextvar that every hop of a call carries.

`correlation_scope()` opens a scope (new id unless one is given); nested scopes
remember their parent so events can be stitched into a tree.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import Final, final

from lmvisor._error import CORRELATION

__all__ = [
    "CORRELATION_ID_PATTERN",
    "CorrelationScope",
    "correlation_scope",
    "current_correlation_id",
    "current_scope",
]

CORRELATION_ID_PATTERN: Final = r"^[A-Za-z0-9._:\-]{1,128}$"
"""What a correlation id given from outside may be (an HTTP header, a query, the CLI):
1 to 128 letters, digits and `._:-`, so it can be logged and echoed without escaping."""


@dataclass(frozen=True, slots=True)
class CorrelationScope:
    """One scope: its id and the id of the scope it was opened in (if any).

    `generated`: the id was made by lmvisor (not given by a caller), so it holds
    nothing secret and the log chain writes it without a redaction pass.
    """

    id: str
    parent_id: str | None
    generated: bool = False


# One context variable, declared in the leaf beside the root error so that every
# `LmvisorError` (config's included) records the id it was built under.
_scope: ContextVar[CorrelationScope | None] = CORRELATION


def current_scope() -> CorrelationScope | None:
    """The innermost open scope of this task, or None."""
    return _scope.get()


def current_correlation_id() -> str | None:
    """The correlation id of the innermost open scope, or None outside any scope."""
    scope = _scope.get()
    return None if scope is None else scope.id


def correlation_scope(id: str | None = None, *, generated: bool = False) -> _ScopeBlock:
    """Open a correlation scope for the duration of the `with` block.

    Args:
        id: the correlation id to use; a fresh uuid4 hex when omitted.
        generated: `id` was made by lmvisor itself (see `CorrelationScope.generated`);
            implied when `id` is omitted.

    The scope is a contextvar, so tasks spawned inside inherit it and
    concurrent tasks never see each other's ids. The block, once entered, is
    not entered again until it is left.
    """
    return _ScopeBlock(id, generated or id is None)


@final
class _ScopeBlock:
    """The context manager `correlation_scope` returns.

    A class rather than a generator-based context manager: the daemon opens one
    per request, and this costs no generator and no `contextlib` frames.
    """

    __slots__ = ("_generated", "_id", "_token")

    def __init__(self, id: str | None, generated: bool) -> None:
        self._id = id
        self._generated = generated
        self._token: Token[CorrelationScope | None] | None = None

    def __enter__(self) -> CorrelationScope:
        if self._token is not None:
            raise RuntimeError("this correlation scope is already open")
        parent = _scope.get()
        scope = CorrelationScope(
            self._id if self._id is not None else uuid.uuid4().hex,
            None if parent is None else parent.id,
            self._generated,
        )
        self._token = _scope.set(scope)
        return scope

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        token = self._token
        if token is not None:
            self._token = None
            _scope.reset(token)
