"""Tests for lmvisor.testing.plugin: the runtime, mock_clock, lm_server and app fixtures."""

from __future__ import annotations

import asyncio

import pytest

from lmvisor.config.errors import ConfigError
from lmvisor.runtime.clock import MockClock, SystemClock
from lmvisor.runtime.runtime import Runtime, current_runtime
from lmvisor.services.app import App
from lmvisor.testing.lm_server import LMServer


class TestFixtures:
    async def test_runtime_fixture_is_open_and_namespaced(self, runtime: Runtime) -> None:
        """The runtime fixture is an open runtime named after the test, on the system clock."""
        assert runtime.root.alive
        assert runtime.namespace.endswith("test_runtime_fixture_is_open_and_namespaced")
        assert isinstance(runtime.clock, SystemClock)

    async def test_runtime_is_current_in_the_test_body(self, runtime: Runtime) -> None:
        """current_runtime() in the test body (and tasks it starts) is the fixture's runtime."""
        assert current_runtime() is runtime

        async def in_a_task() -> Runtime | None:
            return current_runtime()

        assert await asyncio.create_task(in_a_task()) is runtime

    def test_no_runtime_is_current_without_the_fixture(self) -> None:
        """A test that asks for no runtime sees none (nothing leaks from earlier tests)."""
        assert current_runtime() is None

    async def test_runtime_uses_mock_clock_when_requested(
        self, runtime: Runtime, mock_clock: MockClock
    ) -> None:
        """Requesting mock_clock too makes the runtime run on it."""
        assert runtime.clock is mock_clock
        mock_clock.advance(2.0)
        assert runtime.clock.monotonic() == 2.0


class TestAppFixtures:
    async def test_lm_server_fixture_is_a_running_loopback(self, lm_server: LMServer) -> None:
        """lm_server listens on 127.0.0.1 and counts what it serves."""
        assert lm_server.url.startswith("http://127.0.0.1:")
        assert lm_server.stats().requests == 0

    async def test_app_fixture_answers_from_the_lm_server(
        self, app: App, lm_server: LMServer
    ) -> None:
        """The app's LMs reach the test's own loopback server; its cache is memory-only."""
        assert current_runtime() is app.runtime
        await app.register("qa", {"module": "Predict", "signature": "question -> answer"})
        await app.run("qa", {"question": "hello?"})
        assert lm_server.stats().requests == 1
        assert app.runtime.namespace.endswith("test_app_fixture_answers_from_the_lm_server")
        assert app.runtime.config.data_dir is None

    @pytest.mark.lmvisor_config(modules={"cache_ttl": 5.0}, cache={"l1_size": 7})
    async def test_marker_merges_overrides(self, app: App, runtime: Runtime) -> None:
        """Marker overrides merge key by key into both the app and the runtime fixture.

        With both fixtures, the app's runtime is the current one.
        """
        assert current_runtime() is app.runtime
        for config in (app.runtime.config, runtime.config):
            assert config.modules.cache_ttl == 5.0
            assert config.modules.cache_enabled is True
            assert config.cache.l1_size == 7

    async def test_app_runs_on_mock_clock_when_requested(
        self, app: App, mock_clock: MockClock
    ) -> None:
        """Requesting mock_clock puts the app's runtime on it."""
        assert app.runtime.clock is mock_clock


class TestMarker:
    @pytest.mark.lmvisor_config(server={"tokens": "sk-live-never-echo-1234"}, bogus=1)
    def test_a_bad_override_names_its_field_not_its_value(
        self, request: pytest.FixtureRequest
    ) -> None:
        """An unknown key and a wrongly typed value fail the config with a ConfigError naming
        each field and the marker; the value (here a token) is not quoted, as pydantic's own
        message quoted it."""
        with pytest.raises(ConfigError) as info:
            request.getfixturevalue("lmvisor_config")
        message = str(info.value)
        assert "sk-live" not in message
        assert sorted(info.value.paths) == ["bogus", "server.tokens"]
        assert "(from @pytest.mark.lmvisor_config)" in message
        assert message.startswith("invalid configuration (pytest marker, 2 problems):")

    @pytest.mark.lmvisor_config("modules")
    def test_positional_arguments_are_refused(self, request: pytest.FixtureRequest) -> None:
        """The marker takes keyword arguments only, and says so."""
        with pytest.raises(TypeError, match=r"^@pytest.mark.lmvisor_config takes keyword"):
            request.getfixturevalue("lmvisor_config")
