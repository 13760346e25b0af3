"""Tests for lmvisor.server.fast_run: the hot route answers like the documented one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.server.fast_run import parse_run_body
from lmvisor.services.app import App
from tests.server.conftest import api_client

QA = {"module": "Predict", "signature": "question -> answer"}
_JSON = {"content-type": "application/json"}


class TestParse:
    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            (b'{"inputs": {"q": 1}}', ({"q": 1}, None)),
            (b'{"inputs": {}, "timeout": 2}', ({}, 2.0)),
            (b'{"inputs": {}, "timeout": null}', ({}, None)),
            (b'{"inputs": {}, "timeout": 0}', None),
            (b'{"inputs": {}, "timeout": true}', None),
            (b'{"inputs": {}, "timeout": "5"}', None),
            (b'{"inputs": {}, "timeout": 1e400}', None),
            (b'{"inputs": {}, "extra": 1}', None),
            (b'{"inputs": [1]}', None),
            (b"[]", None),
            (b"{", None),
        ],
    )
    def test_only_well_formed_bodies_are_taken(
        self, body: bytes, expected: tuple[dict[str, Any], float | None] | None
    ) -> None:
        """A body the route would accept as is parses; anything else is left to the route."""
        assert parse_run_body(body) == expected


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class TestFastPath:
    async def test_answers_like_the_route(self, app: App) -> None:
        """A well-formed run answers the RunResult, counted under the route's template."""
        async with api_client(app) as (_, client):
            await client.post("/v1/programs", json={"id": "qa", "program": QA})
            answer = await client.post("/v1/programs/qa/run", json={"inputs": {"question": "q"}})
            metrics = (await client.get("/metrics")).text
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        assert set(answer.json()["outputs"]) == {"answer"}
        assert 'route="/v1/programs/{program_id}/run",status="200"' in metrics

    @pytest.mark.parametrize(
        ("content", "headers", "field"),
        [
            (b'{"inputs": {}, "extra": 1}', _JSON, "body.extra"),
            (b'{"inputs": {"question": "q"}}', {"content-type": "text/plain"}, "body"),
            (b'{"inputs": {}, "timeout": -1}', _JSON, "body.timeout"),
        ],
    )
    async def test_malformed_runs_get_the_routes_422(
        self, app: App, content: bytes, headers: dict[str, str], field: str
    ) -> None:
        """What the fast path does not take, the route answers, with its field paths."""
        async with api_client(app) as (_, client):
            await client.post("/v1/programs", json={"id": "qa", "program": QA})
            answer = await client.post("/v1/programs/qa/run", content=content, headers=headers)
        assert answer.status_code == 422
        assert answer.json()["error"]["field"] == field

    async def test_failures_are_typed(self, app: App) -> None:
        """An unknown id and a missing input are the same typed errors as on the route, and
        no typed error is logged as unhandled."""
        with capture_logs(app.runtime) as logs:
            async with api_client(app) as (_, client):
                await client.post("/v1/programs", json={"id": "qa", "program": QA})
                missing = await client.post("/v1/programs/nope/run", json={"inputs": {}})
                bad = await client.post("/v1/programs/qa/run", json={"inputs": {}})
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "unknown_module")
        assert (bad.status_code, bad.json()["error"]["field"]) == (422, "inputs.question")
        assert not [entry for entry in logs if entry["event"] == "http.unhandled_error"]

    async def test_a_streamed_body_over_the_limit_is_a_typed_413(self, app: App) -> None:
        """A body sent without a length that passes the limit is refused with a typed 413."""
        big = b'{"inputs": {"question": "' + b"x" * 5000 + b'"}}'
        async with api_client(app, max_body_bytes=1024) as (_, client):
            answer = await client.post(
                "/v1/programs/qa/run",
                content=_chunks(big, 512),
                headers={"content-type": "application/json"},
            )
        assert answer.status_code == 413
        assert (answer.json()["error"]["code"], answer.json()["error"]["field"]) == (
            "request_too_large",
            "body",
        )
