"""Tests for lmvisor.runtime.observe.reports: recorded on the spot, written a moment later."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from lmvisor.runtime.correlation import CorrelationScope, correlation_scope
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.logs import RuntimeLogging, capture_logs
from lmvisor.runtime.observe.names import (
    ACTOR_CRASHED,
    SUPERVISOR_PROGRESS,
    SUPERVISOR_REPORT,
    TASK_CRASHED,
)
from lmvisor.runtime.observe.reports import Reporter

KEY = "sk-proj-Abc123def456ghi789jkl"


def _reporter(level: str = "info", delay: float = 60.0) -> tuple[Reporter, io.StringIO, EventRing]:
    stream = io.StringIO()
    logging = RuntimeLogging(namespace="ns", stream=stream, level=level)
    ring = EventRing(100, namespace="ns")
    reporter = Reporter(logging=logging, events=ring, loop=asyncio.get_running_loop(), delay=delay)
    return reporter, stream, ring


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _crash(reporter: Reporter, exc: BaseException, scope: CorrelationScope | None = None) -> None:
    reporter.actor_crashed(
        actor="A<2>", last_message=("msg", 1), state={"n": 1}, reason=exc, caller=scope
    )


class TestDeferral:
    async def test_nothing_is_rendered_until_flush(self) -> None:
        """A report only records objects; the log line and the event appear on flush."""
        reporter, stream, ring = _reporter()
        _crash(reporter, ValueError("bad"))
        assert reporter.statistics().pending == 1
        assert stream.getvalue() == "" and len(ring) == 0
        reporter.flush()
        assert reporter.statistics().pending == 0
        assert reporter.statistics().written == 1
        assert [line["event"] for line in _lines(stream)] == [ACTOR_CRASHED]
        assert [event.type for event in ring.query()] == [ACTOR_CRASHED]

    async def test_the_loop_timer_flushes(self) -> None:
        """Without any flush call, pending reports are written once the delay has passed."""
        reporter, _, ring = _reporter(delay=0.0)
        _crash(reporter, ValueError("bad"))
        for _ in range(50):
            if not reporter.statistics().pending:
                break
            await asyncio.sleep(0)
        assert reporter.statistics().pending == 0
        assert len(ring) == 1

    async def test_a_storm_is_written_without_waiting_for_the_delay(self) -> None:
        """A thousand pending reports are written on the next loop turn, not after the delay."""
        reporter, _, ring = _reporter(delay=3600.0)
        for n in range(1000):
            reporter.supervisor_report(supervisor="S<1>", context="child_terminated",
                                       reason=n, offender="w")  # fmt: skip
        await asyncio.sleep(0)
        assert reporter.statistics().pending == 0
        assert len(ring) == 100  # the ring keeps its newest 100

    async def test_close_writes_pending_and_later_reports_at_once(self) -> None:
        """After close, nothing waits for a timer that may never run."""
        reporter, _, ring = _reporter()
        _crash(reporter, ValueError("one"))
        reporter.close()
        assert len(ring) == 1
        _crash(reporter, ValueError("two"))
        assert len(ring) == 2 and reporter.statistics().pending == 0

    async def test_flush_through_the_log_chain(self) -> None:
        """Flushing the runtime's log chain (as capture_logs does on exit) writes reports."""
        reporter, _, ring = _reporter()
        _crash(reporter, ValueError("bad"))
        reporter._logging.flush()
        assert len(ring) == 1


class TestContent:
    async def test_crash_report_keeps_its_fixed_keys_in_both_signals(self) -> None:
        """actor.crashed has actor, last_message, state, reason, caller, and the traceback."""
        reporter, stream, ring = _reporter()
        try:
            raise ValueError("bad input")
        except ValueError as exc:
            error = exc
        _crash(reporter, error, CorrelationScope(id="c-1", parent_id=None))
        reporter.flush()
        [line] = _lines(stream)
        assert {k: line[k] for k in ("actor", "last_message", "state", "reason", "caller")} == {
            "actor": "A<2>",
            "last_message": ["msg", 1],
            "state": {"n": 1},
            "reason": "ValueError('bad input')",
            "caller": "c-1",
        }
        assert line["correlation_id"] == "c-1"
        assert str(line["exception"]).endswith("ValueError: bad input")
        [event] = ring.query()
        assert event.correlation_id == "c-1"
        assert event.data["reason"] == "ValueError('bad input')"
        assert event.data["last_message"] == ["msg", 1]
        assert event.data["exception"].startswith("Traceback (most recent call last):")

    async def test_time_is_when_it_happened(self) -> None:
        """The event and the log line carry the time the report was made, not the flush time."""
        reporter, stream, ring = _reporter()
        reporter.supervisor_report(supervisor="S<1>", context="shutdown", reason="x", offender="w")
        made = reporter._pending[0].at
        await asyncio.sleep(0.01)
        reporter.flush()
        assert ring.query()[0].timestamp == made
        assert _lines(stream)[0]["timestamp"] != ""

    async def test_secrets_never_reach_either_signal(self) -> None:
        """State, message and exception text are redacted in the line and in the event."""
        reporter, stream, ring = _reporter()
        reporter.actor_crashed(actor="A<1>", last_message={"api_key": KEY},
                               state={"token": KEY, "note": f"key {KEY}"},
                               reason=RuntimeError(f"refused {KEY}"), caller=None)  # fmt: skip
        reporter.flush()
        assert KEY not in stream.getvalue()
        assert KEY not in json.dumps(ring.query()[0].data)

    async def test_traceback_is_the_one_at_the_crash(self) -> None:
        """Re-raising the exception after the report does not add frames to it."""
        reporter, stream, _ = _reporter()

        def deeper_frame_added_later(exc: BaseException) -> None:
            raise exc

        try:
            raise KeyError("k")
        except KeyError as exc:
            error = exc
        _crash(reporter, error)
        with pytest.raises(KeyError):
            deeper_frame_added_later(error)
        reporter.flush()
        assert "deeper_frame_added_later" not in str(_lines(stream)[0]["exception"])

    async def test_lines_carry_only_what_was_recorded(self) -> None:
        """Whoever flushes, its correlation scope does not leak into other reports' lines."""
        reporter, stream, _ = _reporter()
        reporter.supervisor_report(supervisor="S<1>", context="shutdown", reason="x", offender="w")
        with correlation_scope("flusher"):
            reporter.flush()
        assert "correlation_id" not in _lines(stream)[0]

    async def test_an_object_whose_repr_raises_is_shown_safely(self) -> None:
        """A value whose repr raises becomes a note naming its type, in the line and the event."""

        class Hostile:
            def __repr__(self) -> str:
                raise RuntimeError("no repr")

        reporter, stream, ring = _reporter()
        reporter.supervisor_report(supervisor="S", context="shutdown", reason=Hostile(),
                                   offender="w")  # fmt: skip
        reporter.flush()
        note = "<Hostile object (repr failed: RuntimeError)>"
        assert ring.query()[0].data["reason"] == note
        assert _lines(stream)[0]["reason"] == note
        assert reporter.statistics().failed == 0

    async def test_a_report_that_fails_does_not_stop_the_others(self) -> None:
        """A report whose writing raises is counted as failed; the next one is still written."""
        reporter, _, ring = _reporter()
        failing = [True]
        real_emit = ring.emit_in

        def emit_in(*args: object, **kw: object) -> object:
            if failing.pop() if failing else False:
                raise OSError("disk gone")
            return real_emit(*args, **kw)  # type: ignore[arg-type]

        reporter._events = type("Ring", (), {"emit_in": staticmethod(emit_in)})()  # type: ignore[assignment]
        with capture_logs(reporter._logging) as logs:
            reporter.task_crashed(supervisor="T<1>", task="t", reason=ValueError("first"))
            reporter.task_crashed(supervisor="T<1>", task="t", reason=ValueError("second"))
        assert reporter.statistics().failed == 1
        assert reporter.statistics().written == 1
        assert [e.data["reason"] for e in ring.query()] == ["ValueError('second')"]
        assert [e["event"] for e in logs] == ["report failed", TASK_CRASHED]

    async def test_progress_is_a_debug_line_and_no_event(self) -> None:
        """supervisor.progress is skipped at info level and never becomes an event."""
        quiet, _, quiet_ring = _reporter("info")
        quiet.supervisor_progress(supervisor="S<1>", started="w")
        assert quiet.statistics().pending == 0
        loud, stream, ring = _reporter("debug")
        loud.supervisor_progress(supervisor="S<1>", started="w")
        loud.flush()
        assert [line["event"] for line in _lines(stream)] == [SUPERVISOR_PROGRESS]
        assert len(ring) == 0 and len(quiet_ring) == 0

    async def test_capture_sees_reports_with_their_objects(self) -> None:
        """capture_logs on the chain collects a report's fields as the objects passed."""
        reporter, _, _ = _reporter()
        reason = ValueError("v")
        with capture_logs(reporter._logging) as logs:
            reporter.supervisor_report(supervisor="S<1>", context="child_terminated",
                                       reason=reason, offender="w")  # fmt: skip
        [entry] = logs
        assert entry["event"] == SUPERVISOR_REPORT
        assert entry["reason"] is reason
        assert entry["log_level"] == "error"
