"""Optimization routes: submit a job, follow its progress (JSON or SSE), fetch its result, cancel.

- `POST /v1/optimizations`: a job spec (`lmvisor.services.optimization_job`) -> 202
  with the job's status and `Location`.
- `GET /v1/optimizations`, `GET /v1/optimizations/{id}`: status and progress
  (trials done of the total, best score, seconds left).
- `GET /v1/optimizations/{id}/events`: the progress as SSE (`status`, `trial`,
  and `done` with the final status; see `optimization_progress`).
- `GET /v1/optimizations/{id}/result`: the optimized program's spec (demos and
  instructions in its `state`), once the job completed.
- `POST /v1/optimizations/{id}/cancel`: stop a running job (its checkpoint stays).

Over HTTP a job names only what the daemon allows: datasets come inline (rows,
never file paths on the daemon's disk), and the metric must be allowed
(`server.metrics` or `ServerContext.allow_metric`, else 403): a request never
makes the daemon read a file or import a module it was not told to.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, final

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from lmvisor.server.context import ServerContext, server_context
from lmvisor.server.errors import NotAllowed
from lmvisor.server.optimization_progress import job_progress, job_view
from lmvisor.server.program_views import ProgramSpecBody
from lmvisor.server.responses import JSONAnswer
from lmvisor.server.sse import SSE_MEDIA_TYPE, sse_response
from lmvisor.services.module_table import spec_of

__all__ = [
    "JobList",
    "JobSpecBody",
    "JobView",
    "cancel_optimization",
    "get_optimization",
    "list_optimizations",
    "optimization_events",
    "optimization_result",
    "router",
    "submit_optimization",
]

router = APIRouter(prefix="/v1/optimizations", tags=["optimizations"])
_Context = Annotated[ServerContext, Depends(server_context)]
_JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{1,64}$", description="A job's id.")]
_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {
    404: {"description": "No optimization job has this id."}
}
_OPTIMIZER = Literal[
    "LabeledFewShot", "BootstrapFewShot", "BootstrapFewShotWithRandomSearch", "COPRO", "MIPROv2"
]


@final
class JobSpecBody(BaseModel):
    """An optimization job (`lmvisor.services.optimization_job`), its examples inline."""

    model_config = ConfigDict(extra="forbid")

    optimizer: _OPTIMIZER
    params: dict[str, Any] | None = Field(
        default=None, description="The optimizer's settings (`auto`, `num_trials`, ...)."
    )
    program: str | ProgramSpecBody = Field(
        description="A registered program's id, or a program spec.", examples=["qa"]
    )
    trainset: list[dict[str, Any]] = Field(min_length=1, description="Examples, as objects.")
    valset: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    input_keys: list[str] = Field(min_length=1, description="Which example fields are inputs.")
    metric: str = Field(
        description="An allowed metric's import path (server.metrics).",
        examples=["myapp.metrics:exact_match"],
    )
    deploy: bool = Field(default=False, description="Hot-swap the result into `program`.")

    def to_spec(self) -> dict[str, Any]:
        """The JSON form `parse_job_spec` reads (fields left out stay out)."""
        spec = self.model_dump(mode="json", exclude_none=True)
        if isinstance(self.program, ProgramSpecBody):
            spec["program"] = self.program.to_spec()
        return spec


@final
class JobView(BaseModel):
    """A job: its optimizer, program, status, progress, best score and error if any."""

    id: str
    optimizer: str
    program: str
    status: str
    trials_done: int
    trials_total: int
    best_score: float | None
    eta: float | None
    created: float
    updated: float
    version: int | None = None
    error: dict[str, Any] | None = None


@final
class JobList(BaseModel):
    """Every job the coordinator knows, oldest first."""

    optimizations: list[JobView]
    count: int


@router.post(
    "",
    status_code=202,
    response_model=JobView,
    summary="Submit an optimization job",
    responses={403: {"description": "The job's metric is not allowed (server.metrics)."}},
)
async def submit_optimization(body: JobSpecBody, context: _Context) -> Response:
    """Start a job (optimizer, params, program id or spec, inline datasets, allowed metric)."""
    _check_metric(body.metric, context)
    app = context.app
    job_id = await app.submit_optimization(body.to_spec())
    view = job_view(await app.optimization_status(job_id))
    return JSONAnswer(view, status_code=202, headers={"Location": f"/v1/optimizations/{job_id}"})


@router.get("", response_model=JobList, summary="Optimization jobs")
async def list_optimizations(context: _Context) -> Response:
    """Every job, oldest first."""
    views = [job_view(status) for status in await context.app.list_optimizations()]
    return JSONAnswer({"optimizations": views, "count": len(views)})


@router.get("/{job_id}", response_model=JobView, summary="A job's progress", responses=_NOT_FOUND)
async def get_optimization(job_id: _JobId, context: _Context) -> Response:
    """The job's status: trials done of the total, best score so far, seconds left."""
    return JSONAnswer(job_view(await context.app.optimization_status(job_id)))


@router.get(
    "/{job_id}/events",
    summary="A job's progress, streamed",
    response_class=Response,
    responses={
        200: {
            "content": {SSE_MEDIA_TYPE: {}},
            "description": "`status`, then `trial` per scored candidate and `status` on"
            " progress, then `done` with the final status, then `end`.",
        },
        **_NOT_FOUND,
    },
)
async def optimization_events(job_id: _JobId, context: _Context) -> Response:
    """The job's progress as server-sent events until it ends."""
    app = context.app
    await app.optimization_status(job_id)  # an unknown id is a 404 before the stream starts
    return sse_response(job_progress(app, job_id), context)


@router.get(
    "/{job_id}/result",
    summary="A completed job's program",
    responses={**_NOT_FOUND, 409: {"description": "The job has not completed."}},
)
async def optimization_result(job_id: _JobId, context: _Context) -> Response:
    """The optimized program's spec (its demos and instructions in `state`)."""
    app = context.app
    status = await app.optimization_status(job_id)
    program = await app.optimization_result(job_id)
    spec = spec_of(program)
    return JSONAnswer(
        {
            "id": job_id,
            "program": status.program,
            "module_type": type(program).__name__,
            "best_score": status.best_score,
            "version": status.version,
            "spec": None if spec is None else spec.to_dict(),
            "state": program.dump_state(),
        }
    )


@router.post(
    "/{job_id}/cancel", response_model=JobView, summary="Cancel a job", responses=_NOT_FOUND
)
async def cancel_optimization(job_id: _JobId, context: _Context) -> Response:
    """Stop a running job (a finished one is left as it is); its checkpoint stays."""
    return JSONAnswer(job_view(await context.app.cancel_optimization(job_id)))


def _check_metric(metric: str, context: ServerContext) -> None:
    """Refuse a metric the daemon was not told it may import."""
    if not context.metric_allowed(metric):
        raise NotAllowed(
            field="metric",
            problem=f"{metric!r} is not an allowed metric (server.metrics, or the --app hook's"
            " context.allow_metric)",
        )
