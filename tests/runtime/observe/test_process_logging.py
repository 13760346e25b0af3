"""Tests for lmvisor.runtime.observe.process_logging: the daemon's process-wide setup."""

from __future__ import annotations

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
