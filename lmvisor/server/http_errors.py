"""The one place an error becomes an HTTP answer: its status code and the typed error body.

Every failure the API reports has the same body::

    {"error": {"code": "...", "message": "...", "field": "query.limit" | null,
               "correlation_id": "..."},
     "errors": [{"field": "...", "message": "..."}]}      # validation only

`STATUS_BY_ERROR` maps error classes (by dotted name) to status codes; the most
specific class in an error's MRO wins, so a new error type needs one line here (phase B adds
the services' and optimizers' "not found" errors). Bad input is always a 4xx;
an lmvisor error with no entry is a 503 when retryable, else a 500; anything
else is a 500 whose body says nothing about the cause (the log line has it).
Messages pass the runtime's redactor, so no secret reaches a body.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from lmvisor._redaction import clipped
from lmvisor.config.errors import ConfigError
from lmvisor.runtime.correlation import current_correlation_id
from lmvisor.runtime.errors import LmvisorError, RetryExhausted
from lmvisor.server.errors import Unauthorized
from lmvisor.server.responses import utf8_safe

__all__ = [
    "ERROR_RESPONSES",
    "STATUS_BY_ERROR",
    "ErrorBody",
    "ErrorDetail",
    "FieldProblem",
    "error_body",
    "error_payload",
    "error_response",
    "install_error_handlers",
    "status_for",
    "validation_response",
]

STATUS_BY_ERROR: Final[Mapping[str, int]] = {
    # the caller's input
    "lmvisor.server.errors.RequestError": 400,
    "lmvisor.server.errors.Unauthorized": 401,
    "lmvisor.server.errors.RequestTooLarge": 413,
    "lmvisor.server.errors.BodyTimeout": 408,
    "lmvisor.server.errors.HeaderTimeout": 408,
    "lmvisor.server.errors.HeadersTooLarge": 431,
    # the client went away: nobody reads this answer; logged and counted as nginx's 499
    "lmvisor.server.errors.ClientDisconnected": 499,
    "lmvisor.server.errors.NotAllowed": 403,
    "lmvisor.server.errors.InvalidInput": 422,
    "lmvisor.config.errors.ConfigError": 422,
    "lmvisor.programs.spec.ProgramSpecError": 422,
    "lmvisor.programs.errors.SignatureError": 422,
    "lmvisor.programs.errors.StateError": 422,
    "lmvisor.providers.errors.ContextWindowExceeded": 422,
    "lmvisor.services.errors.UnknownProvider": 422,
    "lmvisor.services.errors.ServiceInputError": 422,
    "lmvisor.services.errors.OptimizationSpecError": 422,
    "lmvisor.optimizers.errors.OptimizerSettingsError": 422,
    "lmvisor.optimizers.errors.MetricError": 422,
    # what the caller names does not exist, or is in the wrong state for the request
    "lmvisor.services.errors.UnknownModule": 404,
    "lmvisor.services.errors.UnknownJob": 404,
    "lmvisor.services.errors.CacheMiss": 404,
    "lmvisor.services.errors.ModuleAlreadyRegistered": 409,
    "lmvisor.services.errors.NoPreviousVersion": 409,
    "lmvisor.services.errors.VersionMoved": 409,
    "lmvisor.services.errors.JobNotFinished": 409,
    "lmvisor.services.errors.JobRunsElsewhere": 409,
    # the daemon is busy, restarting or out of budget: retry later
    "lmvisor.server.errors.Draining": 503,
    "lmvisor.runtime.errors.RateLimited": 429,
    "lmvisor.runtime.errors.CircuitOpen": 503,
    "lmvisor.runtime.errors.BulkheadFull": 503,
    "lmvisor.runtime.errors.MailboxFull": 503,
    "lmvisor.runtime.errors.ActorExited": 503,
    "lmvisor.runtime.errors.NameNotRegistered": 503,
    "lmvisor.runtime.errors.RuntimeClosed": 503,
    "lmvisor.services.errors.AppClosed": 503,
    "lmvisor.services.errors.BudgetExceeded": 503,
    "lmvisor.services.errors.NoDeploymentAvailable": 503,
    "lmvisor.services.errors.StoreUnavailable": 503,
    "lmvisor.programs.errors.LMNotConfigured": 503,
    "lmvisor.providers.errors.RateLimitError": 503,
    "lmvisor.providers.errors.OverloadedError": 503,
    # the call ran out of time
    "lmvisor.runtime.errors.DeadlineExceeded": 504,
    "lmvisor.runtime.errors.CallTimeout": 504,
    "lmvisor.providers.errors.ProviderTimeout": 504,
    # the daemon's own HTTP client would not build the vendor request (its provider setup)
    "lmvisor.providers.errors.RequestBuildError": 500,
    # the LM vendor failed or answered something unusable
    "lmvisor.providers.errors.ProviderError": 502,
    "lmvisor.programs.errors.AdapterParseError": 502,
    "lmvisor.services.errors.AllStrategiesFailed": 502,
    "lmvisor.runtime.errors.RetryExhausted": 502,
}
"""Error class (by dotted name) -> HTTP status; the most specific class in an error's MRO wins.

Names rather than classes: mapping an error must not import every layer (the
providers alone cost a third of a second at start-up). A test checks that
every name resolves to an exception class.
"""

_CODE_BY_STATUS: Final[Mapping[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "body_timeout",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}
_INTERNAL: Final = "internal server error"
_MAX_MESSAGE: Final = 2000
"""The most characters of an error message a body carries: one quoting a huge input stays small."""


@final
class FieldProblem(BaseModel):
    """One invalid part of a request: its dotted path and what is wrong with it."""

    field: str
    message: str


@final
class ErrorDetail(BaseModel):
    """What failed: a stable `code`, a readable `message`, the `field` to fix if any."""

    code: str
    message: str
    field: str | None = None
    correlation_id: str | None = None


@final
class ErrorBody(BaseModel):
    """The body of every error answer; `errors` lists each problem of a validation failure."""

    error: ErrorDetail
    errors: list[FieldProblem] | None = None


ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Malformed request (a header, a query value or the JSON body)."),
        (401, "Missing or unknown bearer token (when authentication is on)."),
        (408, "The request body did not arrive within server.body_timeout."),
        (413, "The request body is larger than server.max_body_bytes."),
        (422, "A value failed validation; `errors` lists each field."),
        (503, "The daemon is draining or a service is restarting; retry."),
        (504, "The request's deadline (X-Request-Timeout) passed."),
    )
}
"""The error answers every route can give, for the OpenAPI document."""


def status_for(exc: BaseException) -> int:
    """The HTTP status for `exc`: its most specific entry in `STATUS_BY_ERROR`.

    Retries that gave up answer as their last attempt's failure did when that is an
    upstream status (a timeout stays a 504, a vendor's overload a 503), else 502. An
    `LmvisorError` (or `ConfigError`) with no entry is 503 when retryable, else 500;
    any other exception is 500.
    """
    if isinstance(exc, RetryExhausted) and isinstance(exc.last_error, BaseException):
        last = status_for(exc.last_error)
        return last if last in (429, 502, 503, 504) else 502
    for cls in type(exc).__mro__:
        status = STATUS_BY_ERROR.get(f"{cls.__module__}.{cls.__qualname__}")
        if status is not None:
            return status
    if isinstance(exc, LmvisorError):
        return 503 if exc.retryable else 500
    return 500


def error_body(
    code: str,
    message: str,
    *,
    field: str | None = None,
    problems: Sequence[FieldProblem] | None = None,
    correlation_id: str | None = None,
) -> dict[str, Any]:
    """The JSON-ready error body (see the module docstring)."""
    body: dict[str, Any] = {
        "error": {
            "code": code,
            "message": utf8_safe(clipped(message, _MAX_MESSAGE)),
            "field": None if field is None else utf8_safe(field),
            "correlation_id": correlation_id or current_correlation_id(),
        }
    }
    if problems is not None:
        body["errors"] = [_problem(problem) for problem in problems]
    return body


def _problem(problem: FieldProblem) -> dict[str, str]:
    return {"field": utf8_safe(problem.field), "message": utf8_safe(problem.message)}


def error_payload(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and typed body for `exc` (a non-lmvisor exception: a 500 naming nothing)."""
    if isinstance(exc, LmvisorError | ConfigError):
        view = exc.to_dict()
        return status_for(exc), error_body(exc.code, view["message"], field=_field_of(exc))
    return 500, error_body("internal_error", _INTERNAL)


def error_response(exc: BaseException) -> Response:
    """The answer for `exc`: its status, its typed body and any `Retry-After` it implies.

    A non-lmvisor exception is a 500 that names nothing about its cause.
    """
    status, body = error_payload(exc)
    headers: dict[str, str] = {}
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int | float) and math.isfinite(retry_after):
        headers["Retry-After"] = str(max(0, math.ceil(retry_after)))
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers)


def validation_response(exc: RequestValidationError) -> Response:
    """422 listing every invalid field by dotted path; a body that is not JSON is a 400."""
    problems: list[FieldProblem] = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            message = f"body is not valid JSON: {error.get('msg', 'invalid JSON')}"
            return JSONResponse(error_body("invalid_json", message, field="body"), 400)
        loc = [str(part) for part in error.get("loc", ())]
        problems.append(FieldProblem(field=".".join(loc), message=str(error.get("msg", ""))))
    first = problems[0] if problems else FieldProblem(field="request", message="invalid")
    message = first.message if len(problems) <= 1 else f"{first.message} (+{len(problems) - 1})"
    body = error_body("validation_error", f"{first.field}: {message}", field=first.field)
    body["errors"] = [_problem(problem) for problem in problems]
    return JSONResponse(body, status_code=422)


def _http_exception_response(exc: HTTPException) -> Response:
    status = exc.status_code
    code = _CODE_BY_STATUS.get(status, f"http_{status}")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    field = "body" if status in (408, 413) or "parsing the body" in message else None
    headers = dict(exc.headers) if exc.headers else None
    return JSONResponse(error_body(code, message, field=field), status, headers=headers)


def _field_of(exc: LmvisorError | ConfigError) -> str | None:
    if isinstance(exc, ConfigError):
        return exc.paths[0] if exc.paths else None
    field = getattr(exc, "field", None)
    return field if isinstance(field, str) else None


def install_error_handlers(app: FastAPI) -> None:
    """Route FastAPI's and lmvisor's errors to typed bodies, a last-resort 500 included."""

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return validation_response(exc)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _http_exception_response(exc)

    async def on_error(request: Request, exc: Exception) -> Response:
        return error_response(exc)

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(LmvisorError, on_error)
    app.add_exception_handler(ConfigError, on_error)
    # FastAPI's last resort (its ServerErrorMiddleware) answers with the typed 500 too;
    # the request plumbing in front of it still logs the exception.
    app.add_exception_handler(Exception, on_error)
