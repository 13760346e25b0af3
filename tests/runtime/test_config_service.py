"""Tests for lmvisor.runtime.config_service: get, validated update, subscriptions."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from lmvisor.config.errors import ConfigError
from lmvisor.config.schema import LmvisorConfig, RateLimiterConfig, ServerConfig
from lmvisor.runtime.actor import Actor, handler
from lmvisor.runtime.config_service import (
    ConfigChanged,
    ConfigHolder,
    UnsubscribeConfig,
    config_service_spec,
    config_subscription_key,
    covers,
    get_config,
    subscribe_config,
    update_config,
)
from lmvisor.runtime.errors import ActorExited, RateLimited
from lmvisor.runtime.messages import Call
from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.runtime import Runtime
from tests.runtime._protection_helpers import until

# The runtime runs its own config service under the default name; these tests
# start a second one beside it so they control its initial tree.
SERVICE = "config_under_test"


@dataclass(frozen=True, slots=True)
class _Changes(Call[list[tuple[str, object, object]]]):
    pass


class _Listener(Actor):
    """Records (path, old, new) of each ConfigChanged it gets."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, object, object]] = []

    @handler
    def changed(self, msg: ConfigChanged) -> None:
        self.changes.append((msg.path, msg.old, msg.new))

    @handler
    def list_changes(self, msg: _Changes) -> list[tuple[str, object, object]]:
        return list(self.changes)


class TestCovers:
    @pytest.mark.parametrize(
        ("prefix", "path", "expected"),
        [
            ("", "server.port", True),
            ("server", "server.port", True),
            ("server.port", "server.port", True),
            ("providers.openai", "providers", True),
            ("server", "serverx.port", False),
            ("server.port", "server.host", False),
            ("cache", "server.port", False),
        ],
    )
    def test_covers(self, prefix: str, path: str, expected: bool) -> None:
        """A prefix covers its own path, paths under it and paths above it, on dot boundaries."""
        assert covers(prefix, path) is expected


class TestConfigService:
    async def test_get(self, runtime: Runtime) -> None:
        """get returns the whole tree, a subtree or a leaf; a bad path raises ConfigError."""
        config = LmvisorConfig()
        await runtime.start_child(config_service_spec(config, id=SERVICE, name=SERVICE))
        service = runtime.via(SERVICE)
        assert await get_config(service) == config
        assert await get_config(service, "server") == ServerConfig()
        assert await get_config(service, "optimization.copro.depth") == 3
        with pytest.raises(ConfigError, match=r"server\.nope: no such setting"):
            await get_config(service, "server.nope")

    async def test_update_notifies_subscribers(self, runtime: Runtime) -> None:
        """An accepted update replies with the new tree and sends ConfigChanged to subscribers."""
        await runtime.start_child(config_service_spec(LmvisorConfig(), id=SERVICE, name=SERVICE))
        service = runtime.via(SERVICE)
        server = await runtime.spawn(_Listener())
        other = await runtime.spawn(_Listener())
        await subscribe_config(service, server, "server")
        await subscribe_config(service, server, "server.port")
        await subscribe_config(service, other, "cache")
        updated = await update_config(service, "server.port", 9000)
        assert updated.server.port == 9000
        assert await get_config(service, "server.port") == 9000
        assert await server.call(_Changes()) == [("server.port", 8750, 9000)]
        assert await other.call(_Changes()) == []

    async def test_rejected_update_keeps_value_and_notifies_nobody(self, runtime: Runtime) -> None:
        """A refused update raises ConfigError, keeps the old value and sends nothing."""
        await runtime.start_child(config_service_spec(LmvisorConfig(), id=SERVICE, name=SERVICE))
        service = runtime.via(SERVICE)
        listener = await runtime.spawn(_Listener())
        await subscribe_config(service, listener)
        with pytest.raises(ConfigError, match=r"server\.port: Input should be less than"):
            await update_config(service, "server.port", 70000)
        with pytest.raises(ConfigError, match=r"server\.prot: Extra inputs are not permitted"):
            await update_config(service, "server.prot", 1)
        assert await get_config(service, "server.port") == 8750
        assert await listener.call(_Changes()) == []
        assert runtime.whereis(SERVICE) is not None
        assert await runtime.events.query(type="config.changed") == []

    async def test_accepted_update_is_recorded_as_an_event(self, runtime: Runtime) -> None:
        """An accepted update makes a config.changed event and line naming the path, no value."""
        await runtime.start_child(config_service_spec(LmvisorConfig(), id=SERVICE, name=SERVICE))
        await subscribe_config(runtime.via(SERVICE), await runtime.spawn(_Listener()), "server")
        with capture_logs() as logs:
            await update_config(runtime.via(SERVICE), "server.token", "s3cret-token-value")
        found = await runtime.events.query(type="config.changed")
        assert [dict(event.data) for event in found] == [{"path": "server.token"}]
        [line] = [e for e in logs if e["event"] == "config.changed"]
        assert line["path"] == "server.token" and "s3cret-token-value" not in repr(logs)

    async def test_a_change_nothing_applies_is_refused_naming_the_setting(
        self, runtime: Runtime
    ) -> None:
        """An update no prefix ever subscribed to covers (a setting read once at start) is a
        ConfigError naming the changed setting; the tree is kept, nothing is announced, and
        a change to a covered setting, or one that changes nothing, is accepted."""
        await runtime.start_child(config_service_spec(LmvisorConfig(), id=SERVICE, name=SERVICE))
        service = runtime.via(SERVICE)
        listener = await runtime.spawn(_Listener())
        await subscribe_config(service, listener, "server.port")
        with pytest.raises(
            ConfigError,
            match=r"^invalid configuration \(update, 1 problem\):\n  server\.host: is read at "
            r"start only: nothing running would apply a new value",
        ):
            await update_config(service, "server", {"port": 9000, "host": "0.0.0.0"})
        with pytest.raises(ConfigError, match=r"\n  data_dir: is read at start only"):
            await update_config(service, "data_dir", "/elsewhere")
        assert (await get_config(service, "server")).host == "127.0.0.1"
        assert await listener.call(_Changes()) == []
        assert await runtime.events.query(type="config.changed") == []
        await update_config(service, "server.host", "127.0.0.1")  # unchanged: nothing to apply
        await update_config(service, "server", {"port": 9000})
        assert await get_config(service, "server.port") == 9000
        assert [change[0] for change in await listener.call(_Changes())] == ["server"]

    async def test_new_entry_reports_old_as_none(self, runtime: Runtime) -> None:
        """Adding a new named entry reports None as the old value."""
        await runtime.start_child(config_service_spec(LmvisorConfig(), id=SERVICE, name=SERVICE))
        service = runtime.via(SERVICE)
        listener = await runtime.spawn(_Listener())
        await subscribe_config(service, listener, "providers")
        await update_config(service, "providers.ollama.base_url", "http://127.0.0.1:1/v1")
        assert await listener.call(_Changes()) == [
            ("providers.ollama.base_url", None, "http://127.0.0.1:1/v1")
        ]

    async def test_unsubscribe_and_dead_subscribers(self, runtime: Runtime) -> None:
        """Unsubscribed and dead subscribers get nothing; subscribing a dead actor fails."""
        await runtime.start_child(config_service_spec(LmvisorConfig(), id=SERVICE, name=SERVICE))
        service = runtime.via(SERVICE)
        quitter = await runtime.spawn(_Listener())
        doomed = await runtime.spawn(_Listener())
        await subscribe_config(service, quitter, "server")
        await subscribe_config(service, doomed, "server")
        await service.call(UnsubscribeConfig(quitter, "server"))
        await doomed.stop()
        assert runtime.registry.lookup_all(config_subscription_key("server")) == []
        await update_config(service, "server.port", 1)
        assert await quitter.call(_Changes()) == []
        with pytest.raises(ActorExited):
            await subscribe_config(service, doomed)

    async def test_updates_survive_a_restart(self, runtime: Runtime) -> None:
        """A restarted service resumes with the latest accepted configuration."""
        holder = ConfigHolder(LmvisorConfig())
        first = await runtime.start_child(config_service_spec(holder, id=SERVICE, name=SERVICE))
        await subscribe_config(first, await runtime.spawn(_Listener()), "server.port")
        await update_config(first, "server.port", 1234)
        await first.stop(RuntimeError("crash"))
        await until(lambda: runtime.whereis(SERVICE) not in (None, first), rounds=10_000)
        assert await get_config(runtime.via(SERVICE), "server.port") == 1234
        assert holder.config.server.port == 1234

    async def test_subscriptions_survive_a_restart(self, runtime: Runtime) -> None:
        """Subscribers listed before a crash of the service still hear of later updates."""
        first = await runtime.start_child(
            config_service_spec(LmvisorConfig(), id=SERVICE, name=SERVICE)
        )
        listener = await runtime.spawn(_Listener())
        await subscribe_config(first, listener, "server")
        await first.stop(RuntimeError("crash"))
        await until(lambda: runtime.whereis(SERVICE) not in (None, first), rounds=10_000)
        await update_config(runtime.via(SERVICE), "server.port", 4321)
        assert await listener.call(_Changes()) == [("server.port", 8750, 4321)]


class TestNamedProtections:
    async def test_an_infrastructure_update_reconfigures_built_breakers_and_limiters(
        self, runtime: Runtime
    ) -> None:
        """The runtime's named breakers and limiters (a vendor's, held by its provider) take
        an accepted infrastructure update in place; they kept their start-up values."""
        service = runtime.via("config")
        await update_config(service, "infrastructure.rate_limiters.openai", {"limit": 2})
        limiter = runtime.protections.limiter("openai")
        breaker = runtime.protections.breaker("openai")
        assert limiter is not None
        await update_config(service, "infrastructure.rate_limiters.openai.limit", 50)
        await update_config(service, "infrastructure.circuit_breakers.default.failure_threshold", 1)
        assert limiter.statistics().limit == 50
        assert breaker.failure_threshold == 1
        assert runtime.protections.limiter("openai") is limiter

    async def test_a_removed_entry_falls_back_to_the_callees_own_limit(
        self, runtime: Runtime
    ) -> None:
        """A limiter built over a vendor's own limit returns to it when its entry goes."""
        own = RateLimiterConfig(limit=7, scale=60.0)
        service = runtime.via("config")
        await update_config(service, "infrastructure.rate_limiters.openai", {"limit": 2})
        limiter = runtime.protections.limiter("openai", default=own)
        assert limiter is not None and limiter.statistics().limit == 2
        await update_config(service, "infrastructure.rate_limiters", {})
        assert limiter.statistics().limit == 7

    async def test_a_removed_entry_with_no_own_limit_lifts_the_limiter(
        self, runtime: Runtime
    ) -> None:
        """With no limit of the callee's own, removing the entry stops the limiting (the
        holder keeps the object); setting one again limits again."""
        service = runtime.via("config")
        await update_config(service, "infrastructure.rate_limiters.openai", {"limit": 1})
        limiter = runtime.protections.limiter("openai")
        assert limiter is not None
        limiter.try_acquire()
        await update_config(service, "infrastructure.rate_limiters", {})
        for _ in range(3):
            limiter.try_acquire()
        await update_config(service, "infrastructure.rate_limiters.openai", {"limit": 1})
        with pytest.raises(RateLimited, match=r"^rate limit 'openai' reached"):
            limiter.try_acquire()

    async def test_a_refused_update_leaves_protections_as_they_were(self, runtime: Runtime) -> None:
        """A refused breaker threshold (0) is a ConfigError naming the field; the breaker,
        the tree and the subscribers are untouched."""
        service = runtime.via("config")
        breaker = runtime.protections.breaker("openai")
        path = "infrastructure.circuit_breakers.default.failure_threshold"
        with pytest.raises(ConfigError, match=r"^invalid configuration \(update, 1 problem\)") as e:
            await update_config(service, path, 0)
        assert e.value.paths == (path,)
        assert breaker.failure_threshold == 5
        assert await get_config(service, path) == 5
