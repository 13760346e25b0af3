"""Tests for lmvisor.runtime.observe.logs: context, redaction, levels, capture, routing."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass

import pytest
import structlog
from pydantic import SecretStr

from lmvisor._redaction import REDACTED
from lmvisor.runtime.correlation import correlation_scope
from lmvisor.runtime.observe.logs import (
    RuntimeLogging,
    capture_logs,
    get_logger,
    level_number,
    log_context,
    use_route,
)

VENDOR_KEY = "sk-proj-Abc123def456ghi789jkl"
ANTHROPIC_KEY = "sk-ant-api03-QWERTYuiop1234567890"
PLAIN_SECRET = "correct-horse-battery-staple"


@dataclass
class _Holder:
    """An object whose repr carries a key."""

    key: str


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


class TestChainRedaction:
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


class TestLibraryLoggerOutsideRuntime:
    def test_unconfigured_process_still_redacts(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Outside any runtime, before the daemon configures logging, secrets are still hidden."""
        structlog.reset_defaults()
        get_logger("lmvisor.test").warning("auth failed", api_key=PLAIN_SECRET, note=VENDOR_KEY)
        out = capsys.readouterr().err
        assert "auth failed" in out
        assert PLAIN_SECRET not in out
        assert VENDOR_KEY not in out


class TestLevelsAndFlush:
    @pytest.mark.parametrize(
        ("level", "number"), [("DEBUG", 10), ("info", 20), ("Warn", 30), ("critical", 50), (35, 35)]
    )
    def test_level_number(self, level: str | int, number: int) -> None:
        """Level names in any case (and plain numbers) give the stdlib's numbers."""
        assert level_number(level) == number

    def test_enabled_for_follows_the_level(self) -> None:
        """enabled_for tells whether a line at a level would be written."""
        chain = RuntimeLogging(namespace="ns", level="warning", stream=io.StringIO())
        assert not chain.enabled_for(20)
        assert chain.enabled_for(30) and chain.enabled_for(40)

    def test_flush_runs_hooks_until_removed(self) -> None:
        """flush() runs every registered hook (deferred writers) until its remover is called."""
        chain = RuntimeLogging(namespace="ns", stream=io.StringIO())
        calls: list[str] = []
        remove = chain.add_flush_hook(lambda: calls.append("a"))
        chain.add_flush_hook(lambda: calls.append("b"))
        chain.flush()
        remove()
        chain.flush()
        assert calls == ["a", "b", "b"]

    def test_capture_writes_pending_lines_outside_then_inside(self) -> None:
        """Deferred lines pending at entry go to the stream; those made inside are captured."""
        stream = io.StringIO()
        chain = RuntimeLogging(namespace="ns", stream=stream)
        pending: list[str] = ["before"]
        log = chain.get_logger()
        chain.add_flush_hook(lambda: [log.info(pending.pop()) for _ in range(len(pending))])
        with capture_logs(chain) as logs:
            pending.append("inside")
        assert [line["event"] for line in _lines(stream)] == ["before"]
        assert [e["event"] for e in logs] == ["inside"]


class TestPerTurnLines:
    async def test_per_turn_lines_wait_for_the_turn_and_flush(self) -> None:
        """A per-turn logger's lines go out at the turn's end, or when the chain is flushed."""
        stream = io.StringIO()
        chain = RuntimeLogging(namespace="ns", stream=stream)
        chain.get_logger("access", per_turn=True).info("one")
        assert stream.getvalue() == ""
        await asyncio.sleep(0)
        chain.get_logger("access", per_turn=True).info("two")
        chain.flush()
        assert [line["event"] for line in _lines(stream)] == ["one", "two"]

    async def test_routed_per_turn_logger_keeps_the_order(self) -> None:
        """Through a route, a per-turn line is written before a later immediate line."""
        stream = io.StringIO()
        chain = RuntimeLogging(namespace="ns", stream=stream)
        with use_route(chain):
            get_logger("access", per_turn=True).info("request")
            get_logger("other").warning("after")
            assert [line["event"] for line in _lines(stream)] == ["request", "after"]

    async def test_per_turn_lines_are_captured_like_others(self) -> None:
        """capture_logs collects a per-turn line at once, already redacted."""
        chain = RuntimeLogging(namespace="ns", stream=io.StringIO())
        with capture_logs(chain) as logs:
            chain.get_logger("access", per_turn=True).info("request", api_key=PLAIN_SECRET)
        assert [e["event"] for e in logs] == ["request"]
        assert PLAIN_SECRET not in repr(logs)
