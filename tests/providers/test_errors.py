"""Tests for lmvisor.providers.errors: the status/body mapping, retry-after, redaction."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lmvisor.programs.lm import MAX_MODEL_NAME
from lmvisor.providers.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContextWindowExceeded,
    ModelNotFound,
    NotFoundError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    QuotaExceeded,
    RateLimitError,
    ResponseFormatError,
    ServerError,
    error_from_body,
    error_from_status,
    parse_retry_after,
    redact,
)
from lmvisor.runtime.errors import LmvisorError


def _openai_body(message: str, etype: str | None = None, code: str | None = None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": etype, "param": None, "code": code}}
    ).encode()


def _anthropic_body(etype: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": etype, "message": message}}).encode()


def _map(status: int, body: bytes, headers: dict[str, str] | None = None) -> ProviderError:
    return error_from_status(
        provider="openai", model="gpt-4o-mini", status=status, headers=headers or {}, body=body
    )


class TestErrorFromStatus:
    @pytest.mark.parametrize(
        ("status", "cls", "retryable"),
        [
            (400, BadRequestError, False),
            (401, AuthenticationError, False),
            (402, QuotaExceeded, False),
            (403, AuthenticationError, False),
            (404, NotFoundError, False),
            (408, ProviderTimeout, True),
            (409, ConflictError, True),
            (413, BadRequestError, False),
            (422, BadRequestError, False),
            (429, RateLimitError, True),
            (500, ServerError, True),
            (502, ServerError, True),
            (503, ServerError, True),
            (529, OverloadedError, True),
        ],
    )
    def test_status_maps_to_class_and_retryable(
        self, status: int, cls: type[ProviderError], retryable: bool
    ) -> None:
        """Each HTTP status maps to its class, with `retryable` as the vendors' SDKs set it."""
        err = _map(status, _openai_body("Something went wrong."))
        assert type(err) is cls
        assert err.retryable is retryable
        assert err.status == status
        assert err.provider == "openai"
        assert err.model == "gpt-4o-mini"

    def test_message_names_provider_status_model_and_vendor_text(self) -> None:
        """The message carries the provider, the status, the model and the vendor's text."""
        err = _map(500, _openai_body("The server had an error."))
        assert str(err) == (
            "openai: server error (HTTP 500) for model 'gpt-4o-mini': The server had an error."
        )
        assert err.context["status"] == 500

    def test_insufficient_quota_is_not_retryable(self) -> None:
        """A 429 with code insufficient_quota is QuotaExceeded, which does not retry."""
        err = _map(
            429,
            _openai_body(
                "You exceeded your current quota.", "insufficient_quota", "insufficient_quota"
            ),
        )
        assert isinstance(err, QuotaExceeded)
        assert isinstance(err, RateLimitError)
        assert err.retryable is False

    def test_quota_exceeded_text_alone_is_enough(self) -> None:
        """A 429 whose message says "quota exceeded" is QuotaExceeded too."""
        assert isinstance(_map(429, _openai_body("Quota exceeded for project.")), QuotaExceeded)

    def test_retry_after_header_is_carried(self) -> None:
        """A 429's Retry-After seconds become `retry_after`."""
        err = _map(429, _openai_body("Slow down."), {"retry-after": "7"})
        assert isinstance(err, RateLimitError)
        assert err.retry_after == 7.0
        assert err.context["retry_after"] == 7.0

    def test_retry_after_on_other_retryable_statuses(self) -> None:
        """A 503 or 529 with Retry-After carries it; a non-retryable 400 ignores it."""
        assert _map(503, b"", {"retry-after": "5"}).retry_after == 5.0
        assert _map(529, b"", {"retry-after-ms": "1500"}).retry_after == 1.5
        assert _map(400, b"", {"retry-after": "5"}).retry_after is None

    def test_openai_context_length_code(self) -> None:
        """A 400 with code context_length_exceeded is ContextWindowExceeded."""
        err = _map(
            400,
            _openai_body(
                "This model's maximum context length is 8192 tokens.",
                "invalid_request_error",
                "context_length_exceeded",
            ),
        )
        assert isinstance(err, ContextWindowExceeded)
        assert isinstance(err, BadRequestError)
        assert err.retryable is False

    def test_anthropic_prompt_too_long(self) -> None:
        """Anthropic's "prompt is too long" 400 is ContextWindowExceeded."""
        body = _anthropic_body("invalid_request_error", "prompt is too long: 210000 > 200000")
        assert isinstance(_map(400, body), ContextWindowExceeded)

    def test_model_not_found_by_code_or_text(self) -> None:
        """A 404 naming the model (by code or text) is ModelNotFound; a bare 404 is not."""
        assert isinstance(_map(404, _openai_body("Nope", None, "model_not_found")), ModelNotFound)
        assert isinstance(_map(404, _anthropic_body("not_found_error", "model: x")), ModelNotFound)
        plain = _map(404, _openai_body("Unknown path /v2/chat"))
        assert type(plain) is NotFoundError

    def test_a_long_model_name_is_clipped_where_echoed(self) -> None:
        """A model name past MAX_MODEL_NAME characters is clipped in the message and context
        (the attribute keeps it whole): a 100 kB name was echoed whole."""
        model = "m" * 100_000
        err = error_from_status(provider="openai", model=model, status=404, headers={}, body=b"")
        shown = "m" * MAX_MODEL_NAME + f"...[{100_000 - MAX_MODEL_NAME} more chars]"
        assert str(err) == f"openai: not found (HTTP 404) for model {shown!r}"
        assert err.context["model"] == shown and err.model == model

    def test_vllm_flat_body(self) -> None:
        """vLLM's flat `{"message", "type", "code"}` body is read too."""
        body = json.dumps(
            {
                "object": "error",
                "message": "The model `x` does not exist.",
                "type": "NotFoundError",
                "code": 404,
            }
        ).encode()
        err = _map(404, body)
        assert isinstance(err, ModelNotFound)
        assert err.detail == "The model `x` does not exist."

    def test_non_json_body_is_kept_as_text(self) -> None:
        """An HTML or plain-text error body becomes the detail, not a parse failure."""
        err = _map(502, b"<html>Bad Gateway</html>")
        assert type(err) is ServerError
        assert err.detail == "<html>Bad Gateway</html>"

    def test_unexpected_status_is_a_format_error(self) -> None:
        """A 3xx (not followed) is a ResponseFormatError."""
        assert isinstance(_map(302, b""), ResponseFormatError)

    def test_secret_in_vendor_text_is_redacted(self) -> None:
        """A vendor message echoing the key never carries it into the error."""
        err = error_from_status(
            provider="openai",
            model="m",
            status=401,
            headers={},
            body=_openai_body("Incorrect API key provided: sk-live-abc123."),
            secret="sk-live-abc123",
        )
        for text in (str(err), repr(err), json.dumps(err.to_dict())):
            assert "sk-live-abc123" not in text
        assert "Incorrect API key provided: ***." in str(err)

    def test_long_detail_is_truncated(self) -> None:
        """A huge vendor message is cut to 500 characters."""
        err = _map(500, _openai_body("x" * 5000))
        assert len(err.detail) == 500


class TestErrorFromBody:
    @pytest.mark.parametrize(
        ("body", "cls"),
        [
            (
                {"type": "error", "error": {"type": "overloaded_error", "message": "O"}},
                OverloadedError,
            ),
            (
                {"type": "error", "error": {"type": "rate_limit_error", "message": "R"}},
                RateLimitError,
            ),
            ({"type": "error", "error": {"type": "api_error", "message": "A"}}, ServerError),
            (
                {"type": "error", "error": {"type": "invalid_request_error", "message": "I"}},
                BadRequestError,
            ),
            (
                {"type": "error", "error": {"type": "authentication_error", "message": "K"}},
                AuthenticationError,
            ),
            ({"error": {"message": "boom", "type": "server_error", "code": None}}, ServerError),
            ({"error": {"message": "q", "type": "insufficient_quota"}}, QuotaExceeded),
            ({"error": {"message": "odd", "type": "something_new"}}, ServerError),
        ],
    )
    def test_error_events_map_by_type(self, body: dict[str, Any], cls: type[ProviderError]) -> None:
        """A mid-stream error event maps by its vendor type; an unknown type is ServerError."""
        err = error_from_body(provider="anthropic", model="claude", body=body)
        assert type(err) is cls
        assert err.status is None


class TestRetryAfter:
    def test_seconds(self) -> None:
        """Retry-After in seconds (fractional allowed) is returned as seconds."""
        assert parse_retry_after({"retry-after": "1.5"}) == 1.5

    def test_milliseconds_win(self) -> None:
        """retry-after-ms is preferred over retry-after, as the SDKs do."""
        assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25

    def test_http_date(self) -> None:
        """An HTTP-date Retry-After is the seconds from `now` to that date."""
        headers = {"retry-after": "Thu, 01 Jan 1970 00:00:30 GMT"}
        assert parse_retry_after(headers, now=10.0) == 20.0
        assert parse_retry_after(headers, now=100.0) == 0.0

    @pytest.mark.parametrize(
        "headers", [{}, {"retry-after": "soon"}, {"retry-after": "-3"}, {"retry-after-ms": "x"}]
    )
    def test_absent_or_unusable(self, headers: dict[str, str]) -> None:
        """Missing, unparseable or negative values give None."""
        assert parse_retry_after(headers) is None


class TestHierarchy:
    def test_builtin_bases(self) -> None:
        """Timeouts are TimeoutErrors and connection failures ConnectionErrors."""
        timeout = ProviderTimeout(provider="p", detail="no answer within 1s")
        conn = ProviderConnectionError(provider="p", model="m", detail="reset")
        assert isinstance(timeout, TimeoutError)
        assert isinstance(timeout, LmvisorError)
        assert isinstance(conn, ConnectionError)
        assert str(conn) == "p: connection failed for model 'm': reset"

    def test_redact(self) -> None:
        """redact() hides every occurrence of the secret and ignores an empty one."""
        assert redact("a KEY b KEY", "KEY") == "a *** b ***"
        assert redact("text", None) == "text"
        assert redact("text", "") == "text"
