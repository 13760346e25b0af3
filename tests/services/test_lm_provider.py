"""LMProvider actors against the loopback LM server: protections, events, crashes, secrets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from lmvisor.config import load_config
from lmvisor.programs.lm import LMDelta, LMDone, LMRequest
from lmvisor.providers import AuthenticationError, ServerError
from lmvisor.runtime.errors import ActorExited, CircuitOpen
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.observe.metrics import Metrics
from lmvisor.runtime.protection import BreakerState
from lmvisor.runtime.runtime import Runtime
from lmvisor.services.errors import BudgetExceeded
from lmvisor.services.lm_provider import Complete, OpenStream, estimate_tokens, provider_name
from lmvisor.services.lm_services import LMServices, start_lm_providers
from lmvisor.testing.lm_server import FaultRule, LMServer
from tests.services._fakes import EndlessStream

SECRET = "sk-test-Zq9SecretValue0123456789"


@pytest.fixture
async def server() -> AsyncIterator[LMServer]:
    async with LMServer() as srv:
        yield srv


def _config(server: LMServer, **local: Any) -> Any:
    return load_config(
        env={},
        providers={"local": {"base_url": server.url + "/v1", "max_retries": 0, **local}},
        infrastructure={
            "circuit_breakers": {
                "local": {"failure_threshold": 2, "recovery_time": 5.0, "success_threshold": 1}
            }
        },
    )


def _request(text: str = "hello") -> LMRequest:
    return LMRequest(model="local/llama3", messages=[{"role": "user", "content": text}])


async def _start(runtime: Runtime, server: LMServer, **local: Any) -> LMServices:
    return await start_lm_providers(runtime, _config(server, **local))


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
        await _start(runtime, server, max_in_flight=50)
        target = runtime.via(provider_name("local"))
        await asyncio.gather(*(target.call(Complete(request=_request(f"q{i}"))) for i in range(50)))
        assert server.stats().peak_in_flight >= 25

    async def test_stream_yields_deltas_then_done(self, runtime: Runtime, server: LMServer) -> None:
        """A stream admitted by the actor delivers text deltas and a final response."""
        await _start(runtime, server)
        items = await runtime.via(provider_name("local")).call(OpenStream(request=_request()))
        collected = [item async for item in items]
        assert isinstance(collected[-1], LMDone)
        text = "".join(i.text for i in collected if isinstance(i, LMDelta))
        assert text == collected[-1].response.outputs[0]


class TestStreamClose:
    async def test_early_close_closes_vendor_stream_at_once(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """A reader that stops early closes the vendor stream before its aclose returns."""
        client = EndlessStream()
        await start_lm_providers(runtime, _config(server), make_provider=lambda *_: client)
        items = await runtime.via(provider_name("local")).call(OpenStream(request=_request()))
        assert isinstance(await anext(items), LMDelta)
        await items.aclose()
        assert client.closed == 1


class TestProtection:
    async def test_retry_honours_retry_after(self, runtime: Runtime, server: LMServer) -> None:
        """A 429 with retry-after is retried after the hinted wait and then succeeds."""
        server.add_fault(FaultRule(kind="status", status=429, times=1, retry_after_ms=30))
        await _start(runtime, server, max_retries=2)
        response = await runtime.via(provider_name("local")).call(Complete(request=_request()))
        assert response.outputs
        assert server.stats().by_status.get(429) == 1
        assert server.stats().requests == 2

    async def test_breaker_opens_then_half_opens(
        self, mock_clock: Any, runtime: Runtime, server: LMServer
    ) -> None:
        """After N failures the breaker fails fast; after recovery a trial call closes it."""
        server.add_fault(FaultRule(kind="status", status=500))
        services = await _start(runtime, server)
        target = runtime.via(provider_name("local"))
        for _ in range(2):
            with pytest.raises(ServerError):
                await target.call(Complete(request=_request()))
        breaker = services.protections["local"].breaker
        assert breaker.state is BreakerState.OPEN
        (opened,) = runtime.events.ring.query(type="breaker.state_changed")
        assert (opened.data["old"], opened.data["new"]) == ("closed", "open")
        gauge = runtime.metrics.value("lmvisor_circuit_breaker_state", breaker=breaker.name)
        assert gauge == BreakerState.OPEN.value
        sent = server.stats().requests
        with pytest.raises(CircuitOpen):
            await target.call(Complete(request=_request()))
        assert server.stats().requests == sent
        server.clear_faults()
        mock_clock.advance(5.0)
        response = await target.call(Complete(request=_request()))
        assert response.outputs
        assert breaker.state is BreakerState.CLOSED

    async def test_tpm_limits_estimated_tokens(
        self, mock_clock: Any, runtime: Runtime, server: LMServer
    ) -> None:
        """The tpm limiter is charged each request's estimated tokens, streamed or not."""
        services = await _start(runtime, server, tpm=100_000)
        limiter = services.protections["local"].tokens
        assert limiter is not None
        target = runtime.via(provider_name("local"))
        request = _request("x" * 400)
        await target.call(Complete(request=request))
        assert limiter.statistics().token_level == estimate_tokens(request)
        items = await target.call(OpenStream(request=request))
        assert isinstance([item async for item in items][-1], LMDone)
        assert limiter.statistics().token_level == 2 * estimate_tokens(request)

    async def test_request_above_tpm_takes_the_whole_minute(
        self, mock_clock: Any, runtime: Runtime, server: LMServer
    ) -> None:
        """A request estimated above the tpm limit is sent, taking the minute's tokens."""
        services = await _start(runtime, server, tpm=100)
        response = await runtime.via(provider_name("local")).call(
            Complete(request=_request("x" * 4000))
        )
        assert response.outputs
        limiter = services.protections["local"].tokens
        assert limiter is not None
        assert limiter.statistics().token_level == 100

    async def test_cancelled_stream_returns_half_open_trial(
        self, mock_clock: Any, runtime: Runtime, server: LMServer
    ) -> None:
        """A stream reader cancelled while waiting for the rpm limiter frees the breaker's trial."""
        services = await _start(runtime, server, rpm=1)
        protections = services.protections["local"]
        breaker, rpm = protections.breaker, protections.requests
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

    async def test_budget_refuses_before_sending(self, runtime: Runtime, server: LMServer) -> None:
        """A spent budget refuses the call with BudgetExceeded; nothing reaches the vendor."""
        await _start(runtime, server, budget_usd=0.0)
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
        await _start(runtime, server)
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
