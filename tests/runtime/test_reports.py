"""Tests for lmvisor.runtime.reports: event names and fixed keys."""

from __future__ import annotations

from structlog.testing import capture_logs

from lmvisor.runtime import reports


class TestReports:
    def test_event_names(self) -> None:
        """Report names are the fixed lifecycle event names."""
        assert (reports.ACTOR_CRASHED, reports.SUPERVISOR_REPORT, reports.SUPERVISOR_PROGRESS) == (
            "actor.crashed",
            "supervisor.report",
            "supervisor.progress",
        )

    def test_supervisor_report_keys(self) -> None:
        """supervisor.report carries supervisor, context, reason and offender at error level."""
        with capture_logs() as logs:
            reports.supervisor_report(
                "ns", supervisor="S<1>", context="shutdown", reason="why", offender="c"
            )
        assert logs == [
            {
                "event": "supervisor.report",
                "namespace": "ns",
                "supervisor": "S<1>",
                "context": "shutdown",
                "reason": "why",
                "offender": "c",
                "log_level": "error",
            }
        ]

    def test_crash_report_passes_the_exception_for_lazy_rendering(self) -> None:
        """actor.crashed hands the exception object itself to the logger, unformatted."""
        exc = ValueError("bad")
        with capture_logs() as logs:
            reports.actor_crashed(
                "ns", actor="A<2>", last_message=None, state={}, reason=exc, caller="c1"
            )
        assert logs[0]["exc_info"] is exc
        assert logs[0]["reason"] is exc
        assert logs[0]["caller"] == "c1"
