"""Tracing predictor calls: `with trace() as entries:` records every Predict call made
inside (the predictor, its inputs and its prediction), for optimizers that bootstrap
demos from a teacher's runs. Inactive tracing costs one ContextVar read per call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, final

from lmvisor.programs.example import Prediction

__all__ = ["TraceEntry", "record_entries", "record_trace", "trace"]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class TraceEntry:
    """One predictor call: which predictor, with which inputs, and what it predicted."""

    predictor: Any
    inputs: dict[str, Any]
    prediction: Prediction


_active: ContextVar[list[TraceEntry] | None] = ContextVar("lmvisor_trace", default=None)


@contextmanager
def trace() -> Iterator[list[TraceEntry]]:
    """Record the predictor calls made in the block (and in tasks started from it).

    Yields the list the entries are appended to, in completion order. Nested `trace()`
    blocks record into their own list only.
    """
    entries: list[TraceEntry] = []
    token = _active.set(entries)
    try:
        yield entries
    finally:
        _active.reset(token)


def record_trace(predictor: Any, inputs: Mapping[str, Any], prediction: Prediction) -> None:
    """Append one call to the active trace, if any."""
    entries = _active.get()
    if entries is not None:
        entries.append(TraceEntry(predictor=predictor, inputs=dict(inputs), prediction=prediction))


def record_entries(entries: list[TraceEntry]) -> None:
    """Append entries recorded elsewhere (a nested trace) to the active trace, if any."""
    active = _active.get()
    if active is not None:
        active.extend(entries)
