"""The LMProvider actor: one vendor client, protected, counted and observed, serving many calls.

`Complete` is an inline handler: it runs in the caller's own task (no mailbox
wait, no task hop), so the actor serves any number of calls at once and a
caller that stops waiting (its timeout, cancellation, a router falling back)
cancels its own work at once: no further attempt reaches the vendor and the
connection is released. A call passes, in order:

    budget -> bulkhead slot -> [breaker -> limiter (rpm, tpm) -> vendor] x retries

all under the call's deadline (see `_lm_call`), then is charged to the budget,
recorded as an `lm_request` event and in the Prometheus families. This actor
is the one place calls are counted, logged and evented: a retried attempt logs
at debug, the final failure once at warning and once as an `lm_request.failed` event.

A stream (`OpenStream`) runs in the reader's task through the same protected
loop, retried until its first item; an attempt waits for that item its timeout at most,
and every later wait for an item ends at the call's deadline (a vendor that keeps the
connection busy with keep-alive comments holds nothing past it; see `_stream_attempt`).
If the actor dies, callers in flight get `ActorExited` at once, a stream of the dead
incarnation raises `ActorExited`, and the vendor client's connections are closed, on a
kill too.

Settings apply while it runs: the actor subscribes to `providers.<vendor>` (and
re-reads that entry in `started()`, so a change made while it restarted is not
lost). A changed entry builds a new vendor client (key, base URL, timeout,
transport) and call policy for the calls that start after it; calls in flight
finish on the old client, which is closed when the last of them ends. The
protections follow through the shared `ProviderSettings`. A client that cannot
be built (its transport not installed) leaves the old settings in force, logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

from lmvisor.config.schema import ProviderConfig
from lmvisor.programs.lm import LMCapabilities, LMDone, LMRequest, LMResponse, LMStreamItem
from lmvisor.providers.client import VendorClient
from lmvisor.providers.pricing import price_for
from lmvisor.runtime.actor import Actor, ActorRef, ErrorReply, handler
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.clock import Clock
from lmvisor.runtime.config_service import ConfigChanged, covers, subscribe_config
from lmvisor.runtime.errors import ActorExited, DeadlineExceeded, LmvisorError
from lmvisor.runtime.messages import Call
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.runtime.observe.metrics import LMFigures, Metrics
from lmvisor.runtime.observe.names import LM_REQUEST as LM_REQUEST_EVENT
from lmvisor.runtime.observe.names import LM_REQUEST_FAILED as LM_REQUEST_FAILED_EVENT
from lmvisor.runtime.protection import Bulkhead, CircuitBreaker, RateLimiter, Retry
from lmvisor.services._lm_call import CallPolicy, acquire_slot, protected, slot
from lmvisor.services._stream_attempt import END, DeadlineWatch, open_stream_attempt
from lmvisor.services.budget import Budget

if TYPE_CHECKING:
    # Only for annotations: provider_settings builds this module's ProviderProtections.
    from lmvisor.services.provider_settings import ProviderSettings

__all__ = [
    "Complete",
    "Drain",
    "GetCapabilities",
    "GetStatistics",
    "LMProvider",
    "LMProviderStatistics",
    "OpenStream",
    "ProviderProtections",
    "estimate_tokens",
    "provider_name",
    "provider_spec",
]

_log = get_logger("lmvisor.services.lm_provider")
_BOUND_MODELS = 256  # models whose LM figures an actor keeps bound
_LM_REQUEST_FIELDS = ("provider", "model", "prompt_tokens", "completion_tokens", "cost", "duration")


def provider_name(vendor: str) -> tuple[str, str]:
    """The registry name of a vendor's provider actor."""
    return ("lm_provider", vendor)


# --- messages -----------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Complete(Call[LMResponse]):
    """Send one request to the vendor; the reply is its response.

    Handled inline, in the caller's task. `deadline` is the call's absolute
    deadline on the runtime's clock (None: none).
    """

    request: LMRequest
    deadline: float | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class OpenStream(Call[AsyncGenerator[LMStreamItem, None]]):
    """Admit a streaming request; the reply is an iterator the caller drains.

    The actor checks the budget before replying; the slot, the breaker, the
    limiters, the retries and the bytes happen in the reader's task from its
    first `anext`, so a slow reader holds no actor task. Closing the iterator
    early closes the vendor stream (and its connection) at once.
    """

    request: LMRequest
    deadline: float | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class GetCapabilities(Call[LMCapabilities]):
    """What the vendor's models support."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class LMProviderStatistics:
    """Counters of one provider incarnation.

    Attributes:
        vendor: the provider's name.
        requests: calls started (whole and streamed).
        failures: calls that ended in an error (refusals before sending included
            once a call started; abandoned calls are not failures).
        retries: attempts after the first.
        in_flight: calls started and not yet finished (a stream until its end).
    """

    vendor: str
    requests: int
    failures: int
    retries: int
    in_flight: int


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class GetStatistics(Call[LMProviderStatistics]):
    """The incarnation's counters."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Drain(Call[int]):
    """Wait until no call is in flight (its vendor is being removed); replies with the
    calls still in flight when `timeout` seconds passed first (0: drained)."""

    timeout: float


# --- protections ----------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderProtections:
    """A vendor's protections; they outlive actor restarts (the breaker remembers).

    The breaker and the limiter come from the runtime's named `Protections`
    (so they show in `runtime.protections` and report to its metrics and events).

    Attributes:
        breaker: trips after consecutive vendor failures.
        limiter: requests (and estimated tokens) per period, or None.
        bulkhead: vendor calls running at once, and how many may queue.
        retry: attempts with backoff, honouring the vendor's Retry-After, or None.
        budget: a cost cap per period, or None (its estimates use the built-in prices).
    """

    breaker: CircuitBreaker
    bulkhead: Bulkhead
    limiter: RateLimiter | None = None
    retry: Retry | None = None
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


# --- the actor ---------------------------------------------------------------------------


class LMProvider(Actor):
    """One vendor behind its protections; registered as `("lm_provider", vendor)`.

    Args:
        vendor: the name models use as their prefix ("openai", "local").
        settings: the vendor's entry and protections, shared across incarnations;
            the client is built from it in `started()`, so a restarted incarnation
            gets a fresh connection pool and the settings now in force.
        clock: the time line of deadlines, backoff and breakers.
        events: where `lm_request` events go, or None.
        metrics: where LM figures go, or None.
    """

    def __init__(
        self,
        *,
        vendor: str,
        settings: ProviderSettings,
        clock: Clock,
        events: EventRing | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__()
        bulkhead = settings.protections.bulkhead
        self.vendor = vendor
        # `Complete` runs inline, in its caller's task: no mailbox slot, no task of ours.
        # Streams are opened through the mailbox: it holds as many opens as the bulkhead
        # runs and queues.
        self.mailbox_capacity = max(1000, bulkhead.max_concurrent + bulkhead.max_queued)
        self._settings = settings
        self._clock = clock
        self._adopt_policy()
        self._events = events
        self._metrics = metrics
        self._metrics_by_model: dict[str, LMFigures] = {}
        self._lease: _Lease | None = None  # the client new calls use
        self._retiring: list[_Lease] = []  # older clients, closed when their calls end
        self._requests = 0
        self._failures = 0
        self._retries = 0
        self._retry_listener = self._on_retry  # bound once, not per call

    async def started(self) -> None:
        # Subscribed before the entry is read: a change accepted in between is then a
        # notice in the mailbox, not lost (it may apply twice; applying is idempotent).
        config = self.runtime.via("config")
        await subscribe_config(config, self.ref, f"providers.{self.vendor}")
        await subscribe_config(config, self.ref, self._limiter_path)
        self._apply(self.runtime.config.providers.get(self.vendor))
        if self._settings.refresh_limiter():
            self._adopt_policy()
        if self._lease is None:  # a new incarnation: `_apply` found nothing to change
            self._swap(self._settings.client())
        self.spawn_task(self._hold())

    @property
    def _limiter_path(self) -> str:
        return f"infrastructure.rate_limiters.{self.vendor}"

    @handler
    def changed(self, msg: ConfigChanged) -> None:
        if covers(self._limiter_path, msg.path):
            # A limiter that exists is changed in place by the runtime; one that did not
            # (no rpm, no entry at start) is taken now.
            if self._settings.refresh_limiter():
                self._adopt_policy()
            if not covers(f"providers.{self.vendor}", msg.path):
                return
        self._apply(msg.config.providers.get(self.vendor))

    @handler
    async def drain(self, msg: Drain) -> int:
        # Polled in real time (a mock clock stands still), off the call path: a signal
        # from each call's end would cost every call for this rare wait.
        loop = asyncio.get_running_loop()
        give_up = loop.time() + msg.timeout
        while self._in_flight and loop.time() < give_up:  # noqa: ASYNC110 (see above)
            await asyncio.sleep(_DRAIN_POLL)
        return self._in_flight

    @handler(inline=True)
    async def complete(self, msg: Complete) -> LMResponse:
        lease = self._lease or self._not_started()
        client = lease.client
        request = msg.request
        policy = self._policy
        self._requests += 1
        lease.calls += 1
        started = time.perf_counter()
        try:
            limiter = policy.limiter  # inline `_estimates()`: no method call per request
            estimates = self._budget is not None or (
                limiter is not None and limiter.token_limit is not None
            )
            tokens = self._admit(request) if estimates else 0
            # The slot by hand, not `slot()`: a context manager per call costs.
            bulkhead = policy.bulkhead
            if not bulkhead.try_acquire():
                await acquire_slot(policy, msg.deadline)
                if lease.retired:  # queued across a settings change: sent on the new client
                    lease = self._moved(lease)
                    client, policy = lease.client, self._policy
            try:
                response = await protected(
                    policy,
                    _send_once,
                    client,
                    request,
                    deadline=msg.deadline,
                    tokens=tokens,
                    on_retry=self._retry_listener,
                )
            finally:
                bulkhead.release()
        except Exception as exc:
            self._failed(request, exc, time.perf_counter() - started)
            raise
        finally:
            lease.calls -= 1
            if lease.retired and not lease.calls:
                self._close(lease)
        self._record(request, response, time.perf_counter() - started)
        return response

    @handler
    def open_stream(self, msg: OpenStream) -> AsyncGenerator[LMStreamItem, None] | ErrorReply:
        try:
            tokens = self._admit(msg.request)
        except LmvisorError as exc:
            return ErrorReply(exc)
        return self._stream(msg.request, msg.deadline, tokens)

    @handler
    def get_capabilities(self, msg: GetCapabilities) -> LMCapabilities:
        return (self._lease or self._not_started()).client.capabilities

    @handler
    def get_statistics(self, msg: GetStatistics) -> LMProviderStatistics:
        return LMProviderStatistics(
            vendor=self.vendor,
            requests=self._requests,
            failures=self._failures,
            retries=self._retries,
            in_flight=self._in_flight,
        )

    # --- settings ----------------------------------------------------------------------

    @property
    def _in_flight(self) -> int:
        """Calls started and not yet finished, on the current client and the retiring ones."""
        lease = self._lease
        return (0 if lease is None else lease.calls) + sum(old.calls for old in self._retiring)

    def _apply(self, config: ProviderConfig | None) -> None:
        """Take the vendor's entry `config` if it changed (None: the entry is gone, and
        the vendor's removal stops this actor)."""
        settings = self._settings
        if config is None or config == settings.seen or config == settings.config:
            return
        try:
            client = settings.client(config)
        except (ImportError, ValueError) as exc:
            # The message names no value (a key or URL could be in one): its type only.
            _log.warning(
                "lm_provider.settings_not_applied", provider=self.vendor, error=type(exc).__name__
            )
            return
        settings.update(config)
        self._adopt_policy()
        self._swap(client)

    def _adopt_policy(self) -> None:
        """Build the call policy from the shared settings (calls in flight keep theirs)."""
        settings = self._settings
        protections = settings.protections
        limiter = protections.limiter
        self._policy = CallPolicy(
            key=self.vendor,
            breaker=protections.breaker,
            limiter=limiter,
            bulkhead=protections.bulkhead,
            retry=protections.retry,
            timeout=settings.config.timeout,
            clock=self._clock,
        )
        self._budget = protections.budget

    def _swap(self, client: VendorClient) -> None:
        """Serve new calls from `client`; the old one closes when its last call ends."""
        old, self._lease = self._lease, _Lease(client)
        if old is not None:
            old.retired = True
            self._retiring.append(old)
            if not old.calls:
                self._close(old)

    def _moved(self, lease: _Lease) -> _Lease:
        """The current lease for a call that held `lease` (retired) while it queued."""
        current = self._lease or lease
        current.calls += 1
        lease.calls -= 1
        if not lease.calls:
            self._close(lease)
        return current

    def _close(self, lease: _Lease) -> None:
        """Close a retired client in a task of ours. The lease stays in `_retiring` until
        it is closed: should the actor die first (the task never starts, or is cancelled),
        `_hold` closes it (closing twice is harmless)."""
        if lease in self._retiring and not lease.closing:
            lease.closing = True
            with contextlib.suppress(ActorExited, RuntimeError):
                self.spawn_task(self._close_lease(lease))

    async def _close_lease(self, lease: _Lease) -> None:
        await _close_quietly(lease.client, self.vendor)
        if lease in self._retiring:
            self._retiring.remove(lease)

    async def _hold(self) -> None:
        """Own the clients for the incarnation's life: close them when the actor dies,
        killed too."""
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            leases = [*self._retiring, *([] if self._lease is None else [self._lease])]
            self._retiring.clear()
            for lease in leases:  # each on its own: one failing close skips no other
                await _close_quietly(lease.client, self.vendor)

    # --- the call path ---------------------------------------------------------------

    def _not_started(self) -> _Lease:
        raise RuntimeError(f"provider {self.vendor!r} used before started()")

    def _estimates(self) -> bool:
        """Whether anything reads a request's token estimate: the budget, or the limiter's
        token bucket (read per call: a live update may add or drop it)."""
        limiter = self._policy.limiter
        return self._budget is not None or (limiter is not None and limiter.token_limit is not None)

    def _admit(self, request: LMRequest) -> int:
        """Check the budget; return the request's estimated tokens (0 when nothing reads them)."""
        if not self._estimates():
            return 0  # the estimate walks every message: skip it when nothing uses it
        tokens = estimate_tokens(request)
        if self._budget is not None:
            self._budget.check(_estimate_cost(request, tokens))
        return tokens

    async def _stream(
        self, request: LMRequest, deadline: float | None, tokens: int
    ) -> AsyncGenerator[LMStreamItem, None]:
        incarnation = self.ref
        self._check_alive(incarnation)
        lease = self._lease or self._not_started()
        client = lease.client
        policy = self._policy
        self._requests += 1
        lease.calls += 1
        started = time.perf_counter()
        opened = False
        watch: DeadlineWatch | None = None
        try:
            async with slot(policy, deadline):
                vendor = self.vendor
                first, items = await protected(
                    policy,
                    lambda c, r, timeout: open_stream_attempt(c, r, timeout, vendor),
                    client,
                    request,
                    deadline=deadline,
                    tokens=tokens,
                    on_retry=self._retry_listener,
                )
                opened = True
                if deadline is not None:
                    watch = DeadlineWatch(deadline - policy.clock.monotonic(), vendor)
                # aclosing: a reader that stops early closes the vendor stream now.
                async with aclosing(items):
                    item: LMStreamItem = first
                    while True:
                        if isinstance(item, LMDone):
                            self._record(request, item.response, time.perf_counter() - started)
                        yield item
                        self._check_alive(incarnation)
                        if deadline is not None and policy.clock.monotonic() >= deadline:
                            raise DeadlineExceeded(operation=f"streaming from {self.vendor}")
                        item = await (anext(items, END) if watch is None else watch.next(items))
                        if item is END:
                            break
        except Exception as exc:
            error = _exited(incarnation, exc)
            if opened:
                policy.breaker.on_failure(error)  # a stream that broke after opening
            self._failed(request, error, time.perf_counter() - started)
            if error is exc:
                raise
            raise error from exc
        finally:
            lease.calls -= 1
            if lease.retired and not lease.calls:
                self._close(lease)
            if watch is not None:
                watch.close()

    @staticmethod
    def _check_alive(incarnation: ActorRef) -> None:
        """Raise `ActorExited` once the incarnation that opened a stream is gone."""
        if not incarnation.alive:
            raise ActorExited(actor=incarnation.name, reason=incarnation.exit_reason)

    # --- observation -------------------------------------------------------------------

    def _on_retry(self, attempt: int, exc: Exception, delay: float) -> None:
        self._retries += 1
        _log.debug(
            "lm_request.retry",
            provider=self.vendor,
            attempt=attempt,
            error=getattr(exc, "code", type(exc).__name__),
            delay=round(delay, 3),
        )

    def _record(self, request: LMRequest, response: LMResponse, seconds: float) -> None:
        cost = response.cost
        if cost and self._budget is not None:
            self._budget.charge(cost)
        usage = response.usage
        model = response.model or request.model
        if self._metrics is not None:
            figures = self._metrics_by_model.get(model) or self._bind_figures(self._metrics, model)
            figures.record(seconds, usage.prompt_tokens, usage.completion_tokens, cost)
        if self._events is not None:
            # Built as an Event only if someone reads it: one fact per call, cheaply
            # (copied into the ring's cells: no dict, no object kept for the collector).
            self._events.record_values(
                LM_REQUEST_EVENT,
                _LM_REQUEST_FIELDS,
                self.vendor,
                model,
                usage.prompt_tokens,
                usage.completion_tokens,
                cost,
                seconds,
            )

    def _bind_figures(self, metrics: Metrics, model: str) -> LMFigures:
        """The model's LM figures, bound on its first answer (no lookup per call)."""
        if len(self._metrics_by_model) >= _BOUND_MODELS:
            self._metrics_by_model.clear()
        figures = self._metrics_by_model[model] = metrics.lm(self.vendor, model)
        return figures

    def _failed(self, request: LMRequest, exc: Exception, seconds: float) -> None:
        self._failures += 1
        code = getattr(exc, "code", "error")
        _log.warning(
            LM_REQUEST_FAILED_EVENT,
            provider=self.vendor,
            model=request.model,
            error=type(exc).__name__,
            code=code,
            status=getattr(exc, "status", None),
            message=str(exc),
        )
        if self._events is not None:
            self._events.emit(
                LM_REQUEST_FAILED_EVENT,
                {
                    "provider": self.vendor,
                    "model": request.model,
                    "error": type(exc).__name__,
                    "code": code,
                    "duration": seconds,
                },
            )

    def format_status(self) -> object:
        return {"vendor": self.vendor, "in_flight": self._in_flight}

    def __repr__(self) -> str:
        return f"LMProvider(vendor={self.vendor!r}, in_flight={self._in_flight})"


_DRAIN_POLL = 0.02  # seconds between looks at the calls in flight while draining


@final
class _Lease:
    """One vendor client and the calls using it; `retired` once newer settings replaced it."""

    __slots__ = ("calls", "client", "closing", "retired")

    def __init__(self, client: VendorClient) -> None:
        self.client = client
        self.calls = 0
        self.retired = False
        self.closing = False

    def __repr__(self) -> str:
        return f"_Lease(calls={self.calls}, retired={self.retired})"


async def _close_quietly(client: VendorClient, vendor: str) -> None:
    """Close a replaced client; a failure to close is logged, not a crash of the actor."""
    try:
        await client.aclose()
    except Exception as exc:
        _log.warning("lm_provider.close_failed", provider=vendor, error=type(exc).__name__)


def _exited(incarnation: ActorRef, exc: Exception) -> Exception:
    """`ActorExited` when the incarnation that owned a stream is gone, else `exc`."""
    if incarnation.alive or isinstance(exc, ActorExited):
        return exc
    return ActorExited(actor=incarnation.name, reason=incarnation.exit_reason)


def _send_once(
    client: VendorClient, request: LMRequest, timeout: float
) -> Coroutine[Any, Any, LMResponse]:
    """One attempt of a whole answer."""
    return client.complete(request, timeout=timeout)


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
