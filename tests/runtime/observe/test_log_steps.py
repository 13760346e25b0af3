"""Tests for lmvisor.runtime.observe._log_steps: the log chain's per-line steps and output."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime

import structlog
from structlog.processors import StackInfoRenderer, format_exc_info

from lmvisor._redaction import REDACTED, Redactor
from lmvisor.runtime.correlation import correlation_scope
from lmvisor.runtime.observe._log_steps import (
    CleanMemo,
    Exceptions,
    LineWriter,
    Stamper,
    render_json,
)

VENDOR_KEY = "sk-proj-Abc123def456ghi789jkl"


class _CountingStream(io.StringIO):
    """A stream that counts its write calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _events(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


class TestCleanMemo:
    def test_output_matches_the_redactor(self) -> None:
        """Seen or not, every value comes out as the plain redactor would write it."""
        memo = CleanMemo(Redactor(max_length=32))
        plain = Redactor(max_length=32)
        event = {
            "event": "http.request",
            "route": "/v1/tree",
            "note": f"key {VENDOR_KEY}",
            "api_key": "short",
            "long": "x" * 40,
            "n": 3,
            "nested": {"password": "hunter2"},
        }
        for _ in range(3):  # the second and third pass go through the memo
            assert memo(None, "info", dict(event)) == plain(None, "info", dict(event))

    def test_a_secret_is_never_remembered(self) -> None:
        """Text the redactor changed is judged again each time, never kept as clean."""
        memo = CleanMemo(Redactor())
        for _ in range(2):
            out = memo(None, "info", {"event": "x", "note": f"Bearer {VENDOR_KEY}"})
            assert VENDOR_KEY not in out["note"]
        assert VENDOR_KEY not in repr(memo._clean)

    def test_a_clean_string_under_a_secret_key_is_still_replaced(self) -> None:
        """A string remembered as clean is replaced when it comes under a secret key."""
        memo = CleanMemo(Redactor())
        memo(None, "info", {"event": "x", "route": "plain-value"})
        assert memo(None, "info", {"event": "x", "token": "plain-value"})["token"] == REDACTED

    def test_a_generated_correlation_id_skips_the_redactor(self) -> None:
        """The open scope's generated id is written as it is, and not kept in the memo."""
        memo = CleanMemo(Redactor())
        with correlation_scope("0123456789abcdef-1f", generated=True) as scope:
            out = memo(None, "info", {"event": "x", "correlation_id": scope.id})
        assert out["correlation_id"] == scope.id
        assert scope.id not in memo._clean

    def test_a_given_correlation_id_is_judged(self) -> None:
        """An id a caller gave passes the redactor: one that looks like a key is replaced."""
        memo = CleanMemo(Redactor())
        with correlation_scope(VENDOR_KEY) as scope:
            out = memo(None, "info", {"event": "x", "correlation_id": scope.id})
        assert VENDOR_KEY not in out["correlation_id"]

    def test_only_the_scope_id_itself_is_trusted(self) -> None:
        """An equal copy of a generated id is judged, and the id under a secret key is replaced."""
        memo = CleanMemo(Redactor())
        with correlation_scope("0123456789abcdef-2a", generated=True) as scope:
            copy = "".join(list(scope.id))
            out = memo(None, "info", {"event": "x", "note": copy, "token": scope.id})
        assert out == {"event": "x", "note": copy, "token": REDACTED}
        assert copy in memo._clean


class TestExceptions:
    def test_a_line_without_either_key_passes_untouched(self) -> None:
        """A line with neither `exc_info` nor `stack_info` comes back as it was."""
        event = {"event": "x", "n": 1}
        assert Exceptions()(None, "info", event) is event
        assert event == {"event": "x", "n": 1}

    def test_renders_as_structlog_does(self) -> None:
        """`exc_info` comes out as structlog's StackInfoRenderer then format_exc_info write it."""
        try:
            raise ValueError("boom")
        except ValueError as exc:
            error = exc
        ours = Exceptions()(None, "error", {"event": "x", "exc_info": error, "stack_info": False})
        plain = StackInfoRenderer()(None, "error", {"event": "x", "exc_info": error})
        assert ours == format_exc_info(None, "error", plain)
        assert "ValueError: boom" in ours["exception"]
        assert "exc_info" not in ours
        assert "stack_info" not in ours

    def test_the_stack_ends_where_the_line_was_logged(self) -> None:
        """`stack_info` becomes `stack`, whose last frame is the caller, not the step."""
        out = Exceptions()(None, "info", {"event": "x", "stack_info": True})
        frames = [line for line in out["stack"].splitlines() if line.startswith("  File")]
        assert frames[-1].endswith("in test_the_stack_ends_where_the_line_was_logged")
        assert "stack_info" not in out


class TestStamper:
    def test_iso_utc_with_microseconds(self) -> None:
        """The stamp is what datetime writes for the same instant, with a Z."""
        stamper = Stamper()
        for seconds in (0.0, 1_700_000_000.25, 1_700_000_000.999999, 1_700_000_001.5):
            expected = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            assert stamper.stamp(seconds) == expected

    def test_a_line_keeps_its_own_time(self) -> None:
        """A line that already carries `timestamp` is left as it is."""
        event = Stamper()(None, "info", {"event": "x", "timestamp": "then"})
        assert event["timestamp"] == "then"


class TestRenderJson:
    def test_compact_json_with_fallbacks(self) -> None:
        """Values JSON cannot hold are written as their repr, and huge ints still render."""

        class _Thing:
            def __repr__(self) -> str:
                return "<thing>"

        line = render_json(None, "info", {"event": "x", "obj": _Thing(), "big": 2**70})
        assert json.loads(line) == {"event": "x", "obj": "<thing>", "big": 2**70}


class TestLineWriter:
    def test_plain_lines_are_written_at_once(self) -> None:
        """Each line of the writer itself is written and flushed as it comes."""
        stream = _CountingStream()
        writer = LineWriter(stream)
        writer.info("a")
        writer.error("b")
        assert (_events(stream), stream.writes) == (["a", "b"], 2)

    async def test_per_turn_lines_wait_for_the_turn_end(self) -> None:
        """Lines of one loop turn reach the stream together, in one write, when it ends."""
        stream = _CountingStream()
        writer = LineWriter(stream)
        for n in range(3):
            writer.per_turn.info(f"line {n}")
        assert stream.getvalue() == ""
        await asyncio.sleep(0)
        assert (_events(stream), stream.writes) == (["line 0", "line 1", "line 2"], 1)

    async def test_other_lines_keep_their_place(self) -> None:
        """A line written at once goes out after the per-turn lines logged before it."""
        stream = io.StringIO()
        writer = LineWriter(stream)
        writer.per_turn.info("first")
        writer.warning("second")
        writer.per_turn.info("third")
        await asyncio.sleep(0)
        assert _events(stream) == ["first", "second", "third"]

    async def test_flush_writes_the_pending_lines(self) -> None:
        """`flush()` writes what the current turn holds."""
        stream = io.StringIO()
        writer = LineWriter(stream)
        writer.per_turn.info("pending")
        writer.flush()
        assert _events(stream) == ["pending"]

    async def test_a_burst_is_written_without_waiting(self) -> None:
        """A turn holds a bounded number of lines: past it they are written at once."""
        stream = io.StringIO()
        writer = LineWriter(stream)
        for n in range(1024):
            writer.per_turn.info(str(n))
        assert len(_events(stream)) == 1024

    def test_per_turn_without_a_loop_is_written_at_once(self) -> None:
        """Off an event loop a per-turn line is written as it comes."""
        stream = io.StringIO()
        LineWriter(stream).per_turn.info("now")
        assert _events(stream) == ["now"]

    def test_a_stopped_loop_strands_no_line(self) -> None:
        """A line pending on a loop that stopped goes out with the next loop's line."""
        stream = io.StringIO()
        writer = LineWriter(stream)
        loop = asyncio.new_event_loop()

        async def log_then_stop() -> None:
            writer.per_turn.info("stranded")
            loop.stop()

        task = loop.create_task(log_then_stop())
        loop.run_forever()
        loop.close()
        assert task.done() and stream.getvalue() == ""

        async def log_next() -> None:
            writer.per_turn.info("next")
            await asyncio.sleep(0)

        asyncio.run(log_next())
        assert _events(stream) == ["stranded", "next"]

    async def test_serves_as_structlog_logger(self) -> None:
        """structlog renders through both loggers, in the order the lines were logged."""
        stream = io.StringIO()
        writer = LineWriter(stream)
        chain = [structlog.processors.JSONRenderer()]
        turn = structlog.wrap_logger(writer.per_turn, processors=chain)
        now = structlog.wrap_logger(writer, processors=chain)
        turn.info("a")
        now.error("b")
        await asyncio.sleep(0)
        assert [json.loads(line)["event"] for line in _events(stream)] == ["a", "b"]
