"""pytest plugin: an isolated runtime namespace per test, and a hand-driven clock.

Registered through the ``pytest11`` entry point, so every test session has:

- ``runtime``: a fresh `Runtime` opened in its own namespace (named after the
  test) and shut down after the test; if the test also requests
  ``mock_clock``, the runtime runs on that clock.
- ``mock_clock``: a `MockClock` at 0.0, advanced with ``mock_clock.advance(s)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from lmvisor.config.schema import LmvisorConfig, LoggingConfig
from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.runtime import Runtime

__all__ = ["mock_clock", "runtime"]


@pytest.fixture
def mock_clock() -> MockClock:
    """A clock that moves only when the test calls `advance()`."""
    return MockClock()


@pytest_asyncio.fixture
async def runtime(request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    """A fresh runtime per test, on `mock_clock` when the test requests it too."""
    clock: MockClock | None = None
    if "mock_clock" in request.fixturenames:
        clock = request.getfixturevalue("mock_clock")
    # Debug level, so tests can capture progress reports too.
    config = LmvisorConfig(logging=LoggingConfig(level="debug"))
    async with Runtime.open(config, f"test:{request.node.nodeid}", clock=clock) as rt:
        yield rt
