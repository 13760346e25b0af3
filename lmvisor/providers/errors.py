"""The providers' errors, and the one mapping from a vendor's HTTP answer to them.

    LmvisorError
    └── ProviderError                 a vendor call failed
        ├── AuthenticationError       401/403: the key is missing, wrong or not allowed
        ├── BadRequestError           400/422 and other 4xx: the request is wrong
        │   ├── ContextWindowExceeded the prompt does not fit the model's window
        │   └── UnsupportedMedia      the vendor takes no such image, audio or document
        ├── NotFoundError             404: no such endpoint or resource
        │   └── ModelNotFound         404 naming the model: the vendor does not serve it
        ├── ConflictError             409: a conflicting request; retry
        ├── RateLimitError            429: slow down; carries `retry_after`
        │   └── QuotaExceeded         429 "insufficient_quota", 402: retrying will not help
        ├── OverloadedError           529 (or an overloaded error event): retry later
        ├── ServerError               5xx (or a server error event): retry
        ├── ProviderTimeout           no answer in time, or 408 (also a built-in TimeoutError)
        ├── ProviderConnectionError   connect failed or the connection dropped (also a
        │                             built-in ConnectionError)
        ├── ResponseFormatError       the vendor's body is not what its API promises
        └── RequestBuildError         the HTTP client refused to build the request (a
                                      header or URL it cannot send): not the caller's
                                      input and not the vendor's answer; not retried

`retryable` follows the vendors' own SDKs: 408, 409, 429, 5xx, 529 and
connection failures retry; a 429 for an exhausted quota does not. Every error
carries `provider`, `model`, `status` (None when no HTTP status applies, as
for an error event mid-stream) and `retry_after`: the seconds the vendor asked
for in `retry-after-ms` / `retry-after` on a retryable answer, else None.
Messages hold the vendor's own text with the caller's secret redacted; an API
key never appears in a message, context or repr.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from lmvisor._redaction import clipped
from lmvisor.programs.lm import MAX_MODEL_NAME
from lmvisor.runtime.errors import LmvisorError

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ContextWindowExceeded",
    "ModelNotFound",
    "NotFoundError",
    "OverloadedError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "QuotaExceeded",
    "RateLimitError",
    "RequestBuildError",
    "ResponseFormatError",
    "ServerError",
    "UnsupportedMedia",
    "error_from_body",
    "error_from_status",
    "parse_retry_after",
    "redact",
]

_MAX_DETAIL = 500
_CONTEXT_RE = re.compile(
    r"context[ _-]?(length|window)|maximum context|prompt is too long|too many tokens"
    r"|exceed_context_size|input is too long",
    re.IGNORECASE,
)
_QUOTA_RE = re.compile(r"insufficient_quota|quota[ _-]?exceeded|exceeded your current quota", re.I)
_MODEL_RE = re.compile(r"\bmodel\b", re.IGNORECASE)


class ProviderError(LmvisorError):
    """A call to an LM vendor failed; `retryable` says whether the same call may succeed."""

    code: ClassVar[str] = "provider_error"
    _summary: ClassVar[str] = "request failed"

    def __init__(
        self,
        *,
        provider: str,
        model: str | None = None,
        status: int | None = None,
        detail: str = "",
        error_type: str | None = None,
        vendor_code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        detail = detail[:_MAX_DETAIL]
        where = f" (HTTP {status})" if status is not None else ""
        shown = clipped(model, MAX_MODEL_NAME) if model else model
        for_model = f" for model {shown!r}" if shown else ""
        suffix = f": {detail}" if detail else ""
        context: dict[str, Any] = {
            "provider": provider,
            "model": shown,
            "status": status,
            "error_type": error_type,
            "vendor_code": vendor_code,
            "retry_after": retry_after,
        }
        super().__init__(f"{provider}: {self._summary}{where}{for_model}{suffix}", context=context)
        self.provider = provider
        self.model = model
        self.status = status
        self.detail = detail
        self.error_type = error_type
        self.vendor_code = vendor_code
        self.retry_after = retry_after


class AuthenticationError(ProviderError):
    """The vendor refused the credentials (401) or their permissions (403); fix the key."""

    code = "provider_authentication"
    _summary = "authentication failed"


class BadRequestError(ProviderError):
    """The vendor rejected the request as malformed or invalid; change the request."""

    code = "provider_bad_request"
    _summary = "bad request"


class ContextWindowExceeded(BadRequestError):
    """The prompt (plus max_tokens) exceeds the model's context window; shorten it."""

    code = "provider_context_window_exceeded"
    _summary = "context window exceeded"


class UnsupportedMedia(BadRequestError):
    """The vendor takes no such content part (audio to Anthropic); send another kind.

    Raised before the request is sent, so no status applies.
    """

    code = "provider_unsupported_media"
    _summary = "unsupported media"


class NotFoundError(ProviderError):
    """The vendor has no such endpoint or resource; check the base URL."""

    code = "provider_not_found"
    _summary = "not found"


class ModelNotFound(NotFoundError):
    """The vendor does not serve the requested model (or the key may not use it)."""

    code = "provider_model_not_found"
    _summary = "model not found"


class ConflictError(ProviderError):
    """The vendor reported a conflicting concurrent request (409); retrying may succeed."""

    code = "provider_conflict"
    _summary = "conflict"
    retryable = True


class RateLimitError(ProviderError):
    """The vendor is rate limiting this key; retry after `retry_after` seconds (if known)."""

    code = "provider_rate_limited"
    _summary = "rate limited"
    retryable = True


class QuotaExceeded(RateLimitError):
    """The key's quota or credit is exhausted; retrying will not help until it is raised."""

    code = "provider_quota_exceeded"
    _summary = "quota exceeded"
    retryable = False


class OverloadedError(ProviderError):
    """The vendor is overloaded (Anthropic's 529); retry later, ideally elsewhere."""

    code = "provider_overloaded"
    _summary = "overloaded"
    retryable = True


class ServerError(ProviderError):
    """The vendor failed internally (5xx or a server error event); retrying may succeed."""

    code = "provider_server_error"
    _summary = "server error"
    retryable = True


class ProviderTimeout(ProviderError, TimeoutError):
    """The vendor did not answer within the timeout (or answered 408); retry."""

    code = "provider_timeout"
    _summary = "timed out"
    retryable = True


class ProviderConnectionError(ProviderError, ConnectionError):
    """The connection could not be made or dropped before the answer was complete; retry."""

    code = "provider_connection_error"
    _summary = "connection failed"
    retryable = True


class ResponseFormatError(ProviderError):
    """The vendor's body does not follow its API (bad JSON, missing field); not retried."""

    code = "provider_response_format"
    _summary = "malformed response"


class RequestBuildError(ProviderError):
    """The HTTP client would not build the vendor request (a header value or URL it cannot
    send, as a provider's configuration can hold): a fault of the client's setup, not of
    the caller's input nor of the vendor; the same call fails again, so it is not retried."""

    code = "provider_request_build"
    _summary = "the HTTP client could not build the request"


# --- mapping --------------------------------------------------------------------


def redact(text: str, secret: str | None) -> str:
    """Return `text` with every occurrence of `secret` replaced by `***`."""
    if secret and secret in text:
        return text.replace(secret, "***")
    return text


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` (preferred, as the SDKs do) or `retry-after`.

    `retry-after` may be seconds or an HTTP date (compared with `now`, default the
    wall clock). Returns None when neither header holds a usable, non-negative value.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        value = max(0.0, when.timestamp() - (time.time() if now is None else now))
    return value if value >= 0 else None


def _error_fields(body: Any) -> tuple[str, str | None, str | None]:
    """(message, type, code) from either vendor's error envelope, or a plain body."""
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping):
            body = inner
        elif isinstance(inner, str):
            return inner, None, None
        message = body.get("message")
        etype = body.get("type")
        code = body.get("code")
        return (
            message if isinstance(message, str) else _shown(body),
            etype if isinstance(etype, str) else None,
            str(code) if isinstance(code, str | int) and not isinstance(code, bool) else None,
        )
    if isinstance(body, str):
        return body, None, None
    return "", None, None


def _shown(body: Mapping[str, Any]) -> str:
    """A short text of an error body that carries no message (hostile nesting included)."""
    try:
        return json.dumps(body)[:_MAX_DETAIL]
    except (TypeError, ValueError, RecursionError):
        return repr(type(body))


_BY_TYPE: dict[str, type[ProviderError]] = {
    "authentication_error": AuthenticationError,
    "permission_error": AuthenticationError,
    "permission_denied_error": AuthenticationError,
    "invalid_request_error": BadRequestError,
    "request_too_large": BadRequestError,
    "not_found_error": NotFoundError,
    "rate_limit_error": RateLimitError,
    "rate_limit_exceeded": RateLimitError,
    "insufficient_quota": QuotaExceeded,
    "billing_error": QuotaExceeded,
    "overloaded_error": OverloadedError,
    "api_error": ServerError,
    "server_error": ServerError,
    "timeout_error": ProviderTimeout,
}


def _class_for_status(status: int) -> type[ProviderError]:
    if status in (401, 403):
        return AuthenticationError
    if status == 402:
        return QuotaExceeded
    if status == 404:
        return NotFoundError
    if status == 408:
        return ProviderTimeout
    if status == 409:
        return ConflictError
    if status == 429:
        return RateLimitError
    if status == 529:
        return OverloadedError
    if status >= 500:
        return ServerError
    if 400 <= status < 500:
        return BadRequestError
    return ResponseFormatError


def _refine(
    cls: type[ProviderError], message: str, etype: str | None, code: str | None
) -> type[ProviderError]:
    """Pick the most specific subclass the vendor's type, code and text support."""
    tags = f"{etype or ''} {code or ''}"
    if issubclass(cls, RateLimitError) and (_QUOTA_RE.search(tags) or _QUOTA_RE.search(message)):
        return QuotaExceeded
    if issubclass(cls, BadRequestError) and (
        _CONTEXT_RE.search(tags) or _CONTEXT_RE.search(message)
    ):
        return ContextWindowExceeded
    if cls is NotFoundError and ("model_not_found" in tags or _MODEL_RE.search(message)):
        return ModelNotFound
    return cls


def error_from_status(
    *,
    provider: str,
    model: str | None,
    status: int,
    headers: Mapping[str, str],
    body: bytes | memoryview,
    secret: str | None = None,
) -> ProviderError:
    """The typed error for a non-2xx HTTP answer from either vendor (or a compatible server).

    Reads OpenAI's `{"error": {message, type, code}}`, Anthropic's
    `{"type": "error", "error": {type, message}}`, vLLM's flat
    `{"message", "type", "code"}` and non-JSON bodies alike. `secret` is redacted
    from the vendor's text.
    """
    text = bytes(body).decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(text) if text else ""
    except (ValueError, RecursionError):
        parsed = text
    message, etype, code = _error_fields(parsed)
    cls = _refine(_class_for_status(status), message, etype, code)
    return cls(
        provider=provider,
        model=model,
        status=status,
        detail=redact(message.strip(), secret),
        error_type=etype,
        vendor_code=code,
        retry_after=parse_retry_after(headers) if cls.retryable else None,
    )


def error_from_body(
    *, provider: str, model: str | None, body: Any, secret: str | None = None
) -> ProviderError:
    """The typed error for an error event inside a stream (no HTTP status applies).

    The class comes from the vendor's error type or code ("overloaded_error",
    "rate_limit_exceeded", ...); an unknown type is a retryable `ServerError`.
    """
    message, etype, code = _error_fields(body)
    cls = _BY_TYPE.get(etype or "") or _BY_TYPE.get(code or "") or ServerError
    cls = _refine(cls, message, etype, code)
    return cls(
        provider=provider,
        model=model,
        detail=redact(message.strip(), secret),
        error_type=etype,
        vendor_code=code,
    )
