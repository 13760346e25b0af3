"""LMProvider actors against the loopback LM server: protections, deadlines, streams, crashes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from lmvisor.config import load_config
from lmvisor.config.schema import LmvisorConfig
from lmvisor.programs.lm import LMDelta, LMDone, LMRequest
from lmvisor.providers import (
    AuthenticationError,
    ProviderConnectionError,
    ProviderTimeout,
    ServerError,
)
from lmvisor.runtime.clock import MockClock
from lmvisor.runtime.config_service import update_config
from lmvisor.runtime.errors import (
    ActorExited,
    CircuitOpen,
    DeadlineExceeded,
    RateLimited,
    RetryExhausted,
)
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.observe.metrics import Metrics
from lmvisor.runtime.protection import BreakerState
from lmvisor.runtime.runtime import Runtime
from lmvisor.services.errors import BudgetExceeded
from lmvisor.services.lm_provider import (
    Complete,
    GetStatistics,
    OpenStream,
    estimate_tokens,
    provider_name,
)
from lmvisor.services.lm_services import LMServices, build_client, start_lm_providers
from lmvisor.testing.lm_server import FaultRule, LMServer
from tests.services._fakes import EndlessStream, SilentStream

SECRET = "sk-test-Zq9SecretValue0123456789"


@pytest.fixture
async def server() -> AsyncIterator[LMServer]:
    async with LMServer() as srv:
        yield srv


def _config(server: LMServer, **local: Any) -> LmvisorConfig:
    return load_config(
        env={},
        providers={"local": {"base_url": server.url + "/v1", "max_retries": 0, **local}},
        infrastructure={
            "circuit_breakers": {
                "local": {"failure_threshold": 2, "recovery_time": 5.0, "success_threshold": 1}
            }
        },
        logging={"level": "debug"},
    )


@asynccontextmanager
async def _running(
    config: LmvisorConfig, clock: MockClock | None = None, **kwargs: Any
) -> AsyncIterator[tuple[Runtime, LMServices]]:
    """A runtime opened with `config` (its infrastructure makes the vendor's protections)."""
    async with Runtime.open(config, clock=clock) as runtime:
        yield runtime, await start_lm_providers(runtime, config, **kwargs)


def _request(text: str = "hello") -> LMRequest:
    return LMRequest(model="local/llama3", messages=[{"role": "user", "content": text}])


async def _until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait for state owned by another task (the server, the supervisor) to reach `condition`."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 (neither offers a notification to wait on)
            await asyncio.sleep(0.005)


class TestComplete:
    async def test_answers_and_records(self, runtime: Runtime, server: LMServer) -> None:
        """A call reaches the vendor; an lm_request event and token metrics are recorded."""
        events = EventRing(100, namespace=runtime.namespace)
        metrics = Metrics()
        await start_lm_providers(runtime, _config(server), events=events, metrics=metrics)
        response = await runtime.via(provider_name("local")).call(Complete(request=_request()))
        assert response.outputs[0].startswith("answer ")
        assert response.usage.total_tokens > 0
        (event,) = events.query(type="lm_request")
        assert event.data["provider"] == "local"
        assert event.data["prompt_tokens"] == response.usage.prompt_tokens
        tokens = metrics.value(
            "lmvisor_lm_tokens_total", provider="local", model=response.model, kind="completion"
        )
        assert tokens == response.usage.completion_tokens

    async def test_serves_many_at_once(self, runtime: Runtime, server: LMServer) -> None:
        """Calls are not serialised behind the mailbox: many are in flight together."""
        server.latency = 0.05
        await start_lm_providers(runtime, _config(server, max_in_flight=50))
        target = runtime.via(provider_name("local"))
        await asyncio.gather(*(target.call(Complete(request=_request(f"q{i}"))) for i in range(50)))
        assert server.stats().peak_in_flight >= 25

    async def test_default_config_does_not_throttle(self, runtime: Runtime) -> None:
        """With the shipped defaults, 500 concurrent calls reach the vendor concurrently."""
        async with LMServer(latency=0.5) as srv:
            config = load_config(env={}, providers={"local": {"base_url": srv.url + "/v1"}})
            services = await start_lm_providers(runtime, config)
            lm = services.router("local/llama3")
            await asyncio.gather(*(lm.complete(_request(f"q{i}")) for i in range(500)))
            assert srv.stats().peak_in_flight == 500

    async def test_counts_calls_once(self, runtime: Runtime, server: LMServer) -> None:
        """Requests, retries and failures are counted by the actor, one failure logged once."""
        server.add_fault(FaultRule(kind="status", status=500, times=3))
        await start_lm_providers(runtime, _config(server, max_retries=1, retry_max_wait=0.01))
        target = runtime.via(provider_name("local"))
        with capture_logs() as logs:
            with pytest.raises(RetryExhausted):
                await target.call(Complete(request=_request()))
            await target.call(Complete(request=_request()))  # 500 once, then an answer
        stats = await target.call(GetStatistics())
        assert (stats.requests, stats.failures, stats.retries, stats.in_flight) == (2, 1, 2, 0)
        failed = [e for e in logs if e["event"] == "lm_request.failed"]
        assert [e["log_level"] for e in failed] == ["warning"]
        retried = [e for e in logs if e["event"] == "lm_request.retry"]
        assert [e["log_level"] for e in retried] == ["debug", "debug"]
        assert len(runtime.events.ring.query(type="lm_request.failed")) == 1


class TestDeadlines:
    async def test_deadline_bounds_retries(self, runtime: Runtime, server: LMServer) -> None:
        """A retry whose backoff would end past the deadline is not started."""
        server.add_fault(FaultRule(kind="status", status=503, retry_after_ms=100))
        await start_lm_providers(runtime, _config(server, max_retries=10))
        deadline = runtime.clock.monotonic() + 0.35
        with pytest.raises(RetryExhausted) as info:
            await runtime.via(provider_name("local")).call(
                Complete(request=_request(), deadline=deadline), timeout=5.0
            )
        assert isinstance(info.value.last_error, ServerError)
        assert info.value.context["attempts"] == server.stats().requests <= 4

    async def test_passed_deadline_sends_nothing(self, runtime: Runtime, server: LMServer) -> None:
        """A call whose deadline has passed fails with DeadlineExceeded before any request."""
        await start_lm_providers(runtime, _config(server))
        with pytest.raises(DeadlineExceeded, match=r"^deadline exceeded"):
            await runtime.via(provider_name("local")).call(
                Complete(request=_request(), deadline=runtime.clock.monotonic() - 1.0)
            )
        assert server.stats().requests == 0

    async def test_attempt_is_bounded_by_the_deadline(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """An attempt gets no more than the time left, however long its own timeout."""
        server.latency = 5.0
        await start_lm_providers(runtime, _config(server, timeout=60.0))
        target = runtime.via(provider_name("local"))
        with pytest.raises(ProviderTimeout, match=r"^local: timed out .*no answer within 0\.[12]"):
            await target.call(
                Complete(request=_request(), deadline=runtime.clock.monotonic() + 0.2),
                timeout=5.0,
            )

    async def test_wait_for_a_call_slot_is_bounded_by_the_deadline(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """A call queued behind a full bulkhead gives up at its deadline, having sent nothing."""
        server.latency = 2.0
        await start_lm_providers(runtime, _config(server, max_in_flight=1))
        target = runtime.via(provider_name("local"))
        busy = asyncio.ensure_future(target.call(Complete(request=_request()), timeout=None))
        await _until(lambda: server.stats().in_flight == 1)
        with pytest.raises(DeadlineExceeded, match=r"waiting for a local call slot"):
            await target.call(
                Complete(request=_request(), deadline=runtime.clock.monotonic() + 0.1),
                timeout=None,
            )
        assert server.stats().requests == 1
        busy.cancel()
        with pytest.raises(asyncio.CancelledError):
            await busy

    async def test_rate_limit_wait_past_deadline_fails_at_once(
        self, mock_clock: MockClock, server: LMServer
    ) -> None:
        """A wait for rate budget that would outlast the deadline is refused at once."""
        async with _running(_config(server, rpm=1), mock_clock) as (runtime, _):
            target = runtime.via(provider_name("local"))
            await target.call(Complete(request=_request()))
            with pytest.raises(RateLimited):
                await target.call(Complete(request=_request(), deadline=10.0))
            assert server.stats().requests == 1
            assert runtime.metrics.value(
                "lmvisor_rate_limiter_rejections_total", limiter="local"
            ) == (1.0)

    async def test_abandoned_call_stops_retrying(self, runtime: Runtime, server: LMServer) -> None:
        """When the caller stops waiting, the provider's work for it is cancelled."""
        server.add_fault(FaultRule(kind="status", status=429, retry_after=0.2))
        services = await start_lm_providers(runtime, _config(server, max_retries=5))
        lm = services.router("local/llama3")
        call = asyncio.ensure_future(lm.complete(_request()))
        await _until(lambda: server.stats().requests == 1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.sleep(0.5)  # past two more backoffs, had they been slept
        assert server.stats().requests == 1
        stats = await runtime.via(provider_name("local")).call(GetStatistics())
        assert (stats.requests, stats.in_flight, stats.failures) == (1, 0, 0)


class TestStream:
    async def test_stream_yields_deltas_then_done(self, runtime: Runtime, server: LMServer) -> None:
        """A stream admitted by the actor delivers text deltas and a final response."""
        await start_lm_providers(runtime, _config(server))
        items = await runtime.via(provider_name("local")).call(OpenStream(request=_request()))
        collected = [item async for item in items]
        assert isinstance(collected[-1], LMDone)
        text = "".join(i.text for i in collected if isinstance(i, LMDelta))
        assert text == collected[-1].response.outputs[0]

    async def test_stream_retries_until_first_item(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """A 429 (with Retry-After) and a 500 before the first item are retried, then it streams."""
        server.add_fault(FaultRule(kind="status", status=429, times=1, retry_after_ms=20))
        server.add_fault(FaultRule(kind="status", status=500, times=1))
        await start_lm_providers(runtime, _config(server, max_retries=3))
        items = await runtime.via(provider_name("local")).call(OpenStream(request=_request()))
        collected = [item async for item in items]
        assert isinstance(collected[-1], LMDone)
        assert server.stats().requests == 3
        assert server.stats().by_status == {429: 1, 500: 1, 200: 1}

    async def test_failure_after_first_item_is_raised(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """A stream that breaks after its first item raises a typed error and is not retried."""
        server.chunk_delay = 0.01  # the first events arrive before the connection drops
        server.add_fault(FaultRule(kind="disconnect_mid_stream", times=1))
        await start_lm_providers(runtime, _config(server, max_retries=3))
        items = await runtime.via(provider_name("local")).call(OpenStream(request=_request()))
        with pytest.raises(ProviderConnectionError):
            async for _ in items:
                pass
        assert server.stats().requests == 1

    async def test_keepalives_do_not_hold_a_stream_past_its_deadline(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """A vendor that sends a few deltas, then only keep-alive comments, cannot hold the
        stream past the call's deadline: it ends with DeadlineExceeded, the vendor's
        connection and the provider's in-flight count given back."""
        server.add_fault(FaultRule(kind="keepalive_stall", times=1))
        await start_lm_providers(runtime, _config(server, timeout=60.0))
        target = runtime.via(provider_name("local"))
        deadline = runtime.clock.monotonic() + 0.5
        items = await target.call(OpenStream(request=_request(), deadline=deadline))
        received = []
        with pytest.raises(
            DeadlineExceeded, match=r"^deadline exceeded during streaming from local$"
        ):
            async with asyncio.timeout(20):  # the stall lasts an hour: fail, do not hang
                async for item in items:
                    received.append(item)
        assert received and all(isinstance(item, LMDelta) for item in received)
        await _until(lambda: server.stats().in_flight == 0)
        stats = await target.call(GetStatistics())
        assert (stats.in_flight, stats.failures) == (0, 1)

    async def test_a_stream_that_never_starts_is_one_timed_out_attempt(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """An attempt waits for the stream's first item `timeout` seconds at most, however
        busy the connection is kept; the vendor stream is closed."""
        client = SilentStream()
        await start_lm_providers(
            runtime, _config(server, timeout=0.2), make_client=lambda *_: client
        )
        items = await runtime.via(provider_name("local")).call(OpenStream(request=_request()))
        with pytest.raises(
            ProviderTimeout,
            match=r"^local: timed out for model 'local/llama3': no streamed item within 0\.2s$",
        ):
            async with asyncio.timeout(20):
                await anext(items)
        assert client.closed == 1

    async def test_early_close_closes_vendor_stream_at_once(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """A reader that stops early closes the vendor stream before its aclose returns."""
        client = EndlessStream()
        await start_lm_providers(runtime, _config(server), make_client=lambda *_: client)
        items = await runtime.via(provider_name("local")).call(OpenStream(request=_request()))
        assert isinstance(await anext(items), LMDelta)
        await items.aclose()
        assert client.closed == 1

    async def test_stream_of_crashed_incarnation_raises_actor_exited(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """An iterator from an incarnation that crashed raises ActorExited, mid-stream too."""
        client = EndlessStream()
        await start_lm_providers(runtime, _config(server), make_client=lambda *_: client)
        target = runtime.via(provider_name("local"))
        unread = await target.call(OpenStream(request=_request()))
        reading = await target.call(OpenStream(request=_request()))
        assert isinstance(await anext(reading), LMDelta)
        await target.resolve().stop(RuntimeError("provider crashed"))
        with pytest.raises(ActorExited):
            await anext(unread)
        with pytest.raises(ActorExited):
            await anext(reading)

    async def test_cancelled_stream_returns_half_open_trial(
        self, mock_clock: MockClock, server: LMServer
    ) -> None:
        """A stream reader cancelled while waiting for the rpm limiter frees the breaker's trial."""
        async with _running(_config(server, rpm=1), mock_clock) as (runtime, services):
            protections = services.protections["local"]
            breaker, rpm = protections.breaker, protections.limiter
            assert rpm is not None
            for _ in range(2):
                breaker.on_failure(ServerError(provider="local"), breaker.before_call())
            assert breaker.state is BreakerState.OPEN
            mock_clock.advance(5.0)
            assert rpm.reserve(1) == 0.0  # the minute's one request is spent
            items = await runtime.via(provider_name("local")).call(OpenStream(request=_request()))
            reader = asyncio.ensure_future(anext(items))
            await _until(lambda: rpm.statistics().waiting == 1)
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
            assert breaker.before_call() is True  # the trial is free again, not stuck


class TestProtection:
    async def test_retry_honours_retry_after(self, runtime: Runtime, server: LMServer) -> None:
        """A 429 with retry-after is retried after the hinted wait and then succeeds."""
        server.add_fault(FaultRule(kind="status", status=429, times=1, retry_after_ms=30))
        await start_lm_providers(runtime, _config(server, max_retries=2))
        response = await runtime.via(provider_name("local")).call(Complete(request=_request()))
        assert response.outputs
        assert server.stats().by_status.get(429) == 1
        assert server.stats().requests == 2

    async def test_breaker_is_the_runtimes(self, mock_clock: MockClock, server: LMServer) -> None:
        """The vendor's breaker is the runtime's named one: configured, reported, shown."""
        server.add_fault(FaultRule(kind="status", status=500))
        async with _running(_config(server), mock_clock) as (runtime, services):
            target = runtime.via(provider_name("local"))
            for _ in range(2):
                with pytest.raises(ServerError):
                    await target.call(Complete(request=_request()))
            breaker = services.protections["local"].breaker
            assert runtime.protections.breakers["local"] is breaker
            assert breaker.state is BreakerState.OPEN
            (opened,) = runtime.events.ring.query(type="breaker.state_changed")
            assert (opened.data["old"], opened.data["new"]) == ("closed", "open")
            gauge = runtime.metrics.value("lmvisor_circuit_breaker_state", breaker="local")
            assert gauge == BreakerState.OPEN.value
            sent = server.stats().requests
            with pytest.raises(CircuitOpen):
                await target.call(Complete(request=_request()))
            assert server.stats().requests == sent
            server.clear_faults()
            mock_clock.advance(5.0)
            assert (await target.call(Complete(request=_request()))).outputs
            assert breaker.state is BreakerState.CLOSED

    async def test_infrastructure_rate_limiter_applies(
        self, mock_clock: MockClock, server: LMServer
    ) -> None:
        """`infrastructure.rate_limiters.<vendor>` limits the vendor, over its own rpm."""
        config = load_config(
            env={},
            providers={"local": {"base_url": server.url + "/v1", "max_retries": 0, "rpm": 100}},
            infrastructure={"rate_limiters": {"local": {"limit": 1, "scale": 60}}},
        )
        async with _running(config, mock_clock) as (runtime, services):
            limiter = services.protections["local"].limiter
            assert limiter is runtime.protections.limiters["local"]
            assert limiter.statistics().limit == 1
            target = runtime.via(provider_name("local"))
            await target.call(Complete(request=_request()))
            with pytest.raises(RateLimited):
                await target.call(Complete(request=_request(), deadline=30.0))

    async def test_tpm_limits_estimated_tokens(
        self, mock_clock: MockClock, server: LMServer
    ) -> None:
        """The tpm limiter is charged each request's estimated tokens, streamed or not."""
        async with _running(_config(server, tpm=100_000), mock_clock) as (runtime, services):
            limiter = services.protections["local"].limiter
            assert limiter is not None
            target = runtime.via(provider_name("local"))
            request = _request("x" * 400)
            await target.call(Complete(request=request))
            assert limiter.statistics().token_level == estimate_tokens(request)
            items = await target.call(OpenStream(request=request))
            assert isinstance([item async for item in items][-1], LMDone)
            assert limiter.statistics().token_level == 2 * estimate_tokens(request)

    async def test_request_above_tpm_takes_the_whole_minute(
        self, mock_clock: MockClock, server: LMServer
    ) -> None:
        """A request estimated above the tpm limit is sent, taking the minute's tokens."""
        async with _running(_config(server, tpm=100), mock_clock) as (runtime, services):
            response = await runtime.via(provider_name("local")).call(
                Complete(request=_request("x" * 4000))
            )
            assert response.outputs
            limiter = services.protections["local"].limiter
            assert limiter is not None
            assert limiter.statistics().token_level == 100

    async def test_a_token_limit_changed_at_run_time_applies_to_the_next_calls(
        self, mock_clock: MockClock, server: LMServer
    ) -> None:
        """A live `infrastructure.rate_limiters.<vendor>.tokens` below a request's estimate
        clips it to the new limit (a stale cap raised ValueError out of every call); a bucket
        added to a limiter that had none is charged from the next call on."""
        config = load_config(
            env={},
            providers={"local": {"base_url": server.url + "/v1", "max_retries": 0}},
            infrastructure={"rate_limiters": {"local": {"limit": 1000, "scale": 60}}},
        )
        async with _running(config, mock_clock) as (runtime, services):
            limiter = services.protections["local"].limiter
            assert limiter is not None and limiter.token_limit is None
            target = runtime.via(provider_name("local"))
            request = _request("x" * 400)
            entry = "infrastructure.rate_limiters.local"
            await update_config(runtime.via("config"), entry, {"limit": 1000, "tokens": 10_000})
            await target.call(Complete(request=request))
            assert limiter.statistics().token_level == estimate_tokens(request)
            await update_config(runtime.via("config"), entry, {"limit": 1000, "tokens": 5})
            mock_clock.advance(86_400.0)  # the tokens taken under the old limit leak out
            assert (await target.call(Complete(request=request))).outputs
            assert limiter.statistics().token_level == 5

    async def test_budget_refuses_before_sending(self, runtime: Runtime, server: LMServer) -> None:
        """A spent budget refuses the call with BudgetExceeded; nothing reaches the vendor."""
        await start_lm_providers(runtime, _config(server, budget_usd=0.0))
        with pytest.raises(BudgetExceeded, match=r"^provider 'local' budget exceeded"):
            await runtime.via(provider_name("local")).call(
                Complete(
                    request=LMRequest(
                        model="local/gpt-4o-mini", messages=[{"role": "user", "content": "x" * 400}]
                    )
                )
            )
        assert server.stats().requests == 0


class TestCrash:
    async def test_crash_mid_request_fails_callers_promptly(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """Callers in flight get ActorExited at once; the restarted actor serves again."""
        server.latency = 30.0
        await start_lm_providers(runtime, _config(server))
        target = runtime.via(provider_name("local"))
        old = target.resolve()
        calls = [
            asyncio.ensure_future(target.call(Complete(request=_request()), timeout=60.0))
            for _ in range(3)
        ]
        await _until(lambda: server.stats().in_flight == 3)
        await old.stop(RuntimeError("provider crashed"))
        results = await asyncio.wait_for(
            asyncio.gather(*calls, return_exceptions=True), timeout=2.0
        )
        assert all(isinstance(r, ActorExited) for r in results)
        server.latency = 0.0
        await _until(lambda: target.alive and target.resolve() != old)
        response = await target.call(Complete(request=_request()))
        assert response.outputs

    async def test_killed_actor_closes_its_session(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """A provider actor that is killed (no terminate) still closes its HTTP pool."""
        clients: list[Any] = []

        def make(name: str, cfg: Any) -> Any:
            clients.append(build_client(name, cfg))
            return clients[-1]

        await start_lm_providers(runtime, _config(server), make_client=make)
        target = runtime.via(provider_name("local"))
        assert (await target.call(Complete(request=_request()))).outputs
        assert clients[0].statistics().open
        await target.resolve().stop("shutdown", timeout=0)  # no time to stop: killed
        assert clients[0].closed
        assert not clients[0].statistics().open


class TestSecrets:
    async def test_api_key_never_logged(self, runtime: Runtime) -> None:
        """An authentication failure logs and raises without the API key anywhere."""
        async with LMServer(api_key="sk-the-right-key-000000000000") as srv:
            config = load_config(
                env={},
                providers={
                    "openai": {"base_url": srv.url + "/v1", "api_key": SECRET, "max_retries": 0}
                },
            )
            with capture_logs() as logs:
                await start_lm_providers(runtime, config)
                with pytest.raises(AuthenticationError) as info:
                    await runtime.via(provider_name("openai")).call(
                        Complete(
                            request=LMRequest(
                                model="openai/gpt-4o-mini",
                                messages=[{"role": "user", "content": "hi"}],
                            )
                        )
                    )
            assert SECRET not in str(info.value)
            assert SECRET not in repr(info.value.__dict__)
            assert logs, "the failure was logged"
            assert all(SECRET not in repr(entry) for entry in logs)
