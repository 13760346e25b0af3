"""Cooldowns: a deployment that keeps failing is taken out of rotation for a while."""

from __future__ import annotations

import pytest

from lmvisor.runtime.clock import MockClock
from lmvisor.services.cooldown import MAX_TRACKED, Cooldowns


class TestCooldowns:
    def test_cools_after_allowed_fails(self) -> None:
        """The failure after `allowed_fails` starts a cooldown that ends on time."""
        clock = MockClock()
        cd = Cooldowns(clock=clock, allowed_fails=2, window=60.0, cooldown=5.0)
        assert cd.failure("openai") is False
        assert cd.failure("openai") is False
        assert cd.is_cooling("openai") is False
        assert cd.failure("openai") is True
        assert cd.is_cooling("openai") is True
        assert cd.statistics().cooling == ("openai",)
        clock.advance(5.0)
        assert cd.is_cooling("openai") is False
        assert cd.statistics().cooldowns_started == 1

    def test_old_failures_leave_the_window(self) -> None:
        """Failures older than the window do not count towards a cooldown."""
        clock = MockClock()
        cd = Cooldowns(clock=clock, allowed_fails=1, window=10.0, cooldown=5.0)
        cd.failure("a")
        clock.advance(11.0)
        assert cd.failure("a") is False
        assert cd.is_cooling("a") is False

    def test_success_clears_the_count(self) -> None:
        """A success between failures keeps the deployment in rotation."""
        clock = MockClock()
        cd = Cooldowns(clock=clock, allowed_fails=1, window=60.0, cooldown=5.0)
        cd.failure("a")
        cd.success("a")
        assert cd.failure("a") is False
        assert cd.is_cooling("b") is False

    def test_deployments_tracked_are_bounded_by_the_last_window(self) -> None:
        """Past MAX_TRACKED, a new deployment drops those with nothing left to remember."""
        clock = MockClock()
        cd = Cooldowns(clock=clock, allowed_fails=0, window=10.0, cooldown=5.0)
        for i in range(MAX_TRACKED):
            cd.failure(f"old{i}")  # each starts a cooldown
        assert cd.statistics().tracked == MAX_TRACKED
        clock.advance(11.0)
        for i in range(3 * MAX_TRACKED):
            cd.failure(f"new{i}")
            if i % MAX_TRACKED == MAX_TRACKED - 1:
                clock.advance(11.0)
        assert cd.statistics().tracked <= MAX_TRACKED
        assert cd.failure("new0") is True  # a deployment dropped counts again from nothing

    def test_a_deployment_still_in_its_window_is_kept(self) -> None:
        """Deployments with failures in the window are never dropped to make room."""
        clock = MockClock()
        cd = Cooldowns(clock=clock, allowed_fails=5, window=10.0, cooldown=5.0)
        for i in range(MAX_TRACKED + 10):
            cd.failure(f"d{i}")
        assert cd.statistics().tracked == MAX_TRACKED + 10

    def test_scans_for_room_are_amortized(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """New names failing within the window past MAX_TRACKED do not rescan every tracked
        deployment per failure: the next scan waits until the kept ones have doubled."""
        clock = MockClock()
        cd = Cooldowns(clock=clock, allowed_fails=5, window=10.0, cooldown=5.0)
        scans = []
        real = Cooldowns._forget_idle

        def counted(self: Cooldowns, now: float) -> None:
            scans.append(now)
            real(self, now)

        monkeypatch.setattr(Cooldowns, "_forget_idle", counted)
        for i in range(4 * MAX_TRACKED):
            cd.failure(f"d{i}")
        assert len(scans) == 2  # at MAX_TRACKED and at twice that, not once per name past it
        assert cd.statistics().tracked == 4 * MAX_TRACKED  # in-window failures are all kept
