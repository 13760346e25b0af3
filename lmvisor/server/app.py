"""The daemon's ASGI app: FastAPI over a `ServerContext`, with the request plumbing in front.

`create_app(context)` mounts the built-in routes (`health`, `observe`, `config_update`; with an
application tree, `programs` and `optimizations`), then every router the
context was given (`ServerContext.add_router`: a user's `--app` hook), installs the typed
error bodies (`http_errors`), and documents the cross-cutting headers and the
bearer scheme in the served OpenAPI document (`/openapi.json`, browsable at `/docs`).

The request plumbing (`middleware`: correlation id, access log and metrics,
auth, body limit, deadline; innermost, the hot route's `fast_run`) runs in
front of FastAPI's own stack rather than inside it: an HTTP request reaches
FastAPI (its telemetry check, its error and body-limit middleware, routing)
only when the fast path passes it on, so a run costs none of that. FastAPI's
last-resort handler answers with the same typed 500 body as the plumbing.
"""

from __future__ import annotations

from typing import Any, Final, final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Receive, Scope, Send

from lmvisor.runtime.correlation import CORRELATION_ID_PATTERN
from lmvisor.server import config_update, health, observe
from lmvisor.server.about import version_info
from lmvisor.server.auth import TokenSet
from lmvisor.server.context import ServerContext
from lmvisor.server.fast_run import RunFastPath
from lmvisor.server.http_errors import ERROR_RESPONSES, install_error_handlers
from lmvisor.server.middleware import (
    CORRELATION_HEADER,
    TIMEOUT_HEADER,
    AuthMiddleware,
    BodyLimitMiddleware,
    DeadlineMiddleware,
    RequestContextMiddleware,
)

__all__ = ["create_app"]

_DESCRIPTION: Final = (
    "lmvisor's daemon: DSPy programs on a supervised runtime. Every answer echoes "
    f"`{CORRELATION_HEADER}`; `{TIMEOUT_HEADER}` sets a request's deadline in seconds; "
    'every error has the body `{"error": {"code", "message", "field"}}`.'
)
_METHODS: Final = ("get", "put", "post", "delete", "patch", "head", "options")
_RUN_PATH: Final = "/v1/programs/{program_id}/run"


def create_app(context: ServerContext) -> FastAPI:
    """Build the ASGI app serving `context` (see the module docstring).

    Build one app per context: the HTTP metric families are registered in the
    context's runtime registry.
    """
    app = _DaemonApp(
        title="lmvisor",
        version=version_info().lmvisor,
        description=_DESCRIPTION,
        redoc_url=None,
    )
    app.state.lmvisor = context
    install_error_handlers(app)
    routers = [health.router, observe.router, config_update.router]
    inner: ASGIApp = app.call_fastapi
    if context.has_app:
        from lmvisor.server import optimizations, programs

        routers += [programs.router, optimizations.router]
        run_route = next(r for r in programs.router.routes if getattr(r, "path", "") == _RUN_PATH)
        inner = RunFastPath(inner, context=context, route=run_route, run=programs.execute_run)
    # Any route can answer these (headers, auth, body limit, deadline): document them on all.
    for router in (*routers, *context.routers):
        app.include_router(router, responses=ERROR_RESPONSES)
    tokens = TokenSet.from_config(context.server)
    app.front = _plumbing(inner, context, tokens)
    _document(app, context, tokens)
    return app


def _plumbing(inner: ASGIApp, context: ServerContext, tokens: TokenSet) -> ASGIApp:
    """`inner` behind the request plumbing (`middleware`), outermost last."""
    server = context.server
    inner = DeadlineMiddleware(
        inner, default=server.request_timeout, maximum=server.max_request_timeout
    )
    inner = BodyLimitMiddleware(inner, limit=server.max_body_bytes)
    if tokens.enabled:  # without tokens every request passes: no layer to pass through
        inner = AuthMiddleware(inner, tokens=tokens, open_paths=server.open_paths)
    return RequestContextMiddleware(
        inner,
        access_log=server.access_log,
        metrics=context.http_metrics,
        draining=context.draining,
    )


@final
class _DaemonApp(FastAPI):
    """FastAPI behind lmvisor's request plumbing (`front`), for every HTTP request."""

    front: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def call_fastapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI's own handling of a request (the plumbing's innermost app)."""
        await super().__call__(scope, receive, send)


def _document(app: FastAPI, context: ServerContext, tokens: TokenSet) -> None:
    """Add the shared headers (and, with auth on, the bearer scheme) to the OpenAPI document."""
    server = context.server

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        headers = _header_parameters(server.max_request_timeout)
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                if method not in _METHODS:
                    continue
                operation.setdefault("parameters", []).extend(headers)
                # An open /v1/config opens its read only: the write checks the token itself.
                guarded = (method, path) == ("patch", "/v1/config")
                if tokens.enabled and path in server.open_paths and not guarded:
                    operation["security"] = []
        if tokens.enabled:
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {})["bearer"] = {
                "type": "http",
                "scheme": "bearer",
            }
            schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _header_parameters(maximum: float) -> list[dict[str, Any]]:
    return [
        {
            "name": CORRELATION_HEADER,
            "in": "header",
            "required": False,
            "description": "Correlation id for this request (echoed; generated when absent).",
            "schema": {"type": "string", "pattern": CORRELATION_ID_PATTERN},
        },
        {
            "name": TIMEOUT_HEADER,
            "in": "header",
            "required": False,
            "description": "Deadline in seconds for everything this request starts.",
            "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": maximum},
        },
    ]
