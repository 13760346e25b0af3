"""The correlation id: one contextvar that every hop of a call carries.

`correlation_scope()` opens a scope (new id unless one is given); nested scopes
remember their parent so events can be stitched into a tree.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from lmvisor._error import CORRELATION

__all__ = ["CorrelationScope", "correlation_scope", "current_correlation_id", "current_scope"]


@dataclass(frozen=True, slots=True)
class CorrelationScope:
    """One scope: its id and the id of the scope it was opened in (if any)."""

    id: str
    parent_id: str | None


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


@contextmanager
def correlation_scope(id: str | None = None) -> Iterator[CorrelationScope]:
    """Open a correlation scope for the duration of the `with` block.

    Args:
        id: the correlation id to use; a fresh uuid4 hex when omitted.

    The scope is a contextvar, so tasks spawned inside inherit it and
    concurrent tasks never see each other's ids.
    """
    parent = _scope.get()
    scope = CorrelationScope(
        id=id if id is not None else uuid.uuid4().hex,
        parent_id=None if parent is None else parent.id,
    )
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)
