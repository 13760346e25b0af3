"""The CLI's embedded mode: the daemon's runtime, opened from the same configuration, asked once.

Without `--url` the CLI answers from a runtime it starts itself through
`host.open_context` (the daemon's namespace, so a durable event store shows
what a daemon recorded) and stops afterwards. Answers have the shapes the
HTTP API serves (`lmvisor.server.views`), so the CLI renders both alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from lmvisor.config.loading import load_config
from lmvisor.server.context import ServerContext
from lmvisor.server.host import open_context
from lmvisor.server.views import event_view, tree_view

__all__ = ["embedded_events", "embedded_tree", "follow_embedded", "run_embedded"]

T = TypeVar("T")

EventFilters = Mapping[str, Any]
"""`correlation_id`, `type` (a list), `since` and `limit`, as the CLI collects them."""


def run_embedded(path: Path | None, use: Callable[[ServerContext], Awaitable[T]]) -> T:
    """Open the runtime configured by `path` (see `load_config`), run `use` on it, close it.

    Raises:
        ConfigError: the configuration is invalid.
        StartError: the runtime could not start.
    """
    config = load_config(path)

    async def run() -> T:
        async with open_context(config) as context:
            return await use(context)

    return asyncio.run(run())


def embedded_tree(path: Path | None) -> dict[str, Any]:
    """The supervision tree of a freshly started runtime."""

    async def tree(context: ServerContext) -> dict[str, Any]:
        return tree_view(context.runtime.tree())

    return run_embedded(path, tree)


async def _stored(context: ServerContext, filters: EventFilters) -> list[dict[str, Any]]:
    found = await context.runtime.events.query(
        correlation_id=filters["correlation_id"],
        type=filters["type"] or None,
        since=filters["since"],
        limit=filters["limit"],
    )
    return [event_view(event) for event in found]


def embedded_events(path: Path | None, filters: EventFilters) -> list[dict[str, Any]]:
    """The stored events matching `filters` (from SQLite when `events.sqlite_path` is set)."""
    return run_embedded(path, lambda context: _stored(context, filters))


def follow_embedded(
    path: Path | None, filters: EventFilters, show: Callable[[dict[str, Any]], None]
) -> None:
    """Show the matching stored events, then new ones as they happen, until interrupted.

    `show` gets `{"event": "event", "data": <event view>}` items, as a daemon's
    stream yields them. Ends only by KeyboardInterrupt (or cancellation).
    """
    run_embedded(path, lambda context: _follow(context, filters, show))


async def _follow(
    context: ServerContext, filters: EventFilters, show: Callable[[dict[str, Any]], None]
) -> None:
    live: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    # Subscribe before reading what is stored, so nothing falls between the two.
    remove = context.runtime.events.subscribe(
        lambda event: live.put_nowait(event_view(event)), filters["type"] or None
    )
    try:
        stored = await _stored(context, filters)
        seen = {view["id"] for view in stored}
        for view in stored:
            show({"event": "event", "data": view})
        while True:
            view = await live.get()
            wanted = filters["correlation_id"] in (None, view["correlation_id"])
            if wanted and view["id"] not in seen:
                show({"event": "event", "data": view})
    finally:
        remove()
