"""RouterLM: vendor resolution through the registry, ordered fallbacks, cooldowns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from lmvisor.config import load_config
from lmvisor.config.schema import ProviderConfig
from lmvisor.programs import ChainOfThought, Predict, context
from lmvisor.programs.lm import (
    LM,
    MAX_MODEL_NAME,
    LMDelta,
    LMDone,
    LMRequest,
)
from lmvisor.providers import (
    BadRequestError,
    ClientOptions,
    HttpxTransport,
    OpenAIClient,
    RequestBuildError,
    ResponseFormatError,
    ServerError,
    VendorClient,
)
from lmvisor.runtime.deadline import deadline
from lmvisor.runtime.errors import DeadlineExceeded, RetryExhausted
from lmvisor.runtime.runtime import Runtime
from lmvisor.services.errors import NoDeploymentAvailable, ServiceInputError, UnknownProvider
from lmvisor.services.lm_provider import GetStatistics, provider_name
from lmvisor.services.lm_services import LMServices, build_client, start_lm_providers
from lmvisor.services.router import RouterLM, split_model
from lmvisor.testing.lm_server import FaultRule, LMServer
from tests.services._fakes import EmptyStream, EndlessStream


@pytest.fixture
async def server() -> AsyncIterator[LMServer]:
    async with LMServer() as srv:
        yield srv


async def _two_vendors(
    runtime: Runtime, server: LMServer, *, retries: int = 0, **kwargs: Any
) -> LMServices:
    config = load_config(
        env={},
        providers={
            "openai": {
                "base_url": server.url + "/v1",
                "api_key": "sk-test-a",
                "max_retries": retries,
            },
            "anthropic": {"base_url": server.url, "api_key": "test-b", "max_retries": 0},
        },
    )
    return await start_lm_providers(runtime, config, **kwargs)


def _request(model: str) -> LMRequest:
    return LMRequest(model=model, messages=[{"role": "user", "content": "Capital of France?"}])


class TestSplitModel:
    def test_splits_vendor(self) -> None:
        """The vendor is the part before the first slash."""
        assert split_model("local/meta-llama/Llama-3") == ("local", "meta-llama/Llama-3")

    def test_rejects_bare_model(self) -> None:
        """A model without a vendor prefix is a programming error."""
        with pytest.raises(
            ServiceInputError, match=r"^invalid model: must be 'vendor/model', got 'gpt-4o'$"
        ):
            split_model("gpt-4o")

    def test_rejects_an_overlong_model_without_echoing_it(self) -> None:
        """A model name past MAX_MODEL_NAME characters is a typed error that names its
        length, not the name (a 100 kB name came back whole in a vendor's ModelNotFound)."""
        name = "openai/" + "x" * 100_000
        problem = r"^invalid model: must be at most 256 characters, got 100007$"
        with pytest.raises(ServiceInputError, match=problem):
            split_model(name)
        assert split_model("openai/" + "x" * (MAX_MODEL_NAME - 7))[0] == "openai"

    def test_errors_clip_the_model_names_they_echo(self) -> None:
        """UnknownProvider and NoDeploymentAvailable echo a model name of any length clipped
        to MAX_MODEL_NAME characters, in the message and the context."""
        model = "v/" + "m" * 100_000
        shown = model[:MAX_MODEL_NAME] + f"...[{len(model) - MAX_MODEL_NAME} more chars]"
        unknown = UnknownProvider(model=model, vendor="v", known=["openai"])
        exhausted = NoDeploymentAvailable(model=model, errors=[])
        for error in (unknown, exhausted):
            assert repr(shown) in str(error) and error.context["model"] == shown


class TestRouting:
    async def test_satisfies_lm_protocol(self, runtime: Runtime, server: LMServer) -> None:
        """The router is an LM: programs run on it unchanged."""
        services = await _two_vendors(runtime, server)
        lm = services.router("openai/gpt-4o-mini")
        assert isinstance(lm, LM)
        with context(lm=lm):
            prediction = await ChainOfThought("question -> answer")(question="2+2?")
        assert prediction.answer
        assert prediction.reasoning
        assert prediction.usage.total_tokens > 0

    async def test_resolves_each_vendor(self, runtime: Runtime, server: LMServer) -> None:
        """Each model goes to its vendor's provider and wire format."""
        services = await _two_vendors(runtime, server)
        await services.router("anthropic/claude-3-5-haiku-latest").complete(
            _request("anthropic/claude-3-5-haiku-latest")
        )
        await services.router("openai/gpt-4o-mini").complete(_request("openai/gpt-4o-mini"))
        assert server.stats().by_path == {"/v1/messages": 1, "/v1/chat/completions": 1}

    async def test_unknown_vendor_fails_early(self, runtime: Runtime, server: LMServer) -> None:
        """A model naming an unconfigured vendor is refused when the router is built."""
        services = await _two_vendors(runtime, server)
        with pytest.raises(UnknownProvider, match=r"^model 'mistral/large' names provider"):
            services.router("mistral/large")

    async def test_an_overlong_model_is_refused_before_any_call(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """A router for a 100 kB model name, or a request naming one, is refused with a typed
        error before anything reaches the vendor."""
        services = await _two_vendors(runtime, server)
        huge = "openai/" + "x" * 100_000
        with pytest.raises(ServiceInputError, match=r"^invalid model: must be at most 256 "):
            services.router(huge)
        lm = services.router("openai/gpt-4o-mini")
        with pytest.raises(ServiceInputError, match=r"^invalid model: must be at most 256 "):
            await lm.complete(_request(huge))
        assert server.stats().by_path == {}

    async def test_stream(self, runtime: Runtime, server: LMServer) -> None:
        """Streaming through the router yields deltas, then the whole response."""
        services = await _two_vendors(runtime, server)
        lm = services.router("anthropic/claude-3-5-haiku-latest")
        items = [item async for item in lm.stream(_request(lm.model))]
        assert isinstance(items[-1], LMDone)
        assert (
            "".join(i.text for i in items if isinstance(i, LMDelta))
            == (items[-1].response.outputs[0])
        )


class TestFallback:
    async def test_stream_falls_back_before_the_first_item(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """A stream whose primary fails to open is served by the next deployment."""
        server.add_fault(FaultRule(kind="status", status=503, api="openai"))
        services = await _two_vendors(runtime, server)
        lm = services.router("openai/gpt-4o-mini", fallbacks=["anthropic/claude-3-5-haiku-latest"])
        items = [item async for item in lm.stream(_request(lm.model))]
        assert isinstance(items[-1], LMDone)
        assert server.stats().by_path == {"/v1/chat/completions": 1, "/v1/messages": 1}

    async def test_falls_back_to_second_provider(self, runtime: Runtime, server: LMServer) -> None:
        """When the primary fails, the next deployment answers."""
        server.add_fault(FaultRule(kind="status", status=503, api="openai"))
        services = await _two_vendors(runtime, server)
        lm = services.router("openai/gpt-4o-mini", fallbacks=["anthropic/claude-3-5-haiku-latest"])
        with context(lm=lm):
            prediction = await Predict("question -> answer")(question="hi")
        assert prediction.answer
        assert server.stats().by_path == {"/v1/chat/completions": 1, "/v1/messages": 1}

    async def test_cooldown_skips_failing_primary(
        self, mock_clock: Any, runtime: Runtime, server: LMServer
    ) -> None:
        """A deployment failing past allowed_fails is skipped until its cooldown ends."""
        server.add_fault(FaultRule(kind="status", status=500, api="openai"))
        services = await _two_vendors(runtime, server)
        lm = services.router("openai/gpt-4o-mini", fallbacks=["anthropic/claude-3-5-haiku-latest"])
        for _ in range(4):
            await lm.complete(_request(lm.model))
        assert services.cooldowns.is_cooling("openai/gpt-4o-mini")
        before = server.stats().by_path.get("/v1/chat/completions", 0)
        await lm.complete(_request(lm.model))
        assert server.stats().by_path.get("/v1/chat/completions", 0) == before
        server.clear_faults()
        mock_clock.advance(5.0)
        await lm.complete(_request(lm.model))
        assert server.stats().by_path["/v1/chat/completions"] == before + 1

    async def test_lone_deployment_never_cools_down(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """With nothing to fall back to, failures do not take the only deployment away."""
        server.add_fault(FaultRule(kind="status", status=500, times=4))
        services = await _two_vendors(runtime, server)
        lm = services.router("openai/gpt-4o-mini")
        for _ in range(4):  # past allowed_fails (3), short of the breaker's threshold (5)
            with pytest.raises(ServerError):
                await lm.complete(_request(lm.model))
        assert not services.cooldowns.is_cooling("openai/gpt-4o-mini")
        assert (await lm.complete(_request(lm.model))).outputs

    async def test_all_fail(self, runtime: Runtime, server: LMServer) -> None:
        """When every deployment fails, NoDeploymentAvailable lists each cause."""
        server.add_fault(FaultRule(kind="status", status=500))
        services = await _two_vendors(runtime, server)
        lm = services.router("openai/gpt-4o-mini", fallbacks=["anthropic/claude-3-5-haiku-latest"])
        with pytest.raises(NoDeploymentAvailable) as info:
            await lm.complete(_request(lm.model))
        assert [name for name, _ in info.value.errors] == [
            "openai/gpt-4o-mini",
            "anthropic/claude-3-5-haiku-latest",
        ]
        assert all(isinstance(err, ServerError) for _, err in info.value.errors)

    async def test_a_deployment_named_twice_is_tried_once(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """A model listed among its own fallbacks, even a thousand times, is one deployment:
        a failing call reaches the vendor once per deployment, not once per listing."""
        server.add_fault(FaultRule(kind="status", status=500))
        services = await _two_vendors(runtime, server)
        model, other = "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"
        lm = services.router(model, fallbacks=[model, other, *[model, other] * 500])
        with pytest.raises(NoDeploymentAvailable) as info:
            await lm.complete(_request(model))
        assert [name for name, _ in info.value.errors] == [model, other]
        assert server.stats().requests == 2
        assert repr(lm) == f"RouterLM(model={model!r}, deployments={[model, other]!r})"

    async def test_single_deployment_raises_its_own_error(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """Without fallbacks, the provider's typed error reaches the caller as is."""
        server.add_fault(FaultRule(kind="status", status=500))
        services = await _two_vendors(runtime, server)
        with pytest.raises(ServerError):
            await services.router("openai/gpt-4o-mini").complete(_request("openai/gpt-4o-mini"))

    async def test_spent_budget_falls_back_to_another_vendor(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """A vendor whose budget is spent is skipped; the next vendor answers."""
        config = load_config(
            env={},
            providers={
                "openai": {
                    "base_url": server.url + "/v1",
                    "api_key": "sk-test-a",
                    "budget_usd": 0.0,
                },
                "anthropic": {"base_url": server.url, "api_key": "test-b"},
            },
        )
        services = await start_lm_providers(runtime, config)
        lm = services.router("openai/gpt-4o-mini", fallbacks=["anthropic/claude-3-5-haiku-latest"])
        assert (await lm.complete(_request(lm.model))).outputs
        assert server.stats().by_path == {"/v1/messages": 1}
        assert not services.cooldowns.is_cooling("openai/gpt-4o-mini")

    async def test_bad_request_does_not_fall_back(self, runtime: Runtime, server: LMServer) -> None:
        """A request the vendor rejects as malformed is raised, not retried elsewhere."""
        server.add_fault(FaultRule(kind="status", status=400, api="openai"))
        services = await _two_vendors(runtime, server)
        lm = RouterLM(
            runtime,
            "openai/gpt-4o-mini",
            fallbacks=["anthropic/claude-3-5-haiku-latest"],
            vendors=services.vendors,
        )
        with pytest.raises(BadRequestError):
            await lm.complete(_request(lm.model))
        assert "/v1/messages" not in server.stats().by_path


class TestStreamClose:
    async def test_early_close_closes_vendor_stream_at_once(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """A reader that stops after the first item closes the vendor stream at once."""
        client = EndlessStream()
        config = load_config(env={}, providers={"local": {"base_url": server.url + "/v1"}})
        await start_lm_providers(runtime, config, make_client=lambda *_: client)
        stream = RouterLM(runtime, "local/llama3").stream(_request("local/llama3"))
        assert isinstance(await anext(stream), LMDelta)
        await stream.aclose()
        assert client.closed == 1


class TestDeadlines:
    async def test_caller_timeout_bounds_retries(self, runtime: Runtime, server: LMServer) -> None:
        """`timeout=` on complete bounds the provider's retries: no retry past it is started."""
        # Retries every 0.5 s: the second attempt has 0.25 s left for its answer, and the
        # third could not finish in time, so it is not started.
        server.add_fault(FaultRule(kind="status", status=503, retry_after_ms=500, api="openai"))
        services = await _two_vendors(runtime, server, retries=10)
        lm = services.router("openai/gpt-4o-mini")
        with pytest.raises(RetryExhausted) as info:
            await lm.complete(_request(lm.model), timeout=0.75)
        assert isinstance(info.value.last_error, ServerError)
        assert server.stats().requests == info.value.attempts == 2

    async def test_deadline_context_bounds_the_call(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """A `deadline(...)` around the call bounds it like `timeout=`, and nests tighter."""
        server.add_fault(FaultRule(kind="status", status=503, retry_after_ms=500, api="openai"))
        services = await _two_vendors(runtime, server, retries=10)
        lm = services.router("openai/gpt-4o-mini")
        with deadline(0.75), pytest.raises(RetryExhausted) as info:
            await lm.complete(_request(lm.model), timeout=30.0)
        assert server.stats().requests == info.value.attempts == 2

    async def test_no_time_left_sends_nothing(self, runtime: Runtime, server: LMServer) -> None:
        """A call whose deadline has already passed fails before reaching any vendor."""
        services = await _two_vendors(runtime, server)
        lm = services.router("openai/gpt-4o-mini", fallbacks=["anthropic/claude-3-5-haiku-latest"])
        with deadline(0.0), pytest.raises(DeadlineExceeded, match=r"^deadline exceeded during"):
            await lm.complete(_request(lm.model))
        assert server.stats().requests == 0

    async def test_fallback_cancels_the_first_vendors_work(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """After a fallback, no further request of the call reaches the first vendor."""
        server.add_fault(FaultRule(kind="slow_first_byte", delay=1.5, api="openai"))
        services = await _two_vendors(runtime, server, retries=3)
        lm = services.router(
            "openai/gpt-4o-mini",
            fallbacks=["anthropic/claude-3-5-haiku-latest"],
            deployment_timeout=0.6,  # the fallback answers in milliseconds of it
        )
        response = await lm.complete(_request(lm.model))
        assert response.outputs
        await asyncio.sleep(0.6)  # a retry of the first vendor would have been sent by now
        assert server.stats().by_path == {"/v1/chat/completions": 1, "/v1/messages": 1}
        stats = await runtime.via(provider_name("openai")).call(GetStatistics())
        assert (stats.in_flight, stats.retries) == (0, 0)

    async def test_timeout_must_be_positive(self, runtime: Runtime, server: LMServer) -> None:
        """A zero or NaN timeout is a programming error, named as such."""
        services = await _two_vendors(runtime, server)
        with pytest.raises(ValueError, match=r"^deployment_timeout must be > 0"):
            services.router("openai/gpt-4o-mini", deployment_timeout=0)
        lm = services.router("openai/gpt-4o-mini")
        with pytest.raises(ValueError, match=r"^timeout must be > 0 \(or None\), got nan$"):
            await lm.complete(_request(lm.model), timeout=float("nan"))


class _UnbuildableTransport(HttpxTransport):
    """A transport whose HTTP client refuses to build every request (as aiohttp does a
    header holding a newline): `post_json` raises a plain ValueError."""

    def __init__(self) -> None:
        super().__init__()
        self.posts = 0

    async def post_json(self, url: str, **_: Any) -> Any:
        self.posts += 1
        raise ValueError("Newline or carriage return character detected in header")


class TestTypedFailures:
    async def test_a_request_the_client_cannot_build_is_a_provider_error(
        self, runtime: Runtime, server: LMServer
    ) -> None:
        """A ValueError from the transport's `post_json` is of the client's making, not the
        caller's input: a non-retryable RequestBuildError naming the provider and model,
        raised once (no retry), while the caller's own bad request is still a ValueError."""
        transport = _UnbuildableTransport()

        def make(name: str, cfg: ProviderConfig) -> VendorClient:
            options = ClientOptions(api_key="sk-test-a", base_url=server.url + "/v1")
            return OpenAIClient(options, transport=transport)

        services = await _two_vendors(runtime, server, retries=2, make_client=make)
        lm = services.router("openai/gpt-4o-mini")
        with pytest.raises(RequestBuildError) as info:
            await lm.complete(_request(lm.model))
        assert (info.value.provider, info.value.model) == ("openai", "gpt-4o-mini")
        assert info.value.retryable is False and isinstance(info.value.__cause__, ValueError)
        assert transport.posts == 1
        with pytest.raises(ValueError, match=r"^timeout must be > 0"):
            await lm.complete(_request(lm.model), timeout=0)

    async def test_empty_stream_is_a_typed_error(self, runtime: Runtime, server: LMServer) -> None:
        """A stream that ends before its first item is a ResponseFormatError, not a RuntimeError."""
        config = load_config(env={}, providers={"local": {"base_url": server.url + "/v1"}})
        await start_lm_providers(runtime, config, make_client=lambda *_: EmptyStream())
        lm = RouterLM(runtime, "local/llama3")
        with pytest.raises(ResponseFormatError, match=r"stream ended before its first item$"):
            async for _ in lm.stream(_request("local/llama3")):
                pass

    async def test_hostile_body_falls_back(self, runtime: Runtime, server: LMServer) -> None:
        """A vendor body nested 100,000 deep is a ResponseFormatError, so the router falls back."""
        nested = b"[" * 100_000 + b"]" * 100_000
        mock = httpx.AsyncClient(
            transport=httpx.MockTransport(lambda request: httpx.Response(200, content=nested))
        )

        def make(name: str, cfg: ProviderConfig) -> VendorClient:
            if name != "openai":
                return build_client(name, cfg)
            options = ClientOptions(api_key="sk-test-a", base_url="http://mock/v1")
            return OpenAIClient(options, transport=HttpxTransport(mock))

        try:
            services = await _two_vendors(runtime, server, make_client=make)
            lm = services.router(
                "openai/gpt-4o-mini", fallbacks=["anthropic/claude-3-5-haiku-latest"]
            )
            assert (await lm.complete(_request(lm.model))).outputs
            alone = services.router("openai/gpt-4o-mini")
            with pytest.raises(ResponseFormatError, match=r"response body is not valid JSON"):
                await alone.complete(_request(alone.model))
        finally:
            await mock.aclose()
