"""A small synchronous client for a running daemon: what the CLI uses when given `--url`.

Every call raises `DaemonUnreachable` when nothing answers and `DaemonRefused`
(carrying the status and the typed body's code, message and field) when the
daemon answers an error. `follow_events` reads the SSE stream of
`/v1/events?follow=true` until the daemon ends it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, final

import httpx

from lmvisor.providers.sse import SSEDecoder
from lmvisor.server.errors import DaemonRefused, DaemonUnreachable

__all__ = ["DaemonClient"]


@final
class DaemonClient:
    """Calls to the daemon at `url`, with `token` as the bearer token when given.

    Args:
        url: the daemon's base URL (`http://127.0.0.1:8750`).
        token: the bearer token (None: send none).
        timeout: seconds for each request (a followed stream waits without limit
            between events; the daemon heartbeats it).
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

    def events(self, **filters: Any) -> list[dict[str, Any]]:
        """`GET /v1/events` with `correlation_id`, `type` (list), `since`, `limit` filters."""
        body = self._get("/v1/events", params=_params(filters))
        events: list[dict[str, Any]] = body["events"]
        return events

    def follow_events(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Yield each event of `GET /v1/events?follow=true` (and `lagged` notices) until it ends.

        Yields dicts with `event` (the SSE event name: `event` or `lagged`) and
        `data` (the parsed JSON data).
        """
        params = {**_params(filters), "follow": "true"}
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        try:
            with self._http.stream("GET", "/v1/events", params=params, timeout=timeout) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    raise _refused(answer)
                yield from _decode(answer.iter_bytes())
        except httpx.TransportError as exc:
            raise DaemonUnreachable(url=self.url, problem=_problem(exc)) from exc

    def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            answer = self._http.get(path, params=params)
        except httpx.TransportError as exc:
            raise DaemonUnreachable(url=self.url, problem=_problem(exc)) from exc
        if answer.status_code >= 400:
            raise _refused(answer)
        body: dict[str, Any] = answer.json()
        return body

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _decode(chunks: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    decoder = SSEDecoder()
    for chunk in chunks:
        for event in decoder.feed(chunk):
            data = json.loads(event.data) if event.data else {}
            if event.event == "end":
                return
            yield {"event": event.event, "data": data}


def _params(filters: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in filters.items() if value not in (None, [], ())}


def _problem(exc: httpx.TransportError) -> str:
    return str(exc) or type(exc).__name__


def _refused(answer: httpx.Response) -> DaemonRefused:
    try:
        error = answer.json()["error"]
        return DaemonRefused(
            status=answer.status_code,
            error_code=str(error["code"]),
            message=str(error["message"]),
            field=error.get("field"),
        )
    except (ValueError, KeyError, TypeError):
        reason = answer.reason_phrase or "error"
        return DaemonRefused(status=answer.status_code, error_code="http_error", message=reason)
