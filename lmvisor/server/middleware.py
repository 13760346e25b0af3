"""The request plumbing every route inherits, as plain ASGI middleware (outermost first).

1. `RequestContextMiddleware`: a correlation scope per request (`X-Correlation-ID`
   in, checked, else generated; echoed on the answer), the access log line
   (written with the others of its event-loop turn: one write per turn) and
   HTTP metrics, the last-resort 500 with a typed body for an exception no
   handler took, and a typed 503 `draining` for a request cancelled because
   the drain timeout ran out.
2. `AuthMiddleware`: a known bearer token, unless authentication is off or the
   path is open.
3. `BodyLimitMiddleware`: 413 from `Content-Length` before anything runs, or as
   soon as a streamed body passes the limit; 408 when the body missed its
   deadline (`server.body_timeout`, kept by `http_protocol`, which marks the scope).
4. `DeadlineMiddleware`: `X-Request-Timeout` (or `server.request_timeout`) becomes
   the call's deadline (`lmvisor.runtime.deadline`) for everything below, and a
   504 if it passes before the answer starts. A started answer is not cut: a
   stream (`lmvisor.server.sse`) ends itself at the deadline.

Plain ASGI rather than Starlette's `BaseHTTPMiddleware`: the contextvars set here
(correlation id, deadline) reach the endpoint, and a request costs no extra task.
The headers they read are found in one pass over the request's header list
(`request_headers`), kept in the ASGI scope for every layer below. Auth, body
limit and deadline are plain functions returning the awaitable of the layer
below (or of their error answer): no coroutine frame of their own, which every
resumption of the request's task would otherwise pass through.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, final

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lmvisor.config.errors import ConfigError
from lmvisor.runtime.correlation import CORRELATION_ID_PATTERN, correlation_scope
from lmvisor.runtime.deadline import deadline
from lmvisor.runtime.errors import DeadlineExceeded, LmvisorError
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.server.auth import TokenSet
from lmvisor.server.errors import (
    BodyTimeout,
    Draining,
    InvalidHeader,
    RequestTooLarge,
    Unauthorized,
)
from lmvisor.server.http_errors import error_response
from lmvisor.server.http_metrics import HttpMetrics
from lmvisor.server.http_protocol import BODY_LATE, BODY_REFUSED

__all__ = [
    "CORRELATION_HEADER",
    "TIMEOUT_HEADER",
    "AuthMiddleware",
    "BodyLimitMiddleware",
    "DeadlineMiddleware",
    "RequestContextMiddleware",
    "RequestHeaders",
    "refusal_recorder",
    "request_headers",
]

CORRELATION_HEADER: Final = "X-Correlation-ID"
TIMEOUT_HEADER: Final = "X-Request-Timeout"

_CORRELATION_KEY: Final = CORRELATION_HEADER.lower().encode("latin-1")
_TIMEOUT_KEY: Final = TIMEOUT_HEADER.lower().encode("latin-1")
# Ids end up in logs, events and headers: keep them short and free of anything
# that could forge a log line or a header.
_CORRELATION_ID = re.compile(CORRELATION_ID_PATTERN)
_log = get_logger("lmvisor.server")
# The access log: a line per request, written per event-loop turn.
_access_log = get_logger("lmvisor.server", per_turn=True)


# Refusals the request's app answers and logs itself (see `refusal_recorder`).
_ANSWERED_BY_APP: Final = frozenset({"body_timeout", "body_too_large"})

_HEADERS_SCOPE_KEY: Final = "lmvisor.headers"
# ASGI header names arrive lowercased.
_WANTED: Final = {
    b"authorization": "authorization",
    b"content-length": "content_length",
    b"content-type": "content_type",
    _CORRELATION_KEY: "correlation_id",
    _TIMEOUT_KEY: "timeout",
}


@final
class RequestHeaders:
    """The headers the request plumbing reads (the first of each name), as raw bytes.

    Built by one pass over the ASGI header list (`request_headers`); None where a
    header is absent.
    """

    __slots__ = ("authorization", "content_length", "content_type", "correlation_id", "timeout")

    def __init__(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.authorization: bytes | None = None
        self.content_length: bytes | None = None
        self.content_type: bytes | None = None
        self.correlation_id: bytes | None = None
        self.timeout: bytes | None = None
        wanted = _WANTED
        for name, value in headers:
            field = wanted.get(name)
            if field is not None and getattr(self, field) is None:
                setattr(self, field, value)

    def __repr__(self) -> str:
        # Names only: the authorization header holds a credential.
        present = [field for field in self.__slots__ if getattr(self, field) is not None]
        return f"RequestHeaders(present={present})"


def request_headers(scope: Scope) -> RequestHeaders:
    """The plumbing's headers of the request `scope` describes, read once per request.

    The first layer to ask scans the header list and keeps the result in the scope;
    the layers below (and the hot route, `fast_run`) reuse it.
    """
    found = scope.get(_HEADERS_SCOPE_KEY)
    if found is None:
        found = scope[_HEADERS_SCOPE_KEY] = RequestHeaders(scope.get("headers", ()))
    return found


async def _send_error(exc: BaseException, scope: Scope, receive: Receive, send: Send) -> None:
    await error_response(exc)(scope, receive, send)


@final
class RequestContextMiddleware:
    """Correlation id, access log, HTTP metrics and the last-resort 500 (see the module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        access_log: bool = True,
        metrics: HttpMetrics | None = None,
        draining: asyncio.Event | None = None,
    ) -> None:
        self.app = app
        self.access_log = access_log
        self.metrics = metrics
        self.draining = draining
        # Ids for requests that bring none: unique per process (a random prefix, then a
        # count), and cheaper than a uuid4 (a system call) on every request.
        self._prefix = os.urandom(8).hex() + "-"
        self._ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = request_headers(scope).correlation_id
        text = None if raw is None else raw.decode("latin-1")
        valid = text is not None and _CORRELATION_ID.fullmatch(text) is not None
        cid = text if valid and text is not None else f"{self._prefix}{next(self._ids):x}"
        echo = (_CORRELATION_KEY, cid.encode("latin-1"))
        outcome = _Outcome()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome.status = message["status"]
                message["headers"] = [*message.get("headers", ()), echo]
            await send(message)

        started = time.perf_counter()
        if self.metrics is not None:
            self.metrics.started()
        with correlation_scope(cid, generated=not valid):
            try:
                if text is not None and not valid:
                    problem = "must be 1-128 letters, digits or '._:-'"
                    error = InvalidHeader(header=CORRELATION_HEADER, problem=problem)
                    await _send_error(error, scope, receive, send_with_id)
                else:
                    await self.app(scope, receive, send_with_id)
            except (LmvisorError, ConfigError) as exc:
                # A typed failure raised below the routes (the hot route answers outside
                # FastAPI's handlers): its typed answer, no traceback in the log.
                if outcome.status is None:
                    await _send_error(exc, scope, receive, send_with_id)
            except Exception as exc:
                _log.exception("http.unhandled_error", error=type(exc).__name__)
                if outcome.status is None:
                    await _send_error(exc, scope, receive, send_with_id)
            except asyncio.CancelledError:
                # Cut off at the end of a drain: the caller still gets a typed,
                # retryable answer rather than a dropped connection.
                if outcome.status is None and self.draining is not None and self.draining.is_set():
                    await _send_error(Draining(), scope, receive, send_with_id)
                raise
            finally:
                self._record(scope, outcome.status or 500, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None)
        if self.metrics is not None:
            self.metrics.finished(scope["method"], route, status, seconds)
        if self.access_log:
            _access_log.info(
                "http.request",
                method=scope["method"],
                path=scope["path"],
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 3),
            )


def refusal_recorder(
    metrics: HttpMetrics, *, access_log: bool = True
) -> Callable[[str, int | None, Mapping[str, Any] | None], None]:
    """What the HTTP protocol calls when it refuses a request or ends a connection itself.

    A call `(reason, status, scope)` counts `reason` (`lmvisor_http_refused_total`).
    `status` is the answer the protocol wrote (None for a connection reset because its
    answer could not be sent), `scope` the request when one was parsed. A refused head
    reached no app: it gets its access line here (`http.request`, `refused=reason`, no
    method or path). A request that reached the app has its `http.request` line from the
    app's plumbing, one per request: a malformed body or a send deadline adds an
    `http.refused` line naming it (method and path when known), and a late or overframed
    body, which the app answers itself (the body limit's 408 or 413), adds none.
    """

    def record(reason: str, status: int | None, scope: Mapping[str, Any] | None) -> None:
        metrics.refused(reason)
        if not access_log or reason in _ANSWERED_BY_APP:
            return
        if scope is None and reason != "send_timeout":
            _access_log.info(
                "http.request", method=None, path=None, route=None, status=status, refused=reason
            )
            return
        _access_log.info(
            "http.refused",
            method=None if scope is None else scope.get("method"),
            path=None if scope is None else scope.get("path"),
            status=status,
            refused=reason,
        )

    return record


@final
class _Outcome:
    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status: int | None = None


_NEVER_OPEN: Final = frozenset({("PATCH", "/v1/config")})
"""Requests that need the token even when their path is open: opening the read of the
configuration must not open its write (checked here, before the body is read)."""


@final
class AuthMiddleware:
    """Require a known bearer token on every path but `open_paths` (when any token is set);
    a settings write (`PATCH /v1/config`) needs it even when its path is open."""

    def __init__(self, app: ASGIApp, *, tokens: TokenSet, open_paths: Iterable[str]) -> None:
        self.app = app
        self.tokens = tokens
        self.open_paths = frozenset(open_paths)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "http" or not self.tokens.enabled:
            return self.app(scope, receive, send)
        path = scope["path"]
        if path in self.open_paths and (scope["method"], path) not in _NEVER_OPEN:
            return self.app(scope, receive, send)
        raw = request_headers(scope).authorization
        try:
            self.tokens.check_header(None if raw is None else raw.decode("latin-1"))
        except Unauthorized as exc:
            return _send_error(exc, scope, receive, send)
        return self.app(scope, receive, send)


@final
class BodyLimitMiddleware:
    """Refuse a request body larger than `limit` bytes with a typed 413, and one that
    missed its deadline (the scope's `BODY_LATE`, see `http_protocol`) with a typed 408."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        declared = request_headers(scope).content_length
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return _send_error(RequestTooLarge(limit=self.limit), scope, receive, send)
        return self.app(scope, _limited(scope, receive, self.limit), send)


def _limited(scope: Scope, receive: Receive, limit: int) -> Receive:
    """`receive`, refusing with a 413 once the body read so far passes `limit` bytes (or
    the protocol refused its framing), and with a 408 once it has marked the body late."""
    received = 0

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            # An HTTPException passes FastAPI's body reading untouched,
            # and its handler renders the typed 413 / 408.
            if received > limit or (message.get("more_body", False) and BODY_REFUSED in scope):
                raise HTTPException(413, str(RequestTooLarge(limit=limit)))
            if message.get("more_body", False) and (late := scope.get(BODY_LATE)) is not None:
                raise HTTPException(408, str(BodyTimeout(seconds=late)))
        return message

    return receive_limited


@final
class DeadlineMiddleware:
    """Give each request its deadline (see the module docstring).

    Args:
        default: the deadline of a request without the header (None: none).
        maximum: the most a header may ask for.
    """

    def __init__(self, app: ASGIApp, *, default: float | None, maximum: float) -> None:
        self.app = app
        self.default = default
        self.maximum = maximum

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        try:
            seconds = self._budget(request_headers(scope).timeout)
        except InvalidHeader as exc:
            return _send_error(exc, scope, receive, send)
        if seconds is None:
            return self.app(scope, receive, send)
        return self._bounded(seconds, scope, receive, send)

    def _budget(self, raw: bytes | None) -> float | None:
        if raw is None:
            return self.default
        try:
            seconds = float(raw.decode("latin-1").strip())
        except ValueError:
            problem = "must be a number of seconds"
            raise InvalidHeader(header=TIMEOUT_HEADER, problem=problem) from None
        if not math.isfinite(seconds) or seconds <= 0 or seconds > self.maximum:
            problem = f"must be a number of seconds > 0 and <= {self.maximum:g}"
            raise InvalidHeader(header=TIMEOUT_HEADER, problem=problem)
        return seconds

    async def _bounded(self, seconds: float, scope: Scope, receive: Receive, send: Send) -> None:
        started = False
        timer: asyncio.Timeout | None = None

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # A started answer is never cut mid-body: a stream ends itself at the
                # deadline (its waits see it), so the client gets a complete response.
                if timer is not None:
                    timer.reschedule(None)
            await send(message)

        try:
            with deadline(seconds):
                async with asyncio.timeout(seconds) as timer:
                    await self.app(scope, receive, send_tracking)
        except TimeoutError:
            if timer is None or not timer.expired() or started:
                raise
            operation = f"{scope['method']} {scope['path']}"
            error = DeadlineExceeded(operation=operation, budget=seconds)
            await _send_error(error, scope, receive, send)
