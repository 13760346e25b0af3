"""Observability routes: the live supervision tree, events (query and SSE follow), metrics, config.

- `GET /v1/tree`: every supervised actor with its status, mailbox depth,
  restarts and last crash reason (redacted).
- `GET /v1/events?correlation_id=&type=&since=&limit=`: matching events, oldest
  first, from the event-store actor (so SQLite answers when configured);
  `follow=true` streams them as SSE (`event` frames), then every new match
  live, until the client leaves, the deadline passes or the daemon drains.
- `GET /metrics`: the runtime's Prometheus registry in the text format.
- `GET /v1/config?path=`: the configuration in force (or the setting at a dotted
  path), secrets masked; `PATCH /v1/config` (`config_update`) changes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, Final, final

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from lmvisor.runtime.correlation import CORRELATION_ID_PATTERN
from lmvisor.runtime.deadline import bound_timeout, check_deadline
from lmvisor.runtime.observe.events import EVENT_TYPE_FILTER_PATTERN, MAX_TYPE_FILTERS, Event
from lmvisor.runtime.observe.metrics import CONTENT_TYPE
from lmvisor.runtime.observe.store import EVENT_STORE_NAME, query_events
from lmvisor.server.config_update import CONFIG_PATH_PATTERN, masked_setting
from lmvisor.server.context import ServerContext, server_context
from lmvisor.server.sse import SSE_MEDIA_TYPE, SSEMessage, sse_response
from lmvisor.server.views import event_view, tree_view

__all__ = [
    "EventList",
    "EventView",
    "TreeView",
    "get_config",
    "get_events",
    "get_metrics",
    "get_tree",
    "router",
]

router = APIRouter()
_Context = Annotated[ServerContext, Depends(server_context)]
_FOLLOW_BUFFER: Final = 1024
_STORE_TIMEOUT: Final = 10.0


@final
class TreeView(BaseModel):
    """One node of the supervision tree; `last_crash` is its last abnormal exit reason."""

    id: str
    kind: str
    status: str
    restarts: int
    mailbox_depth: int
    last_crash: str | None
    actor: str | None
    children: list[TreeView]


@final
class EventView(BaseModel):
    """One recorded event (`timestamp`: seconds since the epoch)."""

    id: str
    type: str
    data: dict[str, Any]
    correlation_id: str | None
    parent_id: str | None
    timestamp: float
    namespace: str


@final
class EventList(BaseModel):
    """Matching events, oldest first."""

    events: list[EventView]
    count: int


@router.get("/v1/tree", response_model=TreeView, tags=["observe"], summary="Supervision tree")
async def get_tree(context: _Context) -> JSONResponse:
    """The live supervision tree from the root down."""
    return JSONResponse(tree_view(context.runtime.tree()))


_CorrelationQuery = Annotated[
    str | None,
    Query(pattern=CORRELATION_ID_PATTERN, description="Only events of this correlation id."),
]
_TypeQuery = Annotated[
    list[Annotated[str, Query(pattern=EVENT_TYPE_FILTER_PATTERN)]] | None,
    Query(
        max_length=MAX_TYPE_FILTERS,
        description=(
            f"Event types (repeatable, at most {MAX_TYPE_FILTERS}); `prefix.*` matches a family."
        ),
    ),
]
_SinceQuery = Annotated[
    float | None,
    Query(ge=0, allow_inf_nan=False, description="Only events at or after this epoch time."),
]
_LimitQuery = Annotated[int, Query(ge=1, le=10_000, description="At most this many (newest).")]
_FollowQuery = Annotated[bool, Query(description="Stream matches as SSE, then new ones live.")]


@router.get(
    "/v1/events",
    response_model=EventList,
    tags=["observe"],
    summary="Recorded events",
    responses={200: {"content": {SSE_MEDIA_TYPE: {}}}},
)
async def get_events(
    context: _Context,
    correlation_id: _CorrelationQuery = None,
    type: _TypeQuery = None,
    since: _SinceQuery = None,
    limit: _LimitQuery = 1000,
    follow: _FollowQuery = False,
) -> Response:
    """Events matching every given filter, oldest first; `follow=true` streams them live."""
    types = tuple(type) if type else None
    if follow:
        source = _follow(context, correlation_id, types, since, limit)
        return sse_response(source, context)
    events = await _query(context, correlation_id, types, since, limit)
    views = [event_view(event) for event in events]
    return JSONResponse({"events": views, "count": len(views)})


async def _query(
    context: ServerContext,
    correlation_id: str | None,
    types: tuple[str, ...] | None,
    since: float | None,
    limit: int,
) -> list[Event]:
    check_deadline("event query")
    store = context.runtime.via(EVENT_STORE_NAME)
    timeout = bound_timeout(_STORE_TIMEOUT)
    return await query_events(
        store,
        correlation_id=correlation_id,
        type=types,
        since=since,
        limit=limit,
        timeout=_STORE_TIMEOUT if timeout is None else max(timeout, 0.0),
    )


async def _follow(
    context: ServerContext,
    correlation_id: str | None,
    types: tuple[str, ...] | None,
    since: float | None,
    limit: int,
) -> AsyncIterator[SSEMessage]:
    live = _LiveEvents(correlation_id)
    # Subscribe before reading the backlog, so nothing falls between the two.
    remove = context.runtime.events.subscribe(live.put, types)
    try:
        backlog = await _query(context, correlation_id, types, since, limit)
        seen = {event.id for event in backlog}
        for event in backlog:
            yield SSEMessage("event", event_view(event), id=event.id)
        while True:
            event, dropped = await live.get()
            if dropped:
                yield SSEMessage("lagged", {"dropped": dropped})
            if event.id not in seen:
                yield SSEMessage("event", event_view(event), id=event.id)
    finally:
        remove()


@final
class _LiveEvents:
    """A bounded buffer between the ring's listener and one stream; counts what it drops."""

    __slots__ = ("_correlation_id", "_dropped", "_queue")

    def __init__(self, correlation_id: str | None) -> None:
        self._correlation_id = correlation_id
        self._queue: asyncio.Queue[Event] = asyncio.Queue(_FOLLOW_BUFFER)
        self._dropped = 0

    def put(self, event: Event) -> None:
        if self._correlation_id is not None and event.correlation_id != self._correlation_id:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._dropped += 1

    async def get(self) -> tuple[Event, int]:
        event = await self._queue.get()
        dropped, self._dropped = self._dropped, 0
        return event, dropped


@router.get(
    "/metrics",
    tags=["observe"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {}}}},
)
async def get_metrics(context: _Context) -> Response:
    """The runtime's metrics in the Prometheus text exposition format."""
    return Response(context.runtime.metrics.render(), media_type=CONTENT_TYPE)


_SettingQuery = Annotated[
    str | None,
    Query(
        pattern=CONFIG_PATH_PATTERN,
        max_length=512,
        description="Only the setting at this dotted path (`providers.openai`).",
    ),
]


@router.get("/v1/config", tags=["observe"], summary="Configuration in force")
async def get_config(context: _Context, path: _SettingQuery = None) -> Any:
    """The configuration the daemon runs with (or the setting at `path`), every secret
    shown as `**********`.

    Raises:
        ConfigError: no setting lives at `path` (422).
    """
    dumped: Mapping[str, Any] = context.runtime.config.model_dump(mode="json")
    return dumped if path is None else masked_setting(dumped, path)
