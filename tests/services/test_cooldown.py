"""Cooldowns: a deployment that keeps failing is taken out of rotation for a while."""

from __future__ import annotations

from lmvisor.runtime.clock import MockClock
from lmvisor.services.cooldown import Cooldowns


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
