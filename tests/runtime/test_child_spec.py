"""Tests for lmvisor.runtime.child_spec: validation, backoff and the pure restart decisions."""

from __future__ import annotations

from collections import deque

import pytest

from lmvisor.runtime.child_spec import (
    Backoff,
    ChildSpec,
    add_restart,
    check_child_specs,
    should_restart,
)
from lmvisor.runtime.messages import Shutdown

from .helpers import Counter


class TestChildSpec:
    def test_defaults(self) -> None:
        """A worker defaults to permanent, 5 s shutdown, no name, not significant."""
        spec = ChildSpec("a", Counter)
        assert (spec.restart, spec.shutdown, spec.type, spec.name, spec.significant) == (
            "permanent",
            5.0,
            "worker",
            None,
            False,
        )
        assert spec.shutdown_timeout == 5.0

    def test_supervisor_defaults_to_infinity(self) -> None:
        """A supervisor child waits without limit for its subtree to stop."""
        spec = ChildSpec("s", Counter, type="supervisor")
        assert spec.shutdown == "infinity"
        assert spec.shutdown_timeout is None
        assert ChildSpec("k", Counter, shutdown="brutal_kill").shutdown_timeout == 0.0

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"id": ""}, r"^ChildSpec\.id must be a non-empty str, got ''$"),
            ({"start": 3}, r"^ChildSpec\.start must be callable, got 3$"),
            (
                {"restart": "always"},
                r"^ChildSpec\.restart must be one of 'permanent', 'transient', 'temporary', "
                r"got 'always'$",
            ),
            (
                {"shutdown": -1},
                r"^ChildSpec\.shutdown must be seconds >= 0, 'brutal_kill' or 'infinity', got -1$",
            ),
            ({"shutdown": True}, r"^ChildSpec\.shutdown must be seconds >= 0"),
            (
                {"type": "daemon"},
                r"^ChildSpec\.type must be 'worker' or 'supervisor', got 'daemon'$",
            ),
            ({"name": ["x"]}, r"^ChildSpec\.name must be hashable, got \['x'\]$"),
            (
                {"name": ("lm", ["x"])},
                r"^ChildSpec\.name must be hashable, got \('lm', \['x'\]\)$",
            ),
            (
                {"significant": True},
                r"^ChildSpec\.significant=True requires restart 'transient' or 'temporary', "
                r"got restart='permanent'$",
            ),
        ],
    )
    def test_invalid_field_raises_value_error_naming_it(
        self, kwargs: dict[str, object], message: str
    ) -> None:
        """Each invalid field raises ValueError naming the field and value."""
        args: dict[str, object] = {"id": "a", "start": Counter}
        args.update(kwargs)
        with pytest.raises(ValueError, match=message):
            ChildSpec(**args)  # type: ignore[arg-type]


class TestCheckChildSpecs:
    def test_rejects_non_specs(self) -> None:
        """Anything but a ChildSpec raises TypeError."""
        with pytest.raises(TypeError, match=r"^children must be ChildSpec instances, got 'a'$"):
            check_child_specs(["a"])

    def test_rejects_duplicate_names(self) -> None:
        """Two specs registering one name raise ValueError naming both ids."""
        specs = [ChildSpec("a", Counter, name="n"), ChildSpec("b", Counter, name="n")]
        with pytest.raises(
            ValueError, match=r"^duplicate child name 'n' \(children 'a' and 'b'\)$"
        ):
            check_child_specs(specs)

    def test_returns_valid_specs(self) -> None:
        """Valid specs come back as a list in order."""
        specs = (ChildSpec("a", Counter), ChildSpec("b", Counter))
        assert check_child_specs(specs) == list(specs)


class TestBackoff:
    def test_delay_doubles_and_caps(self) -> None:
        """Without jitter the delay is min * 2**attempt, capped at max."""
        backoff = Backoff(min=0.5, max=3.0, jitter=0.0)
        assert [backoff.delay(n, 0.0) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]

    def test_jitter_spreads_around_the_base(self) -> None:
        """Jitter moves the delay by at most +/- jitter of the base."""
        backoff = Backoff(min=1.0, max=10.0, jitter=0.5)
        assert backoff.delay(0, 0.0) == 0.5
        assert backoff.delay(0, 0.5) == 1.0

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"min": -1}, r"^Backoff\.min must be a number >= 0, got -1$"),
            ({"min": 2.0, "max": 1.0}, r"^Backoff\.max must be >= Backoff\.min, got max=1\.0$"),
            ({"jitter": 2}, r"^Backoff\.jitter must be <= 1, got 2$"),
        ],
    )
    def test_invalid_backoff(self, kwargs: dict[str, float], message: str) -> None:
        """Invalid backoff fields raise ValueError naming the field."""
        with pytest.raises(ValueError, match=message):
            Backoff(**kwargs)


class TestDecisions:
    def test_add_restart_counts_within_window(self) -> None:
        """Restarts older than the window drop out; more than max_restarts fails."""
        times: deque[float] = deque()
        assert add_restart(times, 0.0, 2, 5.0)
        assert add_restart(times, 1.0, 2, 5.0)
        assert list(times) == [0.0, 1.0]
        assert not add_restart(times, 2.0, 2, 5.0)
        times = deque([0.0, 1.0])
        assert add_restart(times, 6.5, 2, 5.0)
        assert list(times) == [6.5]

    def test_restart_exactly_max_seconds_ago_still_counts(self) -> None:
        """As in supervisor.erl, the window is closed: a restart max_seconds ago is inside it."""
        times: deque[float] = deque([0.0, 1.0])
        assert not add_restart(times, 5.0, 2, 5.0)
        assert list(times) == [0.0, 1.0, 5.0]

    def test_zero_max_restarts_fails_at_once(self) -> None:
        """max_restarts=0 escalates on the first restart."""
        assert add_restart(deque(), 0.0, 0, 5.0) is False

    @pytest.mark.parametrize(
        ("restart", "reason", "expected"),
        [
            ("permanent", "normal", True),
            ("permanent", RuntimeError(), True),
            ("transient", "normal", False),
            ("transient", "shutdown", False),
            ("transient", Shutdown("x"), False),
            ("transient", "killed", True),
            ("transient", RuntimeError(), True),
            ("temporary", RuntimeError(), False),
        ],
    )
    def test_should_restart(self, restart: str, reason: object, expected: bool) -> None:
        """OTP's restart-type x reason rule."""
        assert should_restart(restart, reason) is expected  # type: ignore[arg-type]
