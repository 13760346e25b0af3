"""pytest plugin: an isolated namespace per test, a hand-driven clock, a loopback LM, a whole app.

Registered through the ``pytest11`` entry point, so every test session has:

- ``runtime``: a fresh `Runtime` opened in its own namespace (named after the
  test) and shut down after the test; if the test also requests
  ``mock_clock``, the runtime runs on that clock. It is the current runtime
  (`current_runtime()`) in the test body, so what looks for one there (an
  `OptimizationRun`'s events and metrics, say) finds it without being passed it.
- ``mock_clock``: a `MockClock` at 0.0, advanced with ``mock_clock.advance(s)``.
- ``lm_server``: a running loopback `LMServer` on a free 127.0.0.1 port, for
  fault injection (``lm_server.add_fault(FaultRule(...))``), latency and
  request counts (``lm_server.stats()``).
- ``app``: the whole application tree (`open_app`) in its own namespace, with
  every LM provider pointed at ``lm_server`` (whatever model a program names,
  nothing leaves the machine) and a memory-only cache (``data_dir = None``)
  unless the test asks otherwise. On ``mock_clock`` too when requested. The
  app's runtime is the current runtime in the test body (when a test asks for
  both ``app`` and ``runtime``, the app's is).
- ``@pytest.mark.lmvisor_config(**overrides)``: settings for that test's
  ``runtime`` / ``app``, merged key by key into the defaults, e.g.
  ``@pytest.mark.lmvisor_config(modules={"cache_enabled": False})``.

Two tests never share anything: each has its own namespace, registry,
events, metrics, config, cache and loopback server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
import pytest_asyncio

from lmvisor.config.loading import config_from_tree
from lmvisor.config.schema import LmvisorConfig
from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.runtime import Runtime
from lmvisor.services.app import App, open_app
from lmvisor.testing.lm_server import LMServer

__all__ = ["app", "lm_server", "lmvisor_config", "mock_clock", "pytest_configure", "runtime"]

_MARKER = "lmvisor_config"
_SOURCE = f"@pytest.mark.{_MARKER}"


def pytest_configure(config: pytest.Config) -> None:
    """Register the `lmvisor_config` marker (the suite runs with --strict-markers)."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**overrides): settings merged into the test's runtime/app configuration",
    )


@pytest.fixture
def mock_clock() -> MockClock:
    """A clock that moves only when the test calls `advance()`."""
    return MockClock()


@pytest.fixture
def lmvisor_config(request: pytest.FixtureRequest) -> LmvisorConfig:
    """The test's configuration: debug logs, no data directory, plus its marker's overrides.

    Raises:
        TypeError: the marker was given positional arguments.
        ConfigError: an override is unknown or invalid (named by its dotted path; the
            value is not echoed).
    """
    # Debug level, so tests can capture progress reports too.
    overrides: dict[str, Any] = {"logging": {"level": "debug"}, "data_dir": None}
    for marker in reversed(list(request.node.iter_markers(_MARKER))):
        if marker.args:
            raise TypeError(f"@pytest.mark.{_MARKER} takes keyword arguments only")
        overrides = _merge(overrides, marker.kwargs)
    # Not pydantic's own error: its message quotes each bad value, a token included.
    tree = _merge(LmvisorConfig().model_dump(), overrides)
    return config_from_tree(tree, source=_SOURCE, action="pytest marker")


def _clock(request: pytest.FixtureRequest) -> MockClock | None:
    if "mock_clock" in request.fixturenames:
        clock: MockClock = request.getfixturevalue("mock_clock")
        return clock
    return None


@pytest_asyncio.fixture
async def runtime(
    request: pytest.FixtureRequest, lmvisor_config: LmvisorConfig
) -> AsyncIterator[Runtime]:
    """A fresh runtime per test, on `mock_clock` when the test requests it too."""
    namespace = f"test:{request.node.nodeid}"
    async with Runtime.open(lmvisor_config, namespace, clock=_clock(request)) as rt:
        if "app" in request.fixturenames:
            yield rt  # the app's runtime is the current one
            return
        # pytest-asyncio runs the test in this fixture's context, and tears the fixture
        # down in it too, so the block is entered and left in one context.
        with rt.as_current():
            yield rt


@pytest_asyncio.fixture
async def lm_server() -> AsyncIterator[LMServer]:
    """A loopback LM server on a free 127.0.0.1 port, stopped after the test."""
    async with LMServer() as server:
        yield server


@pytest_asyncio.fixture
async def app(
    request: pytest.FixtureRequest, lmvisor_config: LmvisorConfig, lm_server: LMServer
) -> AsyncIterator[App]:
    """The application tree in its own namespace, its LMs answered by `lm_server`."""
    namespace = f"app:{request.node.nodeid}"
    async with open_app(
        lmvisor_config, namespace=namespace, clock=_clock(request), lm_server=lm_server
    ) as application:
        with application.runtime.as_current():
            yield application


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged
