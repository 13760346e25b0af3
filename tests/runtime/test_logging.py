"""Tests for lmvisor.runtime.logging: context, redaction, truncation, capture, process setup."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import structlog
from pydantic import SecretStr

from lmvisor.runtime.correlation import correlation_scope
from lmvisor.runtime.logging import (
    REDACTED,
    Redactor,
    RuntimeLogging,
    capture_logs,
    configure_process_logging,
    log_context,
    reset_process_logging,
)

VENDOR_KEY = "sk-proj-Abc123def456ghi789jkl"
ANTHROPIC_KEY = "sk-ant-api03-QWERTYuiop1234567890"
PLAIN_SECRET = "correct-horse-battery-staple"


@dataclass
class _Holder:
    """An object whose repr carries a key."""

    key: str


@dataclass
class _Creds:
    """An object whose repr names its secret field."""

    api_key: str


@pytest.fixture
def process_logging() -> Iterator[None]:
    """Undo any process-wide setup after the test."""
    yield
    reset_process_logging()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _log_secrets_everywhere(log: structlog.typing.FilteringBoundLogger) -> None:
    log.info(
        "calling %s",
        f"with {VENDOR_KEY}",
        api_key=PLAIN_SECRET,
        headers={"Authorization": f"Bearer {PLAIN_SECRET}", "X-Api-Key": PLAIN_SECRET},
        nested=[{"password": PLAIN_SECRET}, f"key={ANTHROPIC_KEY}"],
        url=f"https://h/v1?api_key={PLAIN_SECRET}&x=1",
        holder=_Holder(key=VENDOR_KEY),
        secret_obj=SecretStr(PLAIN_SECRET),
        access_token=PLAIN_SECRET,
    )
    try:
        raise RuntimeError(f"auth failed for {VENDOR_KEY}")
    except RuntimeError:
        log.exception("boom", clientSecret=PLAIN_SECRET)


class TestRedaction:
    @pytest.mark.parametrize("mode", ["json", "console"])
    def test_secret_never_shows_in_output(self, mode: str) -> None:
        """A secret passed anywhere (args, keys, nested, repr, exception) never reaches output."""
        stream = io.StringIO()
        log = RuntimeLogging(namespace="ns", mode=mode, stream=stream).get_logger()  # type: ignore[arg-type]
        _log_secrets_everywhere(log)
        output = stream.getvalue()
        assert output
        for secret in (VENDOR_KEY, ANTHROPIC_KEY, PLAIN_SECRET):
            assert secret not in output
        assert REDACTED in output

    def test_secret_never_shows_in_captured_events(self) -> None:
        """Captured events are already redacted."""
        log = RuntimeLogging(namespace="ns", stream=io.StringIO()).get_logger()
        with capture_logs() as events:
            _log_secrets_everywhere(log)
        assert len(events) == 2
        text = repr(events)
        for secret in (VENDOR_KEY, ANTHROPIC_KEY, PLAIN_SECRET):
            assert secret not in text
        assert events[0]["api_key"] == REDACTED
        assert events[0]["headers"]["Authorization"] == REDACTED

    @pytest.mark.parametrize(
        "value",
        [
            f"failed with {{'api_key': '{PLAIN_SECRET}'}}",
            f'body {{"password":"{PLAIN_SECRET}"}}',
            f"x-api-key: {PLAIN_SECRET}",
            f"Authorization: Token {PLAIN_SECRET}",
            f"authorization={PLAIN_SECRET}",
            _Creds(api_key=PLAIN_SECRET),
            ValueError(f"refused api_key='{PLAIN_SECRET}'"),
            [("x-api-key", PLAIN_SECRET), ("Content-Type", "application/json")],
        ],
    )
    def test_secret_named_values_in_text_and_pairs(self, value: object) -> None:
        """A value after a secret-named key in text, a repr or a header pair is hidden."""
        redacted = repr(Redactor().redact(value))
        assert PLAIN_SECRET not in redacted
        assert REDACTED in redacted

    def test_benign_keys_are_kept(self) -> None:
        """Token counts and ordinary fields are not mistaken for secrets."""
        redactor = Redactor()
        assert not redactor.is_secret_key("max_tokens")
        assert not redactor.is_secret_key("prompt_tokens")
        assert redactor.is_secret_key("accessToken")
        assert redactor.is_secret_key("x-api-key")
        assert redactor.redact({"max_tokens": 5, "model": "gpt"}) == {
            "max_tokens": 5,
            "model": "gpt",
        }
        text = "max_tokens: 5, prompt_tokens=10, token_count: 4"
        assert redactor.redact(text) == text

    def test_long_values_are_cut(self) -> None:
        """Strings over max_length are truncated with a note; exception text is not."""
        redactor = Redactor(max_length=20)
        cut = redactor.redact("x" * 50)
        assert cut == "x" * 20 + "...[30 more chars]"
        event = redactor(None, "info", {"exception": "y" * 50, "v": ["z" * 30]})
        assert event["exception"] == "y" * 50
        assert event["v"] == ["z" * 20 + "...[10 more chars]"]

    def test_deep_nesting_is_bounded(self) -> None:
        """Very deep structures are cut off rather than recursed forever."""
        value: list[object] = []
        value.append(value)
        assert "[...]" in repr(Redactor().redact(value))

    def test_max_length_must_be_sane(self) -> None:
        """A tiny max_length is refused."""
        with pytest.raises(ValueError, match=r"^max_length must be >= 16, got 3$"):
            Redactor(max_length=3)


class TestContext:
    def test_correlation_and_bound_context(self) -> None:
        """correlation_id, namespace and log_context values appear on every event."""
        stream = io.StringIO()
        log = RuntimeLogging(namespace="ns1", stream=stream).get_logger("svc")
        with correlation_scope("corr-1"), log_context(actor="cache"):
            log.info("hello", n=1)
        log.info("outside")
        first, second = _lines(stream)
        assert first["correlation_id"] == "corr-1"
        assert first["actor"] == "cache"
        assert first["namespace"] == "ns1"
        assert first["logger"] == "svc"
        assert first["level"] == "info"
        assert first["event"] == "hello"
        assert "correlation_id" not in second and "actor" not in second

    async def test_context_is_per_task(self) -> None:
        """Concurrent tasks see only their own log context."""
        log = RuntimeLogging(namespace="ns", stream=io.StringIO()).get_logger()

        async def work(actor: str) -> None:
            with log_context(actor=actor):
                await asyncio.sleep(0)
                log.info("step")

        with capture_logs() as events:
            await asyncio.gather(work("a"), work("b"))
        assert sorted(e["actor"] for e in events) == ["a", "b"]

    def test_level_filtering(self) -> None:
        """Events below the level are not written."""
        stream = io.StringIO()
        log = RuntimeLogging(namespace="ns", stream=stream, level="warning").get_logger()
        log.info("quiet")
        log.warning("loud")
        assert [e["event"] for e in _lines(stream)] == ["loud"]

    def test_unknown_level(self) -> None:
        """An unknown level name is refused."""
        with pytest.raises(ValueError, match=r"^unknown log level 'chatty'$"):
            RuntimeLogging(namespace="ns", level="chatty")

    def test_two_runtimes_do_not_share_streams(self) -> None:
        """Each RuntimeLogging writes only to its own stream."""
        first, second = io.StringIO(), io.StringIO()
        RuntimeLogging(namespace="a", stream=first).get_logger().info("one")
        RuntimeLogging(namespace="b", stream=second).get_logger().info("two")
        assert [e["namespace"] for e in _lines(first)] == ["a"]
        assert [e["namespace"] for e in _lines(second)] == ["b"]


class TestProcessLogging:
    def test_stdlib_is_routed_and_redacted(self, process_logging: None) -> None:
        """After configure_process_logging, stdlib records become redacted JSON lines."""
        stream = io.StringIO()
        configure_process_logging("json", stream=stream)
        with correlation_scope("c9"):
            logging.getLogger("thirdparty").warning("token is %s", f"Bearer {PLAIN_SECRET}")
            structlog.get_logger().info("structlog too", password=PLAIN_SECRET)
        lines = _lines(stream)
        assert [line["correlation_id"] for line in lines] == ["c9", "c9"]
        assert lines[0]["level"] == "warning"
        assert PLAIN_SECRET not in stream.getvalue()

    def test_stdlib_exception_is_redacted(self, process_logging: None) -> None:
        """A stdlib exception traceback is redacted too."""
        stream = io.StringIO()
        configure_process_logging("console", stream=stream)
        try:
            raise ValueError(f"bad key {VENDOR_KEY}")
        except ValueError:
            logging.getLogger("x").exception("failed")
        assert "ValueError" in stream.getvalue()
        assert VENDOR_KEY not in stream.getvalue()

    def test_capture_covers_stdlib(self, process_logging: None) -> None:
        """capture_logs collects stdlib records instead of writing them."""
        stream = io.StringIO()
        configure_process_logging("json", stream=stream)
        with capture_logs() as events:
            logging.getLogger("x").warning("api_key=%s", PLAIN_SECRET)
        assert stream.getvalue() == ""
        assert len(events) == 1
        assert PLAIN_SECRET not in repr(events)

    def test_reconfigure_replaces_handler(self, process_logging: None) -> None:
        """Configuring twice leaves one lmvisor handler on the root logger."""
        configure_process_logging("json", stream=io.StringIO())
        stream = io.StringIO()
        configure_process_logging("json", stream=stream)
        logging.getLogger("x").warning("once")
        assert len(stream.getvalue().splitlines()) == 1


class TestLibraryLoggerOutsideRuntime:
    def test_unconfigured_process_still_redacts(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Outside any runtime, before the daemon configures logging, secrets are still hidden."""
        from lmvisor.runtime.logger import get_logger

        structlog.reset_defaults()
        get_logger("lmvisor.test").warning("auth failed", api_key=PLAIN_SECRET, note=VENDOR_KEY)
        out = capsys.readouterr().err
        assert "auth failed" in out
        assert PLAIN_SECRET not in out
        assert VENDOR_KEY not in out
