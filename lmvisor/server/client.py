"""A small synchronous client for a running daemon: what the CLI uses when given `--url`.

Every call raises `DaemonUnreachable` when nothing answers, `DaemonRefused`
(carrying the status and the typed body's code, message and field) when the
daemon answers an error, and `NotADaemon` when what answers is not an lmvisor
daemon (an HTML page, a 200 that is not a JSON object or lacks the
`X-Correlation-ID` header every daemon answer carries, an error without
lmvisor's error body). Ids are sent as one escaped path segment each: an id
holding `/`, `?` or `..` names no other endpoint. `follow_events` and
`follow_optimization` read SSE streams (`/v1/events?follow=true`,
`/v1/optimizations/{id}/events`) until the daemon ends them. The daemon heartbeats an
idle stream and states the interval in the `X-SSE-Heartbeat` header: a stream that then
brings nothing for `SILENT_HEARTBEATS` intervals raises `DaemonSilent` rather than wait
for good (a stream from a daemon that states no interval waits without limit).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any, Final, final
from urllib.parse import quote

import httpx

from lmvisor.providers.sse import SSEDecoder
from lmvisor.server.errors import DaemonRefused, DaemonSilent, DaemonUnreachable, NotADaemon

__all__ = ["SILENT_HEARTBEATS", "DaemonClient"]

SILENT_HEARTBEATS: Final = 3
"""Heartbeat intervals a followed stream may bring nothing before `DaemonSilent`."""
# `lmvisor.server.sse.HEARTBEAT_HEADER`, not imported: the CLI need not load starlette.
_HEARTBEAT_HEADER: Final = "x-sse-heartbeat"
_LONGEST_HEARTBEAT: Final = 86_400.0

# How long past a run's own timeout its answer may take (the daemon answers a run it
# timed out at once; a host that accepts and never answers must not hang `run` forever).
_ANSWER_GRACE: Final = 30.0
_CORRELATION_HEADER: Final = "x-correlation-id"


@final
class DaemonClient:
    """Calls to the daemon at `url`, with `token` as the bearer token when given.

    Args:
        url: the daemon's base URL (`http://127.0.0.1:8750`).
        token: the bearer token (None: send none).
        timeout: seconds for each request (a followed stream waits between events up to
            `SILENT_HEARTBEATS` of the heartbeat interval the daemon states).
        transport: an httpx transport (tests pass one).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def health(self) -> dict[str, Any]:
        """`GET /healthz`."""
        return self._get("/healthz")

    def tree(self) -> dict[str, Any]:
        """`GET /v1/tree`: the live supervision tree."""
        return self._get("/v1/tree")

    def config(self) -> dict[str, Any]:
        """`GET /v1/config`: the daemon's configuration, secrets masked."""
        return self._get("/v1/config")

    def setting(self, path: str) -> Any:
        """`GET /v1/config?path=`: the setting at a dotted path (any JSON), secrets masked."""
        request = "GET /v1/config"
        try:
            answer = self._http.get("/v1/config", params={"path": path})
        except httpx.TransportError as exc:
            raise DaemonUnreachable(url=self.url, problem=_problem(exc)) from exc
        if answer.status_code >= 400:
            raise self._refused(answer, request)
        self._check_daemon(answer, request)
        try:
            return answer.json()
        except ValueError:
            raise NotADaemon(url=self.url, request=request, problem=_shape(answer)) from None

    def update_config(self, changes: list[dict[str, Any]]) -> dict[str, Any]:
        """`PATCH /v1/config`: apply `changes` (`{"path", "value"}` each) as one update;
        the paths changed and the configuration now in force, secrets masked."""
        return self._send("PATCH", "/v1/config", changes)

    def events(self, **filters: Any) -> list[dict[str, Any]]:
        """`GET /v1/events` with `correlation_id`, `type` (list), `since`, `limit` filters."""
        body = self._get("/v1/events", params=_params(filters))
        events = body.get("events")
        if not isinstance(events, list):
            raise NotADaemon(url=self.url, request="GET /v1/events", problem="without `events`")
        return events

    def follow_events(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Yield each event of `GET /v1/events?follow=true` (and `lagged` notices) until it ends.

        Yields dicts with `event` (the SSE event name: `event` or `lagged`) and
        `data` (the parsed JSON data).

        Raises:
            DaemonSilent: nothing (event or heartbeat) came for `SILENT_HEARTBEATS` of the
                daemon's heartbeat intervals.
        """
        params = {**_params(filters), "follow": "true"}
        yield from self._stream("GET", "/v1/events", params=params)

    # --- programs ---------------------------------------------------------------------

    def register(
        self, program_id: str, program: Mapping[str, Any], *, options: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """`POST /v1/programs`: register a program spec under `program_id`."""
        body = {"id": program_id, "program": dict(program), "options": options}
        return self._send("POST", "/v1/programs", body)

    def program(self, program_id: str) -> dict[str, Any]:
        """`GET /v1/programs/{id}`."""
        return self._get(f"/v1/programs/{_segment(program_id)}")

    def run(
        self, program_id: str, inputs: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """`POST /v1/programs/{id}/run`: the run's outputs, usage, cost and correlation id.

        Waits for the daemon's answer as long as the run may take: `timeout` plus
        30 seconds, or without a bound when `timeout` is None (the daemon bounds
        the run by its `modules.timeout`, which the client does not know).
        """
        body = {"inputs": dict(inputs), "timeout": timeout}
        read = None if timeout is None else timeout + _ANSWER_GRACE
        bound = httpx.Timeout(self._http.timeout.connect, read=read)
        return self._send("POST", f"/v1/programs/{_segment(program_id)}/run", body, timeout=bound)

    # --- optimization jobs ------------------------------------------------------------

    def submit_optimization(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /v1/optimizations`: start a job; its status (with its `id`)."""
        return self._send("POST", "/v1/optimizations", dict(spec))

    def optimization(self, job_id: str) -> dict[str, Any]:
        """`GET /v1/optimizations/{id}`: the job's status and progress."""
        return self._get(f"/v1/optimizations/{_segment(job_id)}")

    def optimization_result(self, job_id: str) -> dict[str, Any]:
        """`GET /v1/optimizations/{id}/result`: the optimized program of a completed job."""
        return self._get(f"/v1/optimizations/{_segment(job_id)}/result")

    def cancel_optimization(self, job_id: str) -> dict[str, Any]:
        """`POST /v1/optimizations/{id}/cancel`."""
        return self._send("POST", f"/v1/optimizations/{_segment(job_id)}/cancel", None)

    def follow_optimization(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Yield the job's progress events (`status`, `trial`, `done`) until it ends."""
        yield from self._stream("GET", f"/v1/optimizations/{_segment(job_id)}/events")

    # --- plumbing ---------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            answer = self._http.get(path, params=params)
        except httpx.TransportError as exc:
            raise DaemonUnreachable(url=self.url, problem=_problem(exc)) from exc
        return self._body(answer, f"GET {path}")

    def _send(
        self, method: str, path: str, body: Any, *, timeout: httpx.Timeout | None = None
    ) -> dict[str, Any]:
        try:
            answer = self._http.request(
                method, path, json=body, timeout=timeout or self._http.timeout
            )
        except httpx.TransportError as exc:
            raise DaemonUnreachable(url=self.url, problem=_problem(exc)) from exc
        return self._body(answer, f"{method} {path}")

    def _body(self, answer: httpx.Response, request: str) -> dict[str, Any]:
        if answer.status_code >= 400:
            raise self._refused(answer, request)
        self._check_daemon(answer, request)
        if answer.status_code == 204 or not answer.content:
            return {}
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise NotADaemon(url=self.url, request=request, problem=_shape(answer))
        return body

    def _check_daemon(self, answer: httpx.Response, request: str) -> None:
        # Every daemon answer echoes the correlation id; another server's JSON object
        # would otherwise read as an empty tree or a run of `None`s.
        if _CORRELATION_HEADER not in answer.headers:
            problem = f"{answer.status_code} without the X-Correlation-ID header every answer has"
            raise NotADaemon(url=self.url, request=request, problem=problem)

    def _refused(self, answer: httpx.Response, request: str) -> DaemonRefused | NotADaemon:
        try:
            error = answer.json()["error"]
            return DaemonRefused(
                status=answer.status_code,
                error_code=str(error["code"]),
                message=str(error["message"]),
                field=error.get("field"),
            )
        except (ValueError, KeyError, TypeError):
            return NotADaemon(url=self.url, request=request, problem=_shape(answer))

    def _stream(
        self, method: str, path: str, params: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        try:
            with self._http.stream(method, path, params=params, timeout=timeout) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    raise self._refused(answer, f"{method} {path}")
                self._check_daemon(answer, f"{method} {path}")
                silence = _silence_bound(answer)
                try:
                    yield from _decode(answer.iter_bytes(), self.url, f"{method} {path}")
                except httpx.ReadTimeout as exc:
                    if silence is None:
                        raise
                    request = f"{method} {path}"
                    raise DaemonSilent(url=self.url, request=request, seconds=silence) from exc
        except httpx.TransportError as exc:
            raise DaemonUnreachable(url=self.url, problem=_problem(exc)) from exc

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _decode(chunks: Iterator[bytes], url: str, request: str) -> Iterator[dict[str, Any]]:
    decoder = SSEDecoder()
    for chunk in chunks:
        for event in decoder.feed(chunk):
            try:
                data = json.loads(event.data) if event.data else {}
            except ValueError:
                raise NotADaemon(
                    url=url, request=request, problem="an event that is not JSON"
                ) from None
            if event.event == "end":
                return
            yield {"event": event.event, "data": data}


def _silence_bound(answer: httpx.Response) -> float | None:
    """Bound each wait for the stream's next bytes by `SILENT_HEARTBEATS` of the interval
    the daemon states; that bound, or None (no usable interval: no bound)."""
    try:
        heartbeat = float(answer.headers.get(_HEARTBEAT_HEADER, "nan"))
    except ValueError:
        return None
    if not math.isfinite(heartbeat) or not 0 < heartbeat <= _LONGEST_HEARTBEAT:
        return None  # beyond a day, a bound no socket timeout takes (OverflowError)
    silence = SILENT_HEARTBEATS * heartbeat
    # httpcore takes each body read's bound from the request's `timeout` extension when
    # the body is first read: set now, after the head, it bounds every wait for bytes.
    answer.request.extensions.setdefault("timeout", {})["read"] = silence
    return silence


def _params(filters: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in filters.items() if value not in (None, [], ())}


def _problem(exc: httpx.TransportError) -> str:
    return str(exc) or type(exc).__name__


def _segment(value: str) -> str:
    """`value` as one path segment: `/`, `?`, `#` and spaces escaped; `.` and `..` (which
    a URL resolves to the parent) sent as `%2E` so they still name an id."""
    escaped = quote(value, safe="")
    return escaped.replace(".", "%2E") if escaped in (".", "..") else escaped


def _shape(answer: httpx.Response) -> str:
    """What came back, in a few words: status, reason and content type."""
    kind = answer.headers.get("content-type", "no content type").split(";")[0].strip()
    reason = f" {answer.reason_phrase}" if answer.reason_phrase else ""
    what = (
        "a body that is not a JSON object" if answer.status_code < 400 else "no lmvisor error body"
    )
    return f"{answer.status_code}{reason} with {what} ({kind[:80]})"
