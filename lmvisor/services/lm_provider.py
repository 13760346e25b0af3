"""The LMProvider actor: one vendor client, protected and observed, serving many calls at once.

Each call is handed to a task the actor owns (a deferred reply), so the
mailbox never serialises requests; at most `max_in_flight` run together and
further calls wait in the mailbox (back-pressure). A call passes, in order:

    budget check -> bulkhead-free retry -> breaker -> limiter (rpm, tpm) -> vendor

then is charged to the budget, recorded as an `lm_request` event and in the
Prometheus families. If the actor dies, every caller in flight gets
`ActorExited` at once and the supervisor starts a fresh incarnation.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol, final

from prometheus_client import Counter

from lmvisor.programs.lm import LMCapabilities, LMDone, LMRequest, LMResponse, LMStreamItem
from lmvisor.providers.pricing import price_for
from lmvisor.runtime.actor import Actor, Deferred, ErrorReply, handler
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.errors import LmvisorError
from lmvisor.runtime.messages import Call
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.metrics import Metrics
from lmvisor.runtime.observe.names import LM_REQUEST as LM_REQUEST_EVENT
from lmvisor.runtime.observe.names import LM_REQUEST_FAILED as LM_REQUEST_FAILED_EVENT
from lmvisor.runtime.protection import CircuitBreaker, RateLimiter, Retry, execute_protected
from lmvisor.services.budget import Budget

__all__ = [
    "Complete",
    "GetCapabilities",
    "LMProvider",
    "LMProviderStatistics",
    "OpenStream",
    "Provider",
    "ProviderProtections",
    "estimate_tokens",
    "provider_name",
    "provider_spec",
]


class Provider(Protocol):
    """What the actor needs of a vendor client (`lmvisor.providers` satisfies it)."""

    @property
    def capabilities(self) -> LMCapabilities: ...

    async def complete(self, request: LMRequest) -> LMResponse: ...

    def stream(self, request: LMRequest) -> AsyncGenerator[LMStreamItem, None]: ...

    async def aclose(self) -> None: ...


def provider_name(vendor: str) -> tuple[str, str]:
    """The registry name of a vendor's provider actor."""
    return ("lm_provider", vendor)


# --- messages -----------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Complete(Call[LMResponse]):
    """Send one request to the vendor; the reply is its response."""

    request: LMRequest


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class OpenStream(Call[AsyncGenerator[LMStreamItem, None]]):
    """Admit a streaming request; the reply is an iterator the caller drains.

    The actor checks the budget before replying; the breaker and the
    requests-per-minute limiter are met, and the bytes flow, in the caller's
    task at its first `anext`, so a slow reader holds no actor slot and an
    iterator never started holds no half-open trial. Closing the iterator
    early closes the vendor stream (and its connection) at once.
    """

    request: LMRequest


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class GetCapabilities(Call[LMCapabilities]):
    """What the vendor's models support."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class LMProviderStatistics:
    """Counters of one provider incarnation."""

    vendor: str
    requests: int
    failures: int
    in_flight: int


# --- protections ----------------------------------------------------------------------


@final
@dataclass(slots=True, kw_only=True)
class ProviderProtections:
    """The protections of one vendor; they outlive actor restarts (the breaker remembers).

    Attributes:
        breaker: trips after consecutive vendor failures.
        requests: requests per minute, or None.
        tokens: tokens per minute (estimated before sending), or None: a limiter
            with `token_limit` set, as `lm_services.build_protections` makes it.
        retry: attempts with backoff, honouring the vendor's Retry-After.
        budget: a cost cap per period, or None (its estimates use the built-in prices).
    """

    breaker: CircuitBreaker
    retry: Retry | None = None
    requests: RateLimiter | None = None
    tokens: RateLimiter | None = None
    budget: Budget | None = None


def estimate_tokens(request: LMRequest) -> int:
    """A cheap upper-ish estimate of a request's tokens (4 characters a token) for tpm."""
    chars = 0
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif content is not None:
            chars += len(str(content))
    max_tokens = request.params.get("max_tokens") or request.params.get("max_completion_tokens")
    return chars // 4 + (int(max_tokens) if isinstance(max_tokens, int) else 256)


def _estimate_cost(request: LMRequest, tokens: int) -> float:
    price = price_for(request.model)
    return 0.0 if price is None else tokens * price.input


_BOUND_MODELS = 256  # models whose metric children an actor keeps bound


@final
class _ModelMetrics:
    """One (provider, model)'s metric children, labelled as `Metrics.record_lm_usage` does.

    The cost child is bound on first use, so a model never charged exposes no cost series.
    """

    __slots__ = ("_cost", "_cost_family", "_labels", "completion", "duration", "prompt")

    def __init__(self, metrics: Metrics, provider: str, model: str) -> None:
        self._labels = {"provider": provider, "model": model}
        self._cost_family = metrics.lm_cost
        self._cost: Counter | None = None
        self.duration = metrics.lm_request_duration.labels(provider=provider, model=model)
        tokens = metrics.lm_tokens
        self.prompt = tokens.labels(provider=provider, model=model, kind="prompt")
        self.completion = tokens.labels(provider=provider, model=model, kind="completion")

    @property
    def cost(self) -> Counter:
        if self._cost is None:
            self._cost = self._cost_family.labels(**self._labels)
        return self._cost


# --- the actor ---------------------------------------------------------------------------


class LMProvider(Actor):
    """One vendor behind its protections; registered as `("lm_provider", vendor)`.

    Args:
        vendor: the name models use as their prefix ("openai", "local").
        make_provider: builds the vendor client; called in `started()`, so a
            restarted incarnation gets a fresh connection pool.
        protections: shared across incarnations.
        max_in_flight: concurrent vendor calls of this actor.
        events: where `lm_request` events go, or None.
        metrics: where LM figures go, or None.
    """

    def __init__(
        self,
        *,
        vendor: str,
        make_provider: Callable[[], Provider],
        protections: ProviderProtections,
        max_in_flight: int = 64,
        events: EventRing | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__()
        self.vendor = vendor
        self.max_in_flight = max_in_flight
        # Enough room that in-flight work never fills the mailbox before back-pressure.
        self.mailbox_capacity = max(1000, max_in_flight * 4)
        self._make_provider = make_provider
        self._protections = protections
        self._events = events
        self._metrics = metrics
        self._key = f"lm_provider:{vendor}"
        self._metrics_by_model: dict[str, _ModelMetrics] = {}
        tpm = protections.tokens
        self._tpm_cap = None if tpm is None else tpm.statistics().token_limit
        self._provider: Provider | None = None
        self._requests = 0
        self._failures = 0
        self._in_flight = 0

    async def started(self) -> None:
        self._provider = self._make_provider()

    @handler
    def complete(self, msg: Complete) -> Deferred[LMResponse]:
        return self.defer(self._complete(msg.request))

    @handler
    def open_stream(self, msg: OpenStream) -> AsyncGenerator[LMStreamItem, None] | ErrorReply:
        try:
            tokens = self._admit(msg.request)
        except LmvisorError as exc:
            return ErrorReply(exc)
        return self._stream(msg.request, tokens)

    @handler
    def get_capabilities(self, msg: GetCapabilities) -> LMCapabilities:
        return self._client.capabilities

    async def terminate(self, reason: object) -> None:
        if self._provider is not None:
            await self._provider.aclose()

    def provider_statistics(self) -> LMProviderStatistics:
        return LMProviderStatistics(
            vendor=self.vendor,
            requests=self._requests,
            failures=self._failures,
            in_flight=self._in_flight,
        )

    # --- the call path ---------------------------------------------------------------

    @property
    def _client(self) -> Provider:
        if self._provider is None:
            raise RuntimeError(f"provider {self.vendor!r} used before started()")
        return self._provider

    def _admit(self, request: LMRequest) -> int:
        """Check the budget; return the request's estimated tokens (0 when nothing uses them)."""
        p = self._protections
        budget = p.budget
        if budget is None and p.tokens is None:
            return 0  # the estimate walks every message: skip it when no protection reads it
        tokens = estimate_tokens(request)
        if budget is not None:
            budget.check(_estimate_cost(request, tokens))
        return tokens

    async def _complete(self, request: LMRequest) -> LMResponse:
        tokens = self._admit(request)
        client = self._client
        p = self._protections
        self._requests += 1
        self._in_flight += 1
        # Without a tpm limiter the attempt is the vendor call itself: one frame fewer.
        attempt: Callable[[], Awaitable[LMResponse]] = (
            (lambda: client.complete(request))
            if p.tokens is None
            else (lambda: self._send_once(client, request, tokens))
        )
        started = time.perf_counter()
        try:
            response = await execute_protected(
                self._key,
                attempt,
                breaker=p.breaker,
                limiter=p.requests,
                retry=p.retry,
            )
        except Exception as exc:
            self._failures += 1
            self._record_failure(request, exc, time.perf_counter() - started)
            raise
        finally:
            self._in_flight -= 1
        self._record(request, response, time.perf_counter() - started)
        return response

    async def _send_once(self, client: Provider, request: LMRequest, tokens: int) -> LMResponse:
        await self._take_tokens(tokens)
        return await client.complete(request)

    async def _take_tokens(self, tokens: int) -> None:
        """Wait for `tokens` in the tpm limiter (a request estimated above it takes it all)."""
        limiter = self._protections.tokens
        if limiter is None:
            return
        if self._tpm_cap is not None and tokens > self._tpm_cap:
            tokens = int(self._tpm_cap)
        if limiter.reserve(tokens) > 0:
            await limiter.acquire(tokens)

    async def _stream(self, request: LMRequest, tokens: int) -> AsyncGenerator[LMStreamItem, None]:
        p = self._protections
        trial = p.breaker.before_call()
        started = time.perf_counter()
        try:
            # Inside the try: a reader cancelled (or refused) while waiting for the limiters
            # must hand a half-open trial back to the breaker.
            if p.requests is not None and p.requests.reserve(1) > 0:
                await p.requests.acquire(1)
            await self._take_tokens(tokens)
            self._requests += 1
            # aclosing: a reader that stops early must close the vendor stream now, not
            # whenever the abandoned generator is collected.
            async with aclosing(self._client.stream(request)) as items:
                async for item in items:
                    if isinstance(item, LMDone):
                        self._record(request, item.response, time.perf_counter() - started)
                    yield item
        except BaseException as exc:
            p.breaker.on_failure(exc, trial)
            if isinstance(exc, Exception):
                self._failures += 1
                self._record_failure(request, exc, time.perf_counter() - started)
            raise
        p.breaker.on_success(trial)

    # --- observation -------------------------------------------------------------------

    def _record(self, request: LMRequest, response: LMResponse, seconds: float) -> None:
        budget = self._protections.budget
        cost = response.cost or 0.0
        if budget is not None and cost:
            budget.charge(cost)
        usage = response.usage
        if self._metrics is not None:
            bound = self._bound_metrics(self._metrics, response.model or request.model)
            bound.duration.observe(seconds)
            bound.prompt.inc(usage.prompt_tokens)
            bound.completion.inc(usage.completion_tokens)
            if cost:
                bound.cost.inc(cost)
        if self._events is not None:
            self._events.emit(
                LM_REQUEST_EVENT,
                {
                    "provider": self.vendor,
                    "model": response.model or request.model,
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "cost": response.cost,
                    "duration": seconds,
                },
            )

    def _bound_metrics(self, metrics: Metrics, model: str) -> _ModelMetrics:
        """The model's metric children, bound once (a `labels()` lookup per call is costly)."""
        bound = self._metrics_by_model.get(model)
        if bound is None:
            if len(self._metrics_by_model) >= _BOUND_MODELS:
                self._metrics_by_model.clear()
            bound = self._metrics_by_model[model] = _ModelMetrics(metrics, self.vendor, model)
        return bound

    def _record_failure(self, request: LMRequest, exc: Exception, seconds: float) -> None:
        if self._events is not None:
            self._events.emit(
                LM_REQUEST_FAILED_EVENT,
                {
                    "provider": self.vendor,
                    "model": request.model,
                    "error": type(exc).__name__,
                    "code": getattr(exc, "code", "error"),
                    "duration": seconds,
                },
            )

    def format_status(self) -> object:
        return {"vendor": self.vendor, "in_flight": self._in_flight}

    def __repr__(self) -> str:
        return f"LMProvider(vendor={self.vendor!r}, in_flight={self._in_flight})"


def provider_spec(
    vendor: str,
    make_actor: Callable[[], LMProvider],
    *,
    shutdown: float = 5.0,
) -> ChildSpec:
    """The child spec of a vendor's provider actor: permanent, registered by name."""
    return ChildSpec(
        id=f"lm_provider:{vendor}",
        start=make_actor,
        restart="permanent",
        shutdown=shutdown,
        name=provider_name(vendor),
    )
