"""Tests for lmvisor.server.http_errors: the status map and the typed error body."""

from __future__ import annotations

import importlib
import json

import pytest

from lmvisor.config.errors import ConfigError, ConfigProblem
from lmvisor.programs.errors import AdapterParseError
from lmvisor.programs.spec import ProgramSpecError
from lmvisor.providers.errors import ProviderTimeout
from lmvisor.providers.errors import ServerError as VendorServerError
from lmvisor.runtime.correlation import correlation_scope
from lmvisor.runtime.errors import (
    ActorExited,
    CallTimeout,
    CircuitOpen,
    DeadlineExceeded,
    LmvisorError,
    RateLimited,
)
from lmvisor.server.errors import Draining, InvalidHeader, RequestTooLarge, Unauthorized
from lmvisor.server.http_errors import (
    STATUS_BY_ERROR,
    FieldProblem,
    error_body,
    error_response,
    status_for,
)
from lmvisor.services.errors import (
    AppClosed,
    BudgetExceeded,
    JobRunsElsewhere,
    ModuleAlreadyRegistered,
    OptimizationSpecError,
    ServiceInputError,
    StoreUnavailable,
    UnknownModule,
)


class _Retryable(LmvisorError):
    code = "retry_me"
    retryable = True


class TestStatusFor:
    @pytest.mark.parametrize("name", sorted(STATUS_BY_ERROR))
    def test_every_name_is_an_exception_class(self, name: str) -> None:
        """Each mapped name imports and is an exception class (a rename fails here)."""
        module, _, attribute = name.rpartition(".")
        value = getattr(importlib.import_module(module), attribute)
        assert isinstance(value, type) and issubclass(value, BaseException)

    @pytest.mark.parametrize(
        ("error", "status"),
        [
            (InvalidHeader(header="X-A", problem="bad"), 400),
            (Unauthorized(problem="no"), 401),
            (RequestTooLarge(limit=10), 413),
            (ProgramSpecError(field="signature", problem="missing"), 422),
            (ConfigError(problems=[ConfigProblem("a.b", "bad")]), 422),
            (RateLimited(name="x", retry_after=1.0), 429),
            (CircuitOpen(name="x", retry_after=1.0), 503),
            (ActorExited(actor="a"), 503),
            (Draining(), 503),
            (AppClosed(namespace="daemon", operation="app.run()"), 503),
            (BudgetExceeded(provider="p", spent=1, limit=1, retry_after=5), 503),
            (StoreUnavailable(path="/d/optimization.sqlite3", problem="locked"), 503),
            (UnknownModule(module_id="qa"), 404),
            (ModuleAlreadyRegistered(module_id="qa"), 409),
            (JobRunsElsewhere(job_id="j1", path="/d/optimization.sqlite3"), 409),
            (OptimizationSpecError(field="trainset.0", problem="not an example"), 422),
            (DeadlineExceeded(operation="op"), 504),
            (CallTimeout(actor="a", message_type="M", timeout=1.0), 504),
            (ProviderTimeout(provider="openai"), 504),
            (VendorServerError(provider="openai", status=500), 502),
            (
                AdapterParseError(adapter="chat", signature="a -> b", completion="x", problem="no"),
                502,
            ),
        ],
    )
    def test_known_errors(self, error: BaseException, status: int) -> None:
        """Each error class maps to its status; the most specific class wins."""
        assert status_for(error) == status

    def test_unlisted_lmvisor_errors_follow_retryable(self) -> None:
        """An lmvisor error with no entry is 503 when retryable, else 500."""
        assert status_for(_Retryable("again")) == 503
        assert status_for(LmvisorError("broken")) == 500

    def test_other_exceptions_are_500(self) -> None:
        """A built-in exception is a 500."""
        assert status_for(KeyError("x")) == 500


class TestErrorResponse:
    def test_body_carries_code_message_field_and_correlation_id(self) -> None:
        """The body is {"error": {code, message, field, correlation_id}}."""
        with correlation_scope("cid-1"):
            response = error_response(ProgramSpecError(field="demos.0", problem="not an object"))
        assert response.status_code == 422
        assert json.loads(bytes(response.body)) == {
            "error": {
                "code": "program_spec_error",
                "message": "invalid program spec at demos.0: not an object",
                "field": "demos.0",
                "correlation_id": "cid-1",
            }
        }

    def test_lone_surrogates_are_escaped(self) -> None:
        """A lone surrogate in a message, field or problem is written as its escape."""
        response = error_response(ServiceInputError(field="options.\ud800", problem="bad"))
        assert json.loads(bytes(response.body))["error"]["field"] == "options.\\ud800"
        body = error_body("x", "m\udfff", problems=[FieldProblem(field="\ud800", message="y")])
        assert (body["error"]["message"], body["errors"]) == (
            "m\\udfff",
            [{"field": "\\ud800", "message": "y"}],
        )

    def test_a_huge_message_is_cut(self) -> None:
        """An error quoting a huge input (a 1 MB metric path, say) carries 2,000 characters
        of its message and how many more there were."""
        response = error_response(ServiceInputError(field="metric", problem="x" * 1_000_000))
        message = json.loads(bytes(response.body))["error"]["message"]
        assert len(message) < 2_100 and message.endswith("x...[998016 more chars]")

    def test_retry_after_is_rounded_up(self) -> None:
        """An error carrying retry_after sets Retry-After in whole seconds, rounded up."""
        response = error_response(RateLimited(name="x", retry_after=1.2))
        assert response.headers["retry-after"] == "2"

    def test_unauthorized_names_the_scheme(self) -> None:
        """A 401 says the bearer scheme is expected."""
        response = error_response(Unauthorized(problem="missing"))
        assert response.headers["www-authenticate"] == "Bearer"

    def test_config_error_field_is_first_path(self) -> None:
        """A config error's field is its first bad path."""
        error = ConfigError(problems=[ConfigProblem("server.port", "bad"), ConfigProblem("x", "y")])
        body = json.loads(bytes(error_response(error).body))
        assert body["error"]["field"] == "server.port"

    def test_internal_errors_say_nothing_of_the_cause(self) -> None:
        """A non-lmvisor exception becomes a 500 whose body names no detail."""
        body = json.loads(bytes(error_response(RuntimeError("sk-secret-detail-123456")).body))
        assert body["error"]["code"] == "internal_error"
        assert body["error"]["message"] == "internal server error"

    def test_secrets_in_messages_are_redacted(self) -> None:
        """A credential in an lmvisor error's message never reaches the body."""
        response = error_response(LmvisorError("failed with key sk-abcdefghijklmnop"))
        assert b"sk-abcdefghijklmnop" not in bytes(response.body)

    def test_error_body_lists_problems(self) -> None:
        """error_body adds `errors` when given problems."""
        from lmvisor.server.http_errors import FieldProblem

        body = error_body("validation_error", "m", problems=[FieldProblem(field="a", message="b")])
        assert body["errors"] == [{"field": "a", "message": "b"}]
