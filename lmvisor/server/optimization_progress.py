"""An optimization job's progress as a stream: its status, each scored trial, the final status.

`job_progress(app, job_id)` yields `SSEMessage`s: first `status` (the job as
`GET /v1/optimizations/{id}` shows it), then `trial` for each candidate the
optimizer scores (`iteration`, `candidate`, `score`, `metric`) and `status`
whenever its progress changes, and last `done` with the final status once the
job is completed, failed or cancelled. The daemon serves it as SSE
(`/v1/optimizations/{id}/events`); the CLI's embedded `optimize` reads it
directly, so both show the same progress.

Trials come from the runtime's `optimization.iteration` events; the status is
polled as well (every `poll` seconds), so a missed event never stalls a stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

from lmvisor.runtime.observe.events import Event
from lmvisor.runtime.observe.names import OPTIMIZATION_ITERATION
from lmvisor.server.sse import SSEMessage
from lmvisor.services.optimization import OptimizationStatus

if TYPE_CHECKING:
    from lmvisor.services.app import App

__all__ = ["job_progress", "job_view"]

_BUFFER: Final = 1024
_PROGRESS_KEYS: Final = ("status", "trials_done", "trials_total", "best_score", "version")
_TRIAL_KEYS: Final = ("iteration", "candidate", "score", "metric")


def job_view(status: OptimizationStatus) -> dict[str, Any]:
    """A job's status as the API shows it (`eta` in seconds, rounded)."""
    view = dataclasses.asdict(status)
    if view["eta"] is not None:
        view["eta"] = round(view["eta"], 1)
    return view


async def job_progress(app: App, job_id: str, *, poll: float = 1.0) -> AsyncIterator[SSEMessage]:
    """Yield the job's progress until it ends (see the module docstring).

    Raises:
        UnknownJob: no job has this id (before anything is yielded).
    """
    trials: asyncio.Queue[Event] = asyncio.Queue(_BUFFER)

    def on_event(event: Event) -> None:
        if event.data.get("optimization_id") == job_id and not trials.full():
            trials.put_nowait(event)

    # Subscribe before the first status, so no trial falls between the two.
    remove = app.events.subscribe(on_event, OPTIMIZATION_ITERATION)
    try:
        status = await app.optimization_status(job_id)
        view = job_view(status)
        yield SSEMessage("status", view)
        while status.status == "running":
            for event in await _next_trials(trials, poll):
                yield SSEMessage("trial", {key: event.data.get(key) for key in _TRIAL_KEYS})
            status = await app.optimization_status(job_id)
            latest = job_view(status)
            if _changed(view, latest) and status.status == "running":
                yield SSEMessage("status", latest)
            view = latest
        yield SSEMessage("done", view)
    finally:
        remove()


async def _next_trials(trials: asyncio.Queue[Event], poll: float) -> list[Event]:
    """Every trial waiting, after waiting at most `poll` seconds for the first.

    A timeout scope, not `asyncio.wait_for`: on Python 3.11 that returns a trial that
    arrived in the same loop turn as the caller's cancellation, swallowing it.
    """
    try:
        async with asyncio.timeout(poll):
            first = await trials.get()
    except TimeoutError:
        return []
    found = [first]
    while not trials.empty():
        found.append(trials.get_nowait())
    return found


def _changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return any(before[key] != after[key] for key in _PROGRESS_KEYS)
