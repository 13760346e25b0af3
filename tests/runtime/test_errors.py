"""Tests for lmvisor.runtime.errors: the root error, the runtime errors, error_context."""

from __future__ import annotations

import pytest

from lmvisor.runtime.correlation import correlation_scope
from lmvisor.runtime.errors import (
    ActorError,
    ActorExited,
    BulkheadFull,
    CallTimeout,
    CircuitOpen,
    LmvisorError,
    MailboxFull,
    NameAlreadyRegistered,
    NameNotRegistered,
    ProtectionError,
    RateLimited,
    RetryExhausted,
    RuntimeClosed,
    StartError,
    SupervisorError,
    error_context,
)


class TestLmvisorError:
    def test_fields_and_to_dict(self) -> None:
        """The root error carries code, message, context, correlation id and retryable."""
        error = LmvisorError("broke", context={"n": 1, "obj": object, "xs": (1, "a")})
        body = error.to_dict()
        assert body["type"] == "LmvisorError"
        assert body["code"] == "lmvisor_error"
        assert body["message"] == "broke"
        assert body["retryable"] is False
        assert body["context"]["n"] == 1
        assert body["context"]["xs"] == [1, "a"]
        assert body["context"]["obj"] == repr(object)
        assert str(error) == "broke"
        assert repr(error) == "LmvisorError('broke', code='lmvisor_error')"

    def test_to_dict_redacts_secrets(self) -> None:
        """Secrets in the message or context never reach the JSON view; the error keeps them."""
        secret = "correct-horse-battery-staple"
        with pytest.raises(LmvisorError) as info, error_context("lm", api_key=secret):
            raise LmvisorError(
                f"refused: api_key={secret}",
                context={"headers": {"x-api-key": secret}, "url": f"https://h/?token={secret}"},
            )
        body = info.value.to_dict()
        assert secret not in repr(body)
        assert body["message"] == "refused: api_key=[REDACTED]"
        assert body["context"]["api_key"] == "[REDACTED]"
        assert body["context"]["headers"] == {"x-api-key": "[REDACTED]"}
        assert info.value.context["api_key"] == secret

    def test_correlation_id_captured_from_scope(self) -> None:
        """An error built inside a correlation scope records its id."""
        with correlation_scope("corr-7"):
            error = LmvisorError("x")
        assert error.correlation_id == "corr-7"
        assert LmvisorError("y").correlation_id is None

    def test_explicit_correlation_id_wins(self) -> None:
        """A correlation id passed explicitly is kept over the scope's."""
        with correlation_scope("scope"):
            assert LmvisorError("x", correlation_id="given").correlation_id == "given"


class TestRuntimeErrors:
    def test_hierarchy(self) -> None:
        """Each runtime error sits under its documented parent."""
        assert issubclass(ActorExited, ActorError)
        assert issubclass(CallTimeout, ActorError) and issubclass(CallTimeout, TimeoutError)
        assert issubclass(StartError, SupervisorError)
        for cls in (CircuitOpen, RateLimited, BulkheadFull, RetryExhausted):
            assert issubclass(cls, ProtectionError)
        for cls in (ActorError, SupervisorError, ProtectionError):
            assert issubclass(cls, LmvisorError)

    def test_messages_and_codes(self) -> None:
        """Each error builds its message from keyword fields and has its code."""
        cases: list[tuple[LmvisorError, str, str, bool]] = [
            (ActorExited(actor="a", reason="crash"), "actor_exited",
             "actor a exited before replying (reason: 'crash')", True),
            (CallTimeout(actor="a", message_type="Get", timeout=1.5), "call_timeout",
             "call to a with Get timed out after 1.5s", True),
            (MailboxFull(actor="a", capacity=3), "mailbox_full",
             "mailbox of a is full (capacity 3)", True),
            (NameNotRegistered(name="cache", namespace="ns"), "name_not_registered",
             "no actor registered as 'cache' in namespace 'ns'", True),
            (RuntimeClosed(namespace="ns", operation="a message to 'cache'"), "runtime_closed",
             "runtime 'ns' is closed: a message to 'cache' needs a running runtime", False),
            (NameAlreadyRegistered(name="cache", namespace="ns", holder="A<1>"),
             "name_already_registered",
             "name 'cache' is already registered to A<1> in namespace 'ns'", False),
            (StartError(supervisor="root", child_id="c", reason="bad"), "start_error",
             "supervisor root failed to start child 'c': 'bad'", False),
            (CircuitOpen(name="b", retry_after=2.0), "circuit_open",
             "circuit 'b' is open; retry in 2.000s", True),
            (RateLimited(name="l", retry_after=0.25), "rate_limited",
             "rate limit 'l' reached; retry in 0.250s", True),
            (BulkheadFull(name="h", max_concurrent=2, max_queued=1), "bulkhead_full",
             "bulkhead 'h' is full (2 running, 1 queued)", True),
        ]  # fmt: skip
        for error, code, message, retryable in cases:
            assert (error.code, error.message, error.retryable) == (code, message, retryable)

    def test_retry_exhausted_keeps_last_error(self) -> None:
        """RetryExhausted names the attempts and keeps the last error."""
        last = ValueError("nope")
        error = RetryExhausted(name="lm", attempts=3, last_error=last)
        assert error.message == "lm: gave up after 3 attempts: nope"
        assert error.last_error is last
        assert error.retryable is False
        assert error.to_dict()["context"]["last_error"] == "ValueError('nope')"

    def test_retry_after_attributes(self) -> None:
        """Refusals carry retry_after as an attribute for Retry to honour."""
        assert CircuitOpen(name="b", retry_after=2.0).retry_after == 2.0
        assert RateLimited(name="l", retry_after=0.5).retry_after == 0.5


class TestErrorContext:
    def test_attaches_operation_and_metadata(self) -> None:
        """error_context adds the operation and metadata to an LmvisorError."""
        with pytest.raises(LmvisorError) as info, error_context("lm.complete", model="m"):
            raise LmvisorError("x")
        assert info.value.context == {"operation": "lm.complete", "model": "m"}

    def test_innermost_wins_and_existing_keys_kept(self) -> None:
        """The innermost operation wins; keys already on the error are not overwritten."""
        with (
            pytest.raises(LmvisorError) as info,
            error_context("outer", a=1, b=1),
            error_context("inner", a=2),
        ):
            raise LmvisorError("x", context={"b": 0})
        assert info.value.context == {"b": 0, "operation": "inner", "a": 2}

    def test_other_exceptions_pass_untouched(self) -> None:
        """Non-lmvisor exceptions pass through unchanged."""
        with pytest.raises(KeyError) as info, error_context("op"):
            raise KeyError("k")
        assert not hasattr(info.value, "context")
