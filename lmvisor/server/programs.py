"""Program routes: register, list, describe, run, stream, hot-swap, roll back, unregister.

- `POST /v1/programs`: register a program spec (a saved program goes in its
  `state`) under an id, with optional options (LM, fallbacks) -> 201.
- `GET /v1/programs`, `GET /v1/programs/{id}` (with the current spec, demos
  included), `DELETE /v1/programs/{id}` -> 204.
- `POST /v1/programs/{id}/run`: inputs -> outputs, usage, cost, the cached flag
  and the correlation id. The deadline is the sooner of `X-Request-Timeout`
  and the body's `timeout`, else `modules.timeout`.
- `POST /v1/programs/{id}/stream`: the same run as SSE (`lmvisor.server.program_stream`).
- `PUT /v1/programs/{id}/version`: hot-swap a new spec or new state in; runs
  in flight finish on their version. `POST /v1/programs/{id}/rollback`: back to
  the version current before.

Every failure is typed (see `http_errors`): a malformed spec names its field
under `program.` (or `options.fallback.`), inputs that do not fit the program
are a 422 `invalid_input` naming `inputs.<field>`, an unknown id is a 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path
from starlette.responses import Response

from lmvisor.programs.spec import ProgramSpecError, build_program
from lmvisor.runtime.errors import LmvisorError
from lmvisor.server.context import ServerContext, server_context
from lmvisor.server.errors import InvalidInput
from lmvisor.server.program_stream import stream_run
from lmvisor.server.program_views import (
    ProgramList,
    ProgramView,
    RegisterProgram,
    RunRequest,
    RunResult,
    SwapRequest,
    VersionChange,
    invalid_input,
    program_view,
    run_view,
)
from lmvisor.server.responses import JSONAnswer
from lmvisor.server.sse import SSE_MEDIA_TYPE, sse_response
from lmvisor.services.module_options import parse_module_options
from lmvisor.services.modules import DEFAULT_TIMEOUT
from lmvisor.services.program_id import PROGRAM_ID_PATTERN

__all__ = [
    "delete_program",
    "execute_run",
    "get_program",
    "list_programs",
    "register_program",
    "rollback_program",
    "router",
    "run_program",
    "stream_program",
    "swap_program",
]

router = APIRouter(prefix="/v1/programs", tags=["programs"])
_Context = Annotated[ServerContext, Depends(server_context)]
_ProgramId = Annotated[
    str,
    Path(pattern=PROGRAM_ID_PATTERN, description="A registered program's id.", examples=["qa"]),
]
_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    404: {"description": "No program is registered under this id."},
    409: {"description": "The id is taken, or no earlier version is kept."},
    502: {"description": "The LM vendor failed or answered something unusable."},
}


@router.post(
    "",
    status_code=201,
    response_model=ProgramView,
    summary="Register a program",
    responses={409: _ERRORS[409]},
)
async def register_program(body: RegisterProgram, context: _Context) -> Response:
    """Register `program` (a spec; a saved program in its `state`) as the first version of
    `id`: 1, or after an unregister of `id`, the number after its last one."""
    spec = _checked_spec(body.program.to_spec(), "program", context)
    _check_options(body.options)
    info = await context.app.register(body.id, spec, options=body.options)
    headers = {"Location": f"/v1/programs/{info.module_id}"}
    return JSONAnswer(program_view(info), status_code=201, headers=headers)


@router.get("", response_model=ProgramList, summary="Registered programs")
async def list_programs(context: _Context) -> Response:
    """Every registered program, by id."""
    views = [program_view(info) for info in await context.app.list_modules()]
    return JSONAnswer({"programs": views, "count": len(views)})


@router.get(
    "/{program_id}", response_model=ProgramView, summary="A program", responses={404: _ERRORS[404]}
)
async def get_program(program_id: _ProgramId, context: _Context) -> Response:
    """The program's current version, versions kept, predictors and spec (demos included)."""
    app = context.app
    info = await app.describe(program_id)
    return JSONAnswer(program_view(info, await app.get(program_id, version=info.version)))


@router.delete(
    "/{program_id}", status_code=204, summary="Unregister a program", responses={404: _ERRORS[404]}
)
async def delete_program(program_id: _ProgramId, context: _Context) -> Response:
    """Forget the program and its versions; runs already in flight finish."""
    await context.app.unregister(program_id)
    return Response(status_code=204)


@router.post(
    "/{program_id}/run",
    response_model=RunResult,
    summary="Run a program",
    responses={404: _ERRORS[404], 502: _ERRORS[502]},
)
async def run_program(program_id: _ProgramId, body: RunRequest, context: _Context) -> Response:
    """Run the current version on `inputs`: outputs, usage, cost, cached flag, correlation id."""
    return JSONAnswer(await execute_run(context, program_id, body.inputs, body.timeout))


async def execute_run(
    context: ServerContext,
    program_id: str,
    inputs: dict[str, Any],
    timeout: float | None,  # noqa: ASYNC109 (the body's deadline, passed on)
) -> dict[str, Any]:
    """Run a program as `/run` does (`fast_run` shares it); the `RunResult` data.

    Raises:
        InvalidInput: `timeout` is above `server.max_request_timeout`, or the program
            refused the inputs.
        UnknownModule, DeadlineExceeded, LmvisorError: the run failed.
    """
    seconds = _timeout(timeout, context)
    try:
        execution = await context.app.run(program_id, inputs, timeout=seconds)
    except LmvisorError:
        raise
    except (ValueError, TypeError) as exc:
        # A program's complaint about its inputs (a plain ValueError/TypeError) is a 422.
        raise invalid_input(exc) from exc
    return run_view(execution)


@router.post(
    "/{program_id}/stream",
    summary="Run a program, streamed",
    response_class=Response,
    responses={
        200: {
            "content": {SSE_MEDIA_TYPE: {}},
            "description": "`chunk` events (field text as it arrives), then `prediction` (the"
            " run's result, as `/run` answers it) or `error` (a typed error body), then `end`.",
        },
        404: _ERRORS[404],
    },
)
async def stream_program(program_id: _ProgramId, body: RunRequest, context: _Context) -> Response:
    """Run the current version on `inputs`, streaming output fields as SSE as they arrive."""
    app = context.app
    await app.describe(program_id)  # an unknown id is a 404 before the stream starts
    timeout = _timeout(body.timeout, context)
    return sse_response(stream_run(app, program_id, body.inputs, timeout=timeout), context)


@router.put(
    "/{program_id}/version",
    response_model=VersionChange,
    summary="Hot-swap a new version in",
    responses={404: _ERRORS[404], 409: _ERRORS[409]},
)
async def swap_program(program_id: _ProgramId, body: SwapRequest, context: _Context) -> Response:
    """Install a new version (a whole `program` spec, or new `state`); runs in flight finish."""
    if (body.program is None) == (body.state is None):
        raise InvalidInput(field="program", problem="give a program spec or a state, not both")
    spec = None
    if body.program is not None:
        spec = _checked_spec(body.program.to_spec(), "program", context)
    # `previous` from the swap itself: read before it, a concurrent swap could come between.
    change = await context.app.swap_change(program_id, spec, state=body.state)
    return JSONAnswer(
        {"module_id": program_id, "version": change.version, "previous": change.previous}
    )


@router.post(
    "/{program_id}/rollback",
    response_model=VersionChange,
    summary="Roll back to the previous version",
    responses={404: _ERRORS[404], 409: _ERRORS[409]},
)
async def rollback_program(program_id: _ProgramId, context: _Context) -> Response:
    """Make the version current before this one current again."""
    change = await context.app.rollback_change(program_id)
    return JSONAnswer(
        {"module_id": program_id, "version": change.version, "previous": change.previous}
    )


def _checked_spec(data: dict[str, Any], where: str, context: ServerContext) -> dict[str, Any]:
    """Build the spec here, so its errors name the body field (`program.signature`)."""
    try:
        build_program(data, lm_for=context.app.lm)
    except ProgramSpecError as exc:
        raise _moved(exc, where) from None
    return data


def _check_options(options: Mapping[str, Any] | None) -> None:
    try:
        parse_module_options(options)
    except ProgramSpecError as exc:
        raise _moved(exc, "options.fallback") from None


def _moved(exc: ProgramSpecError, where: str) -> ProgramSpecError:
    field = where if exc.field == "<root>" else f"{where}.{exc.field}"
    return ProgramSpecError(field=field, problem=exc.problem)


def _timeout(timeout: float | None, context: ServerContext) -> float | Any:
    """The body's timeout (bounded like the header's), or the configured default."""
    if timeout is None:
        return DEFAULT_TIMEOUT
    maximum = context.server.max_request_timeout
    if timeout > maximum:
        raise InvalidInput(field="timeout", problem=f"must be at most {maximum:g} seconds")
    return timeout
