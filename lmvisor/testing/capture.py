"""Test helpers that collect what a runtime reports: its events, its log lines.

`capture_events(runtime)` gathers every event the runtime's event store
records inside the block (optionally only some types); `capture_logs` is the
runtime's log capture, re-exported here beside it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Protocol

from lmvisor.runtime.observe.events import Event, matches
from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.observe.store import EventStore

__all__ = ["capture_events", "capture_logs"]


class _HasEvents(Protocol):
    @property
    def events(self) -> EventStore: ...


class _Flushes(Protocol):
    def flush(self) -> None: ...


@contextmanager
def capture_events(
    runtime: _HasEvents, types: str | Collection[str] | None = None
) -> Iterator[list[Event]]:
    """Collect the events `runtime` records inside the block, in order.

    Lifecycle reports are written a moment after they happen: those pending
    when the block starts are written first (and not collected), those made
    inside it are written when it ends (and collected).

    Args:
        runtime: a `Runtime` (anything with an `events` store, and `reports`).
        types: only these event types (exact names, or "prefix.*" patterns).
    """
    reports: _Flushes | None = getattr(runtime, "reports", None)
    if reports is not None:
        reports.flush()
    seen: list[Event] = []

    def collect(event: Event) -> None:
        if types is None or matches(event, type=types):
            seen.append(event)

    remove = runtime.events.ring.add_listener(collect)
    try:
        yield seen
    finally:
        try:
            if reports is not None:
                reports.flush()
        finally:
            remove()
