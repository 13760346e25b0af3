"""Provider settings changed while the app runs: keys, URLs, limits, vendors added and removed."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from lmvisor.config import load_config
from lmvisor.config.errors import ConfigError
from lmvisor.config.schema import LmvisorConfig
from lmvisor.programs.lm import LMCapabilities, LMRequest
from lmvisor.providers import AuthenticationError
from lmvisor.providers.client import VendorClient
from lmvisor.runtime.config_service import get_config, update_config
from lmvisor.runtime.errors import RateLimited
from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.runtime import Runtime
from lmvisor.runtime.supervisor import which_children
from lmvisor.services.lm_provider import Complete, GetStatistics, OpenStream, provider_name
from lmvisor.services.lm_services import LMServices, build_client, start_lm_providers
from lmvisor.services.provider_roster import LM_PROVIDERS
from lmvisor.testing.capture import capture_events
from lmvisor.testing.lm_server import LMServer

OLD_KEY = "sk-old-Rotate0000000000000000000000"
NEW_KEY = "sk-new-Rotate1111111111111111111111"


def _entry(server: LMServer, **fields: Any) -> dict[str, Any]:
    return {"kind": "openai", "base_url": server.url + "/v1", "max_retries": 0, **fields}


def _config(server: LMServer, **fields: Any) -> LmvisorConfig:
    return load_config(env={}, providers={"local": _entry(server, api_key=OLD_KEY, **fields)})


@asynccontextmanager
async def _running(
    config: LmvisorConfig, make_client: Callable[[str, Any], VendorClient] = build_client
) -> AsyncIterator[tuple[Runtime, LMServices]]:
    async with Runtime.open(config) as runtime:
        yield runtime, await start_lm_providers(runtime, config, make_client=make_client)


def _request(model: str = "local/llama3", text: str = "hello") -> LMRequest:
    return LMRequest(model=model, messages=[{"role": "user", "content": text}])


async def _call(runtime: Runtime, vendor: str = "local", **kwargs: Any) -> Any:
    return await runtime.via(provider_name(vendor)).call(
        Complete(request=_request(f"{vendor}/llama3"), **kwargs), timeout=30.0
    )


async def _until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait for state owned by another task (the server, the supervisor) to reach `condition`."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 (neither offers a notification to wait on)
            await asyncio.sleep(0.005)


def _recording() -> tuple[list[VendorClient], Callable[[str, Any], VendorClient]]:
    clients: list[VendorClient] = []

    def make(name: str, cfg: Any) -> VendorClient:
        clients.append(build_client(name, cfg))
        return clients[-1]

    return clients, make


class TestKeyRotation:
    async def test_calls_after_the_update_use_the_new_key_one_in_flight_completes(self) -> None:
        """A call in flight at a key update finishes on the old client, which is then
        closed; the calls after it carry the new key."""
        async with LMServer(api_key=OLD_KEY, latency=0.3) as server:
            clients, make = _recording()
            async with _running(_config(server), make) as (runtime, _):
                in_flight = asyncio.ensure_future(_call(runtime))
                await _until(lambda: server.stats().in_flight == 1)
                server.api_key = NEW_KEY  # the vendor revokes the old key
                await update_config(runtime.via("config"), "providers.local.api_key", NEW_KEY)
                server.latency = 0.0
                assert (await _call(runtime)).outputs
                assert (await in_flight).outputs
                assert len(clients) == 2
                await _until(lambda: clients[0].closed)
                assert not clients[1].closed
        assert server.stats().by_status.get(401, 0) == 0

    async def test_without_the_update_the_revoked_key_fails(self) -> None:
        """The control: once the vendor revokes the key, calls fail until it is rotated."""
        async with (
            LMServer(api_key=OLD_KEY) as server,
            _running(_config(server)) as (runtime, _),
        ):
            server.api_key = NEW_KEY
            with pytest.raises(AuthenticationError):
                await _call(runtime)
            await update_config(runtime.via("config"), "providers.local.api_key", NEW_KEY)
            assert (await _call(runtime)).outputs

    async def test_the_new_key_reaches_no_log_event_error_or_repr(self) -> None:
        """Logs, events, a refused update's error, the settings' and actor's reprs and the
        JSON view of the tree never show the new key."""
        async with (
            LMServer(api_key=NEW_KEY) as server,
            _running(_config(server)) as (runtime, services),
        ):
            config = runtime.via("config")
            with capture_logs() as logs, capture_events(runtime) as events:
                await update_config(config, "providers.local.api_key", NEW_KEY)
                assert (await _call(runtime)).outputs
                with pytest.raises(ConfigError) as refused:
                    await update_config(
                        config, "providers.local", _entry(server, api_key=NEW_KEY, rpm=0)
                    )
            shown = [
                str(logs),
                str([(e.type, e.data) for e in events]),
                str(refused.value),
                repr(services.settings["local"]),
                repr(await get_config(config, "providers.local")),
                runtime.config.model_dump_json(),
                str(runtime.tree()),
            ]
            assert [NEW_KEY in text for text in shown] == [False] * len(shown)
            assert "config.changed" in [e.type for e in events]


class TestBaseUrl:
    async def test_calls_move_to_the_new_base_url(self) -> None:
        """After `base_url` moves from one server to another, calls reach the second."""
        async with (
            LMServer() as first,
            LMServer() as second,
            _running(_config(first)) as (runtime, _),
        ):
            assert (await _call(runtime)).outputs
            url = second.url + "/v1"
            await update_config(runtime.via("config"), "providers.local.base_url", url)
            for _ in range(3):
                assert (await _call(runtime)).outputs
        assert (first.stats().requests, second.stats().requests) == (1, 3)


class TestRateLimit:
    async def test_rpm_lowered_then_raised_reconfigures_the_same_limiter(self) -> None:
        """rpm 1,000 -> 1 refuses a second call that cannot wait; back to 1,000 lets it
        through; the runtime's named limiter is the one object throughout."""
        async with (
            LMServer() as server,
            _running(_config(server, rpm=1000)) as (runtime, _),
        ):
            limiter = runtime.protections.limiter("local")
            assert limiter is not None
            config = runtime.via("config")
            await update_config(config, "providers.local.rpm", 1)
            assert runtime.protections.limiter("local") is limiter
            assert limiter.statistics().limit == 1
            assert (await _call(runtime)).outputs
            soon = runtime.clock.monotonic() + 0.5
            with pytest.raises(RateLimited):
                await _call(runtime, deadline=soon)
            await update_config(config, "providers.local.rpm", 1000)
            assert limiter.statistics().limit == 1000
            assert (await _call(runtime, deadline=runtime.clock.monotonic() + 5)).outputs

    async def test_an_rpm_set_where_none_was_limits_and_removed_lifts(self) -> None:
        """A vendor started without rpm gains a limiter when one is set, and loses it again."""
        async with LMServer() as server, _running(_config(server)) as (runtime, services):
            config = runtime.via("config")
            assert services.protections["local"].limiter is None
            await update_config(config, "providers.local.rpm", 1)
            assert (await _call(runtime)).outputs
            with pytest.raises(RateLimited):
                await _call(runtime, deadline=runtime.clock.monotonic() + 0.5)
            await update_config(config, "providers.local.rpm", None)
            assert services.protections["local"].limiter is None
            assert (await _call(runtime, deadline=runtime.clock.monotonic() + 5)).outputs

    async def test_budget_and_retries_follow_the_entry(self) -> None:
        """budget_usd takes its new cap keeping the spend; max_retries rebuilds the retry."""
        async with (
            LMServer() as server,
            _running(_config(server, budget_usd=5.0)) as (runtime, services),
        ):
            config = runtime.via("config")
            budget = services.protections["local"].budget
            assert budget is not None and services.protections["local"].retry is None
            await update_config(config, "providers.local.budget_usd", 7.0)
            await update_config(config, "providers.local.max_retries", 2)
            assert services.protections["local"].budget is budget
            assert budget.statistics().limit == 7.0
            retry = services.protections["local"].retry
            assert retry is not None and retry.max_attempts == 3


class TestVendors:
    async def test_a_vendor_added_then_removed(self) -> None:
        """An added vendor starts and a router built before reaches its models by name; on
        removal its call in flight completes, then its actor stops and new calls fail over."""
        async with (
            LMServer() as first,
            LMServer() as second,
            _running(_config(first)) as (runtime, services),
        ):
            router = services.router("local/llama3")
            config = runtime.via("config")
            await update_config(config, "providers.extra", _entry(second, api_key=NEW_KEY))
            # The roster hears of the update after it is accepted: the actor starts then.
            await _until(lambda: services.vendors == ("local", "extra"))
            assert (await router.complete(_request("extra/llama3"))).outputs
            assert second.stats().requests == 1
            second.latency = 0.3
            in_flight = asyncio.ensure_future(_call(runtime, "extra"))
            await _until(lambda: second.stats().in_flight == 1)
            providers = dict(runtime.config.providers)
            del providers["extra"]
            await update_config(config, "providers", providers)
            await _until(lambda: services.vendors == ("local",))
            assert (await in_flight).outputs
            assert runtime.registry.whereis(provider_name("extra")) is None
            for _ in range(500):  # the roster stops the drained actor a poll later
                ids = [c.id for c in await which_children(services.supervisor)]
                if ids == ["lm_provider:local"]:
                    break
                await asyncio.sleep(0.01)
            assert ids == ["lm_provider:local"]
            assert (await router.complete(_request("local/llama3"))).outputs

    async def test_a_vendor_added_again_takes_its_new_rpm(self) -> None:
        """Removed and added back with another rpm, a vendor's named limiter follows the new
        entry (the runtime keeps the limiter object across the two)."""
        async with (
            LMServer() as first,
            LMServer() as second,
            _running(_config(first)) as (runtime, services),
        ):
            config = runtime.via("config")
            await update_config(config, "providers.extra", _entry(second, api_key=NEW_KEY))
            await _until(lambda: "extra" in services.vendors)
            limiter = runtime.protections.limiter("extra")
            assert limiter is None
            await update_config(config, "providers", {"local": runtime.config.providers["local"]})
            await _until(lambda: "extra" not in services.vendors)
            again = _entry(second, api_key=NEW_KEY, rpm=2)
            await update_config(config, "providers.extra", again)
            await _until(lambda: "extra" in services.vendors)
            limiter = services.protections["extra"].limiter
            assert limiter is not None and limiter.statistics().limit == 2
            await update_config(config, "providers", {"local": runtime.config.providers["local"]})
            await _until(lambda: "extra" not in services.vendors)
            await update_config(config, "providers.extra", _entry(second, rpm=5, api_key=OLD_KEY))
            await _until(lambda: "extra" in services.vendors)
            assert services.protections["extra"].limiter is limiter
            assert limiter.statistics().limit == 5

    async def test_an_unreachable_vendor_added_starts_nothing(self) -> None:
        """A vendor entry without a base URL is accepted and starts no actor until it has one."""
        async with LMServer() as server, _running(_config(server)) as (runtime, services):
            config = runtime.via("config")
            await update_config(config, "providers.later", {"max_retries": 0})
            url = server.url + "/v1"
            await update_config(config, "providers.later.base_url", url)
            await _until(lambda: services.vendors == ("local", "later"))
            assert (await _call(runtime, "later")).outputs


class TestInvalidEntry:
    async def test_an_invalid_entry_is_refused_naming_the_field_and_nothing_changes(
        self,
    ) -> None:
        """A bad timeout or URL is a ConfigError naming the field; the vendor keeps its
        settings and a bad new vendor starts nothing."""
        async with LMServer() as server, _running(_config(server)) as (runtime, services):
            config = runtime.via("config")
            before = services.settings["local"].version
            with pytest.raises(ConfigError, match=r"^invalid configuration") as bad:
                await update_config(config, "providers.local.timeout", -1)
            assert bad.value.paths == ("providers.local.timeout",)
            with pytest.raises(ConfigError) as bad_url:
                await update_config(config, "providers.extra", {"base_url": "ftp://x"})
            assert bad_url.value.paths == ("providers.extra.base_url",)
            assert services.settings["local"].version == before
            assert services.vendors == ("local",)
            assert runtime.config.providers["local"].timeout == 60.0
            assert (await _call(runtime)).outputs


class TestRestart:
    async def test_an_update_made_while_the_actor_restarts_applies_when_it_is_back(
        self,
    ) -> None:
        """The key changed while the provider is down: its next incarnation uses it."""
        async with (
            LMServer(api_key=OLD_KEY) as server,
            _running(_config(server)) as (runtime, _),
        ):
            target = runtime.via(provider_name("local"))
            old = target.resolve()
            stopping = asyncio.ensure_future(old.stop(RuntimeError("provider crashed")))
            server.api_key = NEW_KEY
            await update_config(runtime.via("config"), "providers.local.api_key", NEW_KEY)
            await stopping
            await _until(lambda: target.alive and target.resolve() != old)
            assert (await _call(runtime)).outputs

    async def test_a_restart_after_an_update_builds_from_the_current_entry(self) -> None:
        """The supervisor's factory builds from the settings now in force, not at start."""
        async with (
            LMServer() as first,
            LMServer() as second,
            _running(_config(first)) as (runtime, _),
        ):
            url = second.url + "/v1"
            await update_config(runtime.via("config"), "providers.local.base_url", url)
            target = runtime.via(provider_name("local"))
            old = target.resolve()
            await old.stop(RuntimeError("provider crashed"))
            await _until(lambda: target.alive and target.resolve() != old)
            assert (await _call(runtime)).outputs
        assert (first.stats().requests, second.stats().requests) == (0, 1)


def _open_sessions() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed)


def _fds_tasks_sessions() -> tuple[int, int, int]:
    return len(os.listdir("/proc/self/fd")), len(asyncio.all_tasks()), _open_sessions()


class TestRotationLeaks:
    async def test_a_hundred_rotations_leave_fds_tasks_and_sessions_flat(self) -> None:
        """Each rotation closes the client it replaced: nothing grows over 100 of them."""
        async with LMServer() as server, _running(_config(server)) as (runtime, _):
            config = runtime.via("config")

            async def rotate(i: int) -> None:
                await update_config(config, "providers.local.api_key", f"sk-rot-{i:06d}")
                assert (await _call(runtime)).outputs

            for i in range(5):
                await rotate(i)
            await asyncio.sleep(0.05)
            before = _fds_tasks_sessions()
            for i in range(5, 105):
                await rotate(i)
            await asyncio.sleep(0.05)
            assert _fds_tasks_sessions() == before
            stats = await runtime.via(provider_name("local")).call(GetStatistics())
            assert stats.in_flight == 0


class TestReviewedRaces:
    async def test_two_updates_before_the_roster_catches_up_end_on_the_last(self) -> None:
        """A vendor added and then re-keyed before the roster handled the first notice runs
        on the second key (it was built from the first and never saw the second)."""
        key1, key2 = "sk-key1-1111111111111111111", "sk-key2-2222222222222222222"
        async with (
            LMServer() as first,
            LMServer(api_key=key2) as second,
            _running(_config(first)) as (runtime, services),
        ):
            config = runtime.via("config")
            await asyncio.gather(
                update_config(config, "providers.extra", _entry(second, api_key=key1)),
                update_config(config, "providers.extra.api_key", key2),
            )
            await _until(lambda: "extra" in services.vendors)
            assert (await _call(runtime, "extra")).outputs

    async def test_a_retired_client_is_closed_when_the_actor_dies_as_its_call_ends(
        self,
    ) -> None:
        """A replaced client whose last call ends as the actor is stopping is still closed
        (its close task could no longer start, and `_hold` no longer saw it)."""
        closed: list[int] = []
        parked: list[asyncio.Future[Any]] = []

        class Parked:
            capabilities = LMCapabilities()

            def __init__(self, index: int) -> None:
                self.index = index

            async def complete(self, request: LMRequest, timeout: float) -> Any:  # noqa: ASYNC109
                parked.append(asyncio.get_running_loop().create_future())
                return await parked[-1]

            async def aclose(self) -> None:
                closed.append(self.index)

        made: list[Parked] = []

        def make(name: str, cfg: Any) -> Any:
            made.append(Parked(len(made)))
            return made[-1]

        async with LMServer() as server, _running(_config(server), make) as (runtime, _):
            call = asyncio.ensure_future(_call(runtime))
            await _until(lambda: bool(parked))
            await update_config(runtime.via("config"), "providers.local.api_key", NEW_KEY)
            ref = runtime.via(provider_name("local")).resolve()
            ref._proc.request_stop(RuntimeError("stopped"))
            parked[0].set_exception(RuntimeError("boom"))
            await asyncio.gather(call, return_exceptions=True)  # ended either way
            await _until(lambda: 0 in closed)
        assert closed.count(0) >= 1

    async def test_a_raised_max_in_flight_lets_the_queued_calls_through(self) -> None:
        """Calls queued at `max_in_flight` 1 when it is raised to 10 run at once, on the new
        client (they stayed on the old bulkhead and its one-connection pool)."""
        async with (
            LMServer(latency=0.3) as server,
            _running(_config(server, max_in_flight=1)) as (runtime, _),
        ):
            calls = [asyncio.ensure_future(_call(runtime)) for _ in range(6)]
            await _until(lambda: server.stats().in_flight == 1)
            await update_config(runtime.via("config"), "providers.local.max_in_flight", 10)
            await _until(lambda: server.stats().in_flight >= 5)
            results = await asyncio.gather(*calls)
            assert all(result.outputs for result in results)

    async def test_lm_providers_restarted_empty_gets_its_vendors_back(self) -> None:
        """A crash of `lm_providers` (a dynamic supervisor restarts empty) is followed by
        the roster's restart, which starts every vendor again; a vendor added afterwards
        starts too (calls failed with NameNotRegistered for good, and the roster held a
        dead supervisor)."""
        async with (
            LMServer() as first,
            LMServer() as second,
            _running(_config(first)) as (runtime, services),
        ):
            old = services.supervisor
            with capture_logs():
                await old.stop(RuntimeError("crashed"))
                await _until(lambda: runtime.whereis(LM_PROVIDERS) not in (None, old))
                await _until(lambda: runtime.whereis(provider_name("local")) is not None)
            assert [c.id for c in await which_children(services.supervisor)] == [
                "lm_provider:local"
            ]
            assert (await _call(runtime)).outputs
            extra = _entry(second, api_key=NEW_KEY)
            await update_config(runtime.via("config"), "providers.extra", extra)
            await _until(lambda: runtime.whereis(provider_name("extra")) is not None)
            assert (await _call(runtime, "extra")).outputs


class TestLimiterAddedLater:
    async def test_a_vendor_with_no_limit_takes_an_entry_added_at_run_time(self) -> None:
        """A vendor started with no rpm/tpm and no limiter entry is limited by an
        `infrastructure.rate_limiters.<vendor>` entry added while the app runs (it stayed
        unlimited until its actor restarted)."""
        async with LMServer() as server, _running(_config(server)) as (runtime, services):
            assert services.settings["local"].protections.limiter is None
            await update_config(
                runtime.via("config"), "infrastructure.rate_limiters.local", {"limit": 1}
            )
            await _until(lambda: services.settings["local"].protections.limiter is not None)
            assert (await _call(runtime)).outputs
            with pytest.raises(RateLimited, match=r"^rate limit 'local' reached"):
                await _call(runtime, deadline=runtime.clock.monotonic() + 5.0)


class TestBudgetSwitchedOffAndOn:
    async def test_the_periods_spend_survives_a_budget_switched_off_and_on(self) -> None:
        """`budget_usd` set to None and back keeps what the period spent (it started at zero:
        the cap could be spent twice in one period)."""
        async with (
            LMServer() as server,
            _running(_config(server, budget_usd=1.0)) as (runtime, services),
        ):
            _charge(services, 0.75)
            config = runtime.via("config")
            await update_config(config, "providers.local.budget_usd", None)
            await _until(lambda: services.settings["local"].protections.budget is None)
            await update_config(config, "providers.local.budget_usd", 2.0)
            await _until(lambda: services.settings["local"].protections.budget is not None)
            assert _spent_and_limit(services) == (0.75, 2.0)


class TestQueuedAcrossAChange:
    @pytest.mark.parametrize("kind", ["complete", "stream"])
    async def test_a_call_queued_across_a_key_rotation_uses_the_new_key(self, kind: str) -> None:
        """A call or stream waiting for a slot when the key is rotated (and the old one
        revoked) goes out on the new client; a stream kept the old one."""
        async with (
            LMServer(api_key=OLD_KEY, latency=0.3) as server,
            _running(_config(server, max_in_flight=1)) as (runtime, services),
        ):
            bulkhead = services.settings["local"].protections.bulkhead
            first = asyncio.ensure_future(_call(runtime))
            await _until(lambda: server.stats().in_flight == 1)
            if kind == "stream":
                target = runtime.via(provider_name("local"))
                items = await target.call(OpenStream(request=_request()))
                second = asyncio.ensure_future(_drain(items))
            else:
                second = asyncio.ensure_future(_call(runtime))
            await _until(lambda: bulkhead.statistics().queued == 1)
            server.api_key = NEW_KEY
            await update_config(runtime.via("config"), "providers.local.api_key", NEW_KEY)
            assert (await first).outputs  # in flight before: finished on the old client
            assert await second


async def _drain(items: Any) -> list[str]:
    return [type(item).__name__ async for item in items]


class TestParkedVendors:
    async def test_a_vendor_removed_and_added_again_keeps_its_budgets_spend(self) -> None:
        """A vendor removed and added again (or not started after a restart, then started
        by its next change) keeps the period's spend: new settings started it at zero."""
        async with (
            LMServer() as server,
            _running(_config(server, budget_usd=1.0)) as (runtime, services),
        ):
            _charge(services, 0.75)
            config = runtime.via("config")
            entry = _entry(server, api_key=OLD_KEY, budget_usd=2.0)
            await update_config(config, "providers", {})
            await _until(lambda: "local" not in services.vendors)
            await update_config(config, "providers", {"local": entry})
            await _until(lambda: runtime.whereis(provider_name("local")) is not None)
            assert _spent_and_limit(services) == (0.75, 2.0)


def _charge(services: LMServices, cost: float) -> None:
    budget = services.settings["local"].protections.budget
    assert budget is not None
    budget.charge(cost)


def _spent_and_limit(services: LMServices) -> tuple[float, float]:
    budget = services.settings["local"].protections.budget
    assert budget is not None
    statistics = budget.statistics()
    return statistics.spent, statistics.limit
