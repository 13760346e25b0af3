"""Tests for lmvisor.runtime.messages: exit reason classification and message bases."""

from __future__ import annotations

import pytest

from lmvisor.runtime.messages import Call, Cast, Shutdown, is_normal_exit, is_shutdown_exit


class TestReasons:
    @pytest.mark.parametrize(
        ("reason", "normal", "orderly"),
        [
            ("normal", True, True),
            ("shutdown", False, True),
            (Shutdown("reached_max_restart_intensity"), False, True),
            ("killed", False, False),
            (RuntimeError("x"), False, False),
        ],
    )
    def test_classification(self, reason: object, normal: bool, orderly: bool) -> None:
        """normal is normal; normal, shutdown and Shutdown(...) are orderly; the rest are not."""
        assert is_normal_exit(reason) is normal
        assert is_shutdown_exit(reason) is orderly

    def test_bases_have_no_instance_dict(self) -> None:
        """Call and Cast add no per-instance state to slotted message dataclasses."""
        assert Call.__slots__ == ()
        assert Cast.__slots__ == ()
