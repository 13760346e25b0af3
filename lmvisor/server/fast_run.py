"""The hot route, `POST /v1/programs/{id}/run`, answered without FastAPI's per-request machinery.

Every run pays for routing past the other routes, dependency solving and a
pydantic model of the body; at a thousand runs a second that is a sizable share
of the daemon's event-loop time. `RunFastPath` sits innermost, under the request
plumbing (`middleware`: correlation id, auth, body limit, deadline), and answers
a well-formed run itself: a JSON object holding `inputs` (an object) and at most
a positive `timeout`. It runs it exactly as the documented route does
(`programs.execute_run`) and lets failures rise to `RequestContextMiddleware`,
which renders them with the same typed bodies.

Anything else (another path or method, another content type, a body of another
shape) goes on to the FastAPI route with the body replayed, so every error a
malformed run gets is the route's canonical 422, and the OpenAPI document stays
the single description of the route.

A run nobody waits for is stopped: the request's task is left in its scope for the
HTTP protocol (`http_protocol.CANCEL_ON_DISCONNECT`), which cancels it when the
client disconnects before the answer, on this path and on the route's alike.
Cancelling the request cancels the execution and the LM call under it
(`Modules.execute`); the cancellation becomes `ClientDisconnected`, which the
request plumbing logs and counts as a 499 (no one reads the answer).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeAlias, final

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lmvisor.server.context import ServerContext
from lmvisor.server.errors import BodyTimeout, ClientDisconnected, RequestTooLarge
from lmvisor.server.http_protocol import BODY_LATE, CANCEL_ON_DISCONNECT, CLIENT_GONE
from lmvisor.server.middleware import request_headers
from lmvisor.server.responses import dump_json
from lmvisor.services.program_id import PROGRAM_ID_PATTERN

__all__ = ["RunExecutor", "RunFastPath", "parse_run_body"]

_PATH: Final = re.compile(f"^/v1/programs/({PROGRAM_ID_PATTERN[1:-1]})/run$")
_JSON_TYPES: Final = (b"application/json", b"application/json; charset=utf-8")
_CONTENT_TYPE: Final = (b"content-type", b"application/json")

RunExecutor: TypeAlias = Callable[
    [ServerContext, str, dict[str, Any], float | None], Awaitable[dict[str, Any]]
]
"""Runs one program as the route does: `programs.execute_run`."""


def parse_run_body(body: bytes) -> tuple[dict[str, Any], float | None] | None:
    """`(inputs, timeout)` of a well-formed run body, else None (the route then answers).

    Well-formed: a JSON object with an `inputs` object and, at most, a `timeout`
    that is a finite number > 0 (or null).
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), dict):
        return None
    if len(data) > 2 or (len(data) == 2 and "timeout" not in data):
        return None
    timeout = data.get("timeout")
    if timeout is None:
        return data["inputs"], None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        return None
    if not math.isfinite(timeout) or timeout <= 0:
        return None
    return data["inputs"], float(timeout)


@final
class RunFastPath:
    """Answer well-formed runs directly; pass everything else on (see the module docstring).

    Args:
        app: the FastAPI app below.
        context: what the daemon serves.
        route: the documented route, set as `scope["route"]` so metrics and logs name it.
        run: runs the program (`programs.execute_run`, which the route calls too).
    """

    def __init__(
        self, app: ASGIApp, *, context: ServerContext, route: Any, run: RunExecutor
    ) -> None:
        self.app = app
        self.context = context
        self.route = route
        self.run = run
        self._limit = context.server.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _PATH.match(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        task = scope[CANCEL_ON_DISCONNECT] = asyncio.current_task()
        try:  # inline, not a helper coroutine: one frame fewer on every resumption of a run
            if _content_type(scope) not in _JSON_TYPES:
                await self.app(scope, receive, send)
                return
            body = await _read(scope, receive, self._limit)
            parsed = parse_run_body(body)
            if parsed is None:
                await self.app(scope, _replay(body, receive), send)
                return
            scope["route"] = self.route
            content = dump_json(await self.run(self.context, match.group(1), *parsed))
            headers = [_CONTENT_TYPE, (b"content-length", b"%d" % len(content))]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": content})
        except asyncio.CancelledError:
            # Ours (the client went away) and no other pending: a typed outcome, not a cancel.
            if task is None or not scope.get(CLIENT_GONE) or task.uncancel() > 0:
                raise
            raise ClientDisconnected(operation=f"POST {scope['path']}") from None
        finally:
            scope[CANCEL_ON_DISCONNECT] = None


def _content_type(scope: Scope) -> bytes | None:
    value = request_headers(scope).content_type
    return None if value is None else bytes(value).lower()


async def _read(scope: Scope, receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        try:
            message = await receive()
        except HTTPException as exc:
            # The body limit's receive refuses an oversized or late body this way (see middleware).
            if exc.status_code == 413:
                raise RequestTooLarge(limit=limit) from None
            if exc.status_code == 408:
                raise BodyTimeout(seconds=scope[BODY_LATE]) from None
            raise
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands over `body` once, then what the client sends next (a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
