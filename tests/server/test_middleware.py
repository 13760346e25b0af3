"""Tests for lmvisor.server.middleware: correlation, auth, body limit, deadline, last resort."""

from __future__ import annotations

import re

import pytest

from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.runtime import Runtime
from lmvisor.server.auth import hash_token
from lmvisor.server.middleware import BodyLimitMiddleware, DeadlineMiddleware, request_headers
from tests.server.conftest import app_client

_GENERATED = re.compile(r"^[0-9a-f]{16}-[0-9a-f]+$")
_KEY_LIKE = "sk-proj-Abc123def456ghi789jkl"


class TestCorrelation:
    async def test_given_id_is_echoed_and_in_scope(self, runtime: Runtime) -> None:
        """A valid X-Correlation-ID is echoed and is the handler's correlation id."""
        async with app_client(runtime) as (_, client):
            answer = await client.get("/test/context", headers={"X-Correlation-ID": "req-42"})
        assert answer.headers["x-correlation-id"] == "req-42"
        assert answer.json()["correlation_id"] == "req-42"

    async def test_missing_id_is_generated(self, runtime: Runtime) -> None:
        """Without the header a fresh id is generated (unique per request), echoed and used."""
        async with app_client(runtime) as (_, client):
            answer = await client.get("/test/context")
            other = await client.get("/test/context")
        cid = answer.headers["x-correlation-id"]
        assert _GENERATED.match(cid)
        assert answer.json()["correlation_id"] == cid
        assert other.headers["x-correlation-id"] not in (cid, "")

    async def test_malformed_id_is_a_typed_400(self, runtime: Runtime) -> None:
        """An id with characters that could forge a log line is refused with a 400 naming it."""
        async with app_client(runtime) as (_, client):
            answer = await client.get("/healthz", headers={"X-Correlation-ID": "a b{}"})
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["code"] == "invalid_header"
        assert error["field"] == "X-Correlation-ID"
        assert error["correlation_id"] == answer.headers["x-correlation-id"]

    async def test_error_bodies_carry_the_id(self, runtime: Runtime) -> None:
        """Every error body names the request's correlation id."""
        async with app_client(runtime) as (_, client):
            answer = await client.get("/nowhere", headers={"X-Correlation-ID": "c-9"})
        assert answer.status_code == 404
        assert answer.json()["error"] == {
            "code": "not_found",
            "message": "Not Found",
            "field": None,
            "correlation_id": "c-9",
        }


class TestRequestHeaders:
    def test_one_pass_keeps_the_first_of_each_name(self) -> None:
        """The plumbing's headers are found in one pass; the first of a repeated name wins."""
        scope = {
            "type": "http",
            "headers": [
                (b"content-type", b"application/json"),
                (b"x-correlation-id", b"first"),
                (b"x-correlation-id", b"second"),
                (b"authorization", b"Bearer t0ken"),
                (b"x-request-timeout", b"2.5"),
            ],
        }
        found = request_headers(scope)
        assert found.correlation_id == b"first"
        assert found.content_type == b"application/json"
        assert found.authorization == b"Bearer t0ken"
        assert found.timeout == b"2.5"
        assert found.content_length is None

    def test_read_once_per_request(self) -> None:
        """A second layer asking gets the same object; the header list is not scanned again."""
        scope = {"type": "http", "headers": [(b"content-length", b"12")]}
        found = request_headers(scope)
        scope["headers"] = [(b"content-length", b"99")]
        assert request_headers(scope) is found
        assert found.content_length == b"12"

    def test_repr_names_no_value(self) -> None:
        """The repr lists which headers came, never their values (a bearer token is one)."""
        found = request_headers({"type": "http", "headers": [(b"authorization", b"Bearer t0ken")]})
        assert repr(found) == "RequestHeaders(present=['authorization'])"


class TestPassThrough:
    def test_a_passing_request_costs_no_coroutine_of_its_own(self) -> None:
        """Body limit and deadline hand back the inner app's own awaitable when nothing stops it."""
        made: list[object] = []

        def inner(scope: object, receive: object, send: object) -> object:
            made.append(object())
            return made[-1]

        scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
        limit = BodyLimitMiddleware(inner, limit=10)  # type: ignore[arg-type]
        deadline = DeadlineMiddleware(inner, default=None, maximum=60.0)  # type: ignore[arg-type]
        assert limit(scope, _never, _never) is made[-1]  # type: ignore[arg-type]
        assert deadline(scope, _never, _never) is made[-1]  # type: ignore[arg-type]
        assert len(made) == 2


async def _never(*_: object) -> None:
    raise AssertionError("not called")


class TestAccessLog:
    async def test_the_line_carries_the_request_id(self, runtime: Runtime) -> None:
        """The access line names the request's id: a generated one as is, a key-like one hidden."""
        with capture_logs(runtime) as logs:
            async with app_client(runtime, access_log=True) as (_, client):
                made = await client.get("/healthz")
                given = await client.get("/healthz", headers={"X-Correlation-ID": _KEY_LIKE})
        assert given.status_code == 200
        lines = [entry for entry in logs if entry["event"] == "http.request"]
        assert len(lines) == 2
        assert lines[0]["correlation_id"] == made.headers["x-correlation-id"]
        assert _GENERATED.match(lines[0]["correlation_id"])
        assert _KEY_LIKE not in str(lines)
        assert {k: lines[0][k] for k in ("method", "path", "route", "status")} == {
            "method": "GET",
            "path": "/healthz",
            "route": "/healthz",
            "status": 200,
        }


class TestAuth:
    async def test_off_by_default_on_loopback(self, runtime: Runtime) -> None:
        """With no token configured, requests need none."""
        async with app_client(runtime) as (_, client):
            assert (await client.get("/v1/tree")).status_code == 200

    async def test_token_required_when_configured(self, runtime: Runtime) -> None:
        """With a token, a request without one gets a typed 401; with it, 200."""
        async with app_client(runtime, token="s3cret-token") as (_, client):
            refused = await client.get("/v1/tree")
            accepted = await client.get(
                "/v1/tree", headers={"Authorization": "Bearer s3cret-token"}
            )
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["error"]["code"] == "unauthorized"
        assert refused.json()["error"]["field"] == "Authorization"
        assert accepted.status_code == 200

    async def test_open_paths_need_no_token(self, runtime: Runtime) -> None:
        """/healthz is open by default and /metrics when configured; others stay closed."""
        async with app_client(
            runtime, token_sha256=[hash_token("t")], open_paths=["/healthz", "/metrics"]
        ) as (_, client):
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200
            assert (await client.get("/readyz")).status_code == 401

    async def test_wrong_token_is_refused(self, runtime: Runtime) -> None:
        """An unknown token gets 401 `unknown token`."""
        async with app_client(runtime, tokens=["a-token"]) as (_, client):
            answer = await client.get("/v1/tree", headers={"Authorization": "Bearer nope"})
        assert answer.status_code == 401
        assert answer.json()["error"]["message"] == "unknown token"


class TestBodyLimit:
    async def test_declared_length_over_limit_is_413(self, runtime: Runtime) -> None:
        """A Content-Length over the limit is refused before the handler runs."""
        async with app_client(runtime, max_body_bytes=64) as (_, client):
            answer = await client.post("/test/echo", content=b"x" * 65)
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "request_too_large"
        assert answer.json()["error"]["field"] == "body"

    async def test_streamed_body_over_limit_is_413(self, runtime: Runtime) -> None:
        """A chunked body is cut off with a typed 413 once it passes the limit."""

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(10):
                yield b'{"name": "aaaaaaaaaaaaaaaaaaaa'

        async with app_client(runtime, max_body_bytes=64) as (_, client):
            answer = await client.post("/test/echo", content=chunks())
        assert answer.status_code == 413
        assert answer.json()["error"] == {
            "code": "request_too_large",
            "message": "request body exceeds the limit of 64 bytes",
            "field": "body",
            "correlation_id": answer.headers["x-correlation-id"],
        }

    async def test_body_within_limit_is_served(self, runtime: Runtime) -> None:
        """A body under the limit reaches the handler."""
        async with app_client(runtime, max_body_bytes=64) as (_, client):
            answer = await client.post("/test/echo", json={"name": "ok"})
        assert answer.status_code == 200
        assert answer.json() == {"name": "ok", "items": []}


class TestDeadline:
    async def test_header_sets_the_deadline_below(self, runtime: Runtime) -> None:
        """X-Request-Timeout becomes the handler's deadline (time_left within the budget)."""
        async with app_client(runtime) as (_, client):
            answer = await client.get("/test/context", headers={"X-Request-Timeout": "30"})
        left = answer.json()["time_left"]
        assert 0 < left <= 30

    async def test_no_header_no_default_means_no_deadline(self, runtime: Runtime) -> None:
        """Without the header or server.request_timeout there is no deadline."""
        async with app_client(runtime) as (_, client):
            answer = await client.get("/test/context")
        assert answer.json()["time_left"] is None

    async def test_configured_default_applies(self, runtime: Runtime) -> None:
        """server.request_timeout is the deadline of a request without the header."""
        async with app_client(runtime, request_timeout=12.0) as (_, client):
            answer = await client.get("/test/context")
        assert 0 < answer.json()["time_left"] <= 12.0

    @pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "3601"])
    async def test_bad_values_are_a_typed_400(self, runtime: Runtime, value: str) -> None:
        """A non-number, non-positive, infinite or over-maximum timeout is a 400 naming it."""
        async with app_client(runtime) as (_, client):
            answer = await client.get("/healthz", headers={"X-Request-Timeout": value})
        assert answer.status_code == 400
        assert answer.json()["error"]["field"] == "X-Request-Timeout"

    async def test_expired_deadline_is_a_504(self, runtime: Runtime) -> None:
        """A handler still running at the deadline is cancelled and answered 504."""
        async with app_client(runtime) as (_, client):
            answer = await client.get(
                "/test/slow", params={"seconds": 30}, headers={"X-Request-Timeout": "0.05"}
            )
        assert answer.status_code == 504
        error = answer.json()["error"]
        assert error["code"] == "deadline_exceeded"
        assert error["message"] == "deadline exceeded during GET /test/slow (0.05s budget)"


class TestLastResort:
    async def test_unhandled_exception_is_a_typed_500_without_detail(
        self, runtime: Runtime
    ) -> None:
        """An exception no handler takes is a 500 with a typed body that leaks nothing."""
        with capture_logs(runtime) as logs:
            async with app_client(runtime) as (_, client):
                answer = await client.get("/test/boom")
        assert answer.status_code == 500
        assert answer.json()["error"]["code"] == "internal_error"
        assert "sk-" not in answer.text
        assert answer.headers["x-correlation-id"]
        logged = [entry for entry in logs if entry["event"] == "http.unhandled_error"]
        assert logged and "sk-abcdefghijklmnop1234" not in str(logged)

    async def test_typed_errors_keep_their_field(self, runtime: Runtime) -> None:
        """A ProgramSpecError raised by a route is a 422 whose field is the spec path."""
        async with app_client(runtime) as (_, client):
            answer = await client.get("/test/spec-error")
        assert answer.status_code == 422
        assert answer.json()["error"]["field"] == "demos.0.question"

    async def test_retry_after_is_sent(self, runtime: Runtime) -> None:
        """A RateLimited route error is a 429 with Retry-After."""
        async with app_client(runtime) as (_, client):
            answer = await client.get("/test/rate-limited")
        assert answer.status_code == 429
        assert answer.headers["retry-after"] == "2"


class TestValidation:
    async def test_body_fields_are_named_by_path(self, runtime: Runtime) -> None:
        """A body failing validation is a 422 listing each field by dotted path."""
        async with app_client(runtime) as (_, client):
            answer = await client.post("/test/echo", json={"name": "x" * 11, "items": ["a"]})
        assert answer.status_code == 422
        body = answer.json()
        assert body["error"]["code"] == "validation_error"
        assert body["error"]["field"] == "body.name"
        assert [p["field"] for p in body["errors"]] == ["body.name", "body.items.0"]

    async def test_invalid_json_is_a_400(self, runtime: Runtime) -> None:
        """A body that is not JSON is a 400 `invalid_json` naming the body."""
        async with app_client(runtime) as (_, client):
            answer = await client.post(
                "/test/echo", content=b"{nope", headers={"Content-Type": "application/json"}
            )
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "invalid_json"
        assert answer.json()["error"]["field"] == "body"

    async def test_deeply_nested_json_is_a_4xx(self, runtime: Runtime) -> None:
        """JSON nested past the parser's recursion limit is refused, not a 500."""
        payload = b'{"name": "a", "items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        async with app_client(runtime) as (_, client):
            answer = await client.post(
                "/test/echo", content=payload, headers={"Content-Type": "application/json"}
            )
        assert 400 <= answer.status_code < 500
        assert answer.json()["error"]["field"] == "body"

    async def test_query_values_are_named(self, runtime: Runtime) -> None:
        """A query value out of range is a 422 naming `query.<name>`."""
        async with app_client(runtime) as (_, client):
            answer = await client.get("/v1/events", params={"limit": 0})
        assert answer.status_code == 422
        assert answer.json()["error"]["field"] == "query.limit"
