"""Health routes: `/healthz` (the process is up) and `/readyz` (it can serve).

`/healthz` answers 200 whenever the process can answer at all. `/readyz`
runs every readiness check (`lmvisor.server.readiness`) and answers 200 only
when all pass and the daemon is not draining; otherwise 503 with each check's
detail, so a load balancer stops sending work before shutdown.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal, final

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from starlette.responses import JSONResponse

from lmvisor.server.about import version_info
from lmvisor.server.context import ServerContext, server_context
from lmvisor.server.readiness import run_checks

__all__ = ["CheckView", "Health", "Readiness", "healthz", "readyz", "router"]

router = APIRouter(tags=["health"])
_Context = Annotated[ServerContext, Depends(server_context)]


@final
class Health(BaseModel):
    """The process is up: its version, namespace and seconds since start."""

    status: Literal["ok"]
    version: str
    namespace: str
    uptime_seconds: float


@final
class CheckView(BaseModel):
    """One readiness check's outcome."""

    ok: bool
    detail: str


@final
class Readiness(BaseModel):
    """Whether the daemon can serve, with every check's outcome."""

    status: Literal["ready", "not_ready", "draining"]
    checks: dict[str, CheckView]


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz(context: _Context) -> Health:
    """Answer 200 while the process can answer at all."""
    return Health(
        status="ok",
        version=version_info().lmvisor,
        namespace=context.runtime.namespace,
        uptime_seconds=round(time.time() - context.started_at, 3),
    )


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The daemon can serve",
    responses={503: {"model": Readiness, "description": "Not ready, or draining."}},
)
async def readyz(context: _Context) -> JSONResponse:
    """200 when every readiness check passes and the daemon is not draining, else 503."""
    results = await run_checks(context.readiness_checks)
    checks = {name: {"ok": r.ok, "detail": r.detail} for name, r in results.items()}
    if context.draining.is_set():
        status = "draining"
    else:
        status = "ready" if all(r.ok for r in results.values()) else "not_ready"
    body = {"status": status, "checks": checks}
    return JSONResponse(body, status_code=200 if status == "ready" else 503)
