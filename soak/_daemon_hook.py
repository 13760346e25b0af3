"""The soak's `--app` hook: the daemon's asyncio task count and, when traced, its heap growth.

`soak/daemon.py` starts `lmvisor serve --app soak._daemon_hook:register`, so the soak
can read from outside what `/metrics` does not show: `GET /soak/tasks` (tasks alive in
the daemon's loop) and, when the daemon runs with `PYTHONTRACEMALLOC`, `POST
/soak/heap/mark` (take the baseline snapshot) and `GET /soak/heap` (the lines whose
allocations grew most since the mark).
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Annotated, Any

from fastapi import APIRouter, Query

from lmvisor.server.context import ServerContext

__all__ = ["register"]


def _router() -> APIRouter:
    router = APIRouter(prefix="/soak")
    marks: list[tracemalloc.Snapshot] = []

    @router.get("/tasks")
    async def tasks() -> dict[str, Any]:
        return {"tasks": len(asyncio.all_tasks())}

    @router.post("/heap/mark")
    async def mark() -> dict[str, Any]:
        if not tracemalloc.is_tracing():
            return {"tracing": False}
        gc.collect()
        marks[:] = [tracemalloc.take_snapshot()]
        return {"tracing": True}

    @router.get("/heap")
    async def heap(top: Annotated[int, Query(ge=1, le=100)] = 15) -> dict[str, Any]:
        if not tracemalloc.is_tracing() or not marks:
            return {"tracing": False, "top": []}
        gc.collect()
        stats = tracemalloc.take_snapshot().compare_to(marks[0], "traceback")
        return {
            "tracing": True,
            "top": [
                {
                    "kib": round(s.size_diff / 1024, 1),
                    "count": s.count_diff,
                    "where": [str(frame) for frame in s.traceback.format()[-12:]],
                }
                for s in stats[:top]
            ],
        }

    return router


async def register(context: ServerContext) -> None:
    """Add the soak's routes."""
    context.add_router(_router())
