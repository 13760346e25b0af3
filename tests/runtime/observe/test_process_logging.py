"""Tests for lmvisor.runtime.observe.process_logging: the daemon's process-wide setup."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from lmvisor.runtime.correlation import correlation_scope
from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.observe.process_logging import (
    configure_process_logging,
    reset_process_logging,
)

VENDOR_KEY = "sk-proj-Abc123def456ghi789jkl"
PLAIN_SECRET = "correct-horse-battery-staple"


@pytest.fixture
def process_logging() -> Iterator[None]:
    """Undo any process-wide setup after the test."""
    yield
    reset_process_logging()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


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


class _CountingStream(io.StringIO):
    """A stream that counts its write calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


class TestLineBatching:
    async def test_a_loop_turn_is_written_once_at_its_end(self, process_logging: None) -> None:
        """Lines logged in one loop iteration reach the stream together, in one write."""
        stream = _CountingStream()
        configure_process_logging("json", stream=stream)
        log = structlog.get_logger()
        for n in range(3):
            log.info("http.request", n=n)
        assert stream.getvalue() == ""
        await asyncio.sleep(0)
        assert ([line["n"] for line in _lines(stream)], stream.writes) == ([0, 1, 2], 1)

    async def test_stdlib_records_keep_their_place(self, process_logging: None) -> None:
        """A stdlib record goes out after the lines logged before it, not ahead of them."""
        stream = io.StringIO()
        configure_process_logging("json", stream=stream)
        structlog.get_logger().info("first")
        logging.getLogger("thirdparty").warning("second")
        structlog.get_logger().info("third")
        await asyncio.sleep(0)
        assert [line["event"] for line in _lines(stream)] == ["first", "second", "third"]

    async def test_reset_flushes_pending_lines(self) -> None:
        """Resetting the setup writes what the current loop turn still held."""
        stream = io.StringIO()
        configure_process_logging("json", stream=stream)
        structlog.get_logger().info("pending")
        reset_process_logging()
        assert [line["event"] for line in _lines(stream)] == ["pending"]

    async def test_a_burst_is_written_without_waiting(self, process_logging: None) -> None:
        """A loop turn holds a bounded number of lines: past it they are written at once."""
        stream = io.StringIO()
        configure_process_logging("json", stream=stream)
        log = structlog.get_logger()
        for n in range(1024):
            log.info("burst", n=n)
        assert len(_lines(stream)) == 1024

    def test_a_line_without_a_loop_is_written_at_once(self, process_logging: None) -> None:
        """Outside an event loop each line is written and flushed as it is logged."""
        stream = _CountingStream()
        configure_process_logging("json", stream=stream)
        structlog.get_logger().info("one")
        structlog.get_logger().info("two")
        assert ([line["event"] for line in _lines(stream)], stream.writes) == (["one", "two"], 2)

    def test_a_stopped_loop_strands_no_line(self, process_logging: None) -> None:
        """A line pending on a loop that stopped goes out with the next loop's first line."""
        stream = io.StringIO()
        configure_process_logging("json", stream=stream)
        loop = asyncio.new_event_loop()

        async def log_then_stop() -> None:
            structlog.get_logger().info("stranded")
            loop.stop()

        task = loop.create_task(log_then_stop())
        loop.run_forever()
        loop.close()
        assert task.done() and stream.getvalue() == ""

        async def log_next() -> None:
            structlog.get_logger().info("next")
            await asyncio.sleep(0)

        asyncio.run(log_next())
        assert [line["event"] for line in _lines(stream)] == ["stranded", "next"]
