"""Tests for lmvisor.testing.plugin: the runtime and mock_clock fixtures."""

from __future__ import annotations

from lmvisor.runtime.clock import MockClock, SystemClock
from lmvisor.runtime.runtime import Runtime


class TestFixtures:
    async def test_runtime_fixture_is_open_and_namespaced(self, runtime: Runtime) -> None:
        """The runtime fixture is an open runtime named after the test, on the system clock."""
        assert runtime.root.alive
        assert runtime.namespace.endswith("test_runtime_fixture_is_open_and_namespaced")
        assert isinstance(runtime.clock, SystemClock)

    async def test_runtime_uses_mock_clock_when_requested(
        self, runtime: Runtime, mock_clock: MockClock
    ) -> None:
        """Requesting mock_clock too makes the runtime run on it."""
        assert runtime.clock is mock_clock
        mock_clock.advance(2.0)
        assert runtime.clock.monotonic() == 2.0
