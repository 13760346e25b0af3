"""An `--app` hook for the server tests: routes that sleep, fail in typed ways, and crash a child.

Used in-process (`register(context)`) and by daemon subprocesses
(`--app tests.server._daemon_app:register`).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from lmvisor.programs import Predict
from lmvisor.programs.spec import ProgramSpecError
from lmvisor.runtime.actor import Actor, handler
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.correlation import current_correlation_id
from lmvisor.runtime.deadline import time_left
from lmvisor.runtime.errors import RateLimited
from lmvisor.runtime.messages import Cast
from lmvisor.server.context import ServerContext


@dataclass(frozen=True, slots=True)
class Crash(Cast):
    pass


class Fragile(Actor):
    """Crashes on demand, so tests can exhaust the root supervisor's restart intensity."""

    @handler
    def crash(self, msg: Crash) -> None:
        raise RuntimeError("fragile crashed on purpose")


class Echo(BaseModel):
    name: str = Field(max_length=10)
    items: list[int] = []


def build_router(context: ServerContext) -> APIRouter:
    """The test routes, bound to `context`."""
    router = APIRouter(prefix="/test")

    @router.get("/slow")
    async def slow(seconds: Annotated[float, Query(ge=0, le=30)]) -> dict[str, Any]:
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    @router.get("/context")
    async def context_values() -> dict[str, Any]:
        return {"time_left": time_left(), "correlation_id": current_correlation_id()}

    @router.post("/echo")
    async def echo(body: Echo) -> dict[str, Any]:
        return body.model_dump()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal detail sk-abcdefghijklmnop1234")

    @router.get("/spec-error")
    async def spec_error() -> None:
        raise ProgramSpecError(field="demos.0.question", problem="must be a string")

    @router.get("/rate-limited")
    async def rate_limited() -> None:
        raise RateLimited(name="tests", retry_after=1.2)

    @router.post("/emit")
    async def emit() -> dict[str, Any]:
        event = context.runtime.events.emit("test.emitted", {"by": "route"})
        return {"id": event.id}

    @router.post("/crash-child")
    async def crash_child() -> dict[str, Any]:
        await context.runtime.via("fragile").cast(Crash())
        return {"sent": True}

    @router.get("/flood")
    async def flood() -> StreamingResponse:
        """64 KiB chunks without end: a client that stops reading fills the daemon's buffer."""

        async def chunks() -> AsyncIterator[bytes]:
            chunk = b"x" * 65536
            while True:
                # A producer awaits something between chunks (as the daemon's streams do);
                # one that never suspends would starve the disconnect listener.
                await asyncio.sleep(0)
                yield chunk

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    @router.get("/big")
    async def big(mib: Annotated[int, Query(ge=1, le=64)]) -> Response:
        """One answer of `mib` MiB, written in one go (the request is over before it is read)."""
        return Response(b"x" * (mib << 20), media_type="application/octet-stream")

    return router


async def register(context: ServerContext) -> None:
    """Add the test routes and a crashable child under the root."""
    context.add_router(build_router(context))
    await context.runtime.start_child(ChildSpec("fragile", Fragile, name="fragile"))


async def register_qa(context: ServerContext) -> None:
    """Register the program `qa` (a Predict of `question -> answer`) and nothing else."""
    await context.app.register("qa", Predict("question -> answer"))


async def register_stalled(context: ServerContext) -> None:
    """Say so on stderr, then never return: a start-up for a test to interrupt with Ctrl-C."""
    print("hook started", file=sys.stderr, flush=True)
    await asyncio.Event().wait()
