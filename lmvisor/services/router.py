"""The router LM: programs' `LM` protocol over the provider actors, with fallbacks and cooldowns.

`RouterLM("openai/gpt-4o-mini", fallbacks=["anthropic/claude-3-5-haiku-latest"])`
resolves each model's vendor prefix to the provider actor registered as
`("lm_provider", vendor)` (through the registry, so a restarted provider is
found again) and tries the deployments in order. As in LiteLLM's Router:

- a deployment that fails is skipped for the rest of this call and the next
  one is tried; errors that are the request's fault (a bad request, a
  context window exceeded) are raised at once instead, since every
  deployment would refuse them too;
- a deployment whose vendor budget is spent is skipped like a failed one
  (budgets are per vendor, so another vendor may still serve), without
  counting towards its cooldown;
- a deployment that fails more than `allowed_fails` times within a minute
  cools down for `cooldown` seconds and is skipped by every call meanwhile
  (unless it is the route's only deployment: there is nothing to fall back to);
- when every deployment failed or is cooling, `NoDeploymentAvailable`
  carries each cause (with a single deployment, its own error is raised).

Deadlines: a call has one absolute deadline, the earliest of the caller's
(`lmvisor.runtime.deadline` context, on the runtime's clock), `timeout=` on
`complete`/`stream`, and the router's own `timeout` (120 s by default). It
bounds the wait in the provider's mailbox, every attempt, every backoff and
the fallbacks; a deployment also gets at most `deployment_timeout` of it.
The provider runs the call inline, in the caller's task, and enforces the
deadline at every wait itself, ending a little before the router's time is up
with its own typed error (`DeadlineExceeded`, `ProviderTimeout`,
`RetryExhausted`); the router then falls back or gives up. A cancelled caller
cancels the provider's work at once, so a fallback never leaves the previous
vendor still retrying.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Sequence
from contextlib import aclosing
from typing import Any, final

from lmvisor._redaction import clipped
from lmvisor.programs.lm import (
    MAX_MODEL_NAME,
    LMCapabilities,
    LMRequest,
    LMResponse,
    LMStreamItem,
    model_name_problem,
)
from lmvisor.providers.errors import BadRequestError, ResponseFormatError
from lmvisor.providers.reasoning import supports_reasoning
from lmvisor.runtime.clock import Clock
from lmvisor.runtime.deadline import current_deadline
from lmvisor.runtime.errors import DeadlineExceeded, LmvisorError, RuntimeClosed
from lmvisor.runtime.registry import Via
from lmvisor.runtime.runtime import Runtime
from lmvisor.services.cooldown import Cooldowns
from lmvisor.services.errors import (
    AppClosed,
    BudgetExceeded,
    NoDeploymentAvailable,
    ServiceInputError,
    UnknownProvider,
)
from lmvisor.services.lm_provider import Complete, OpenStream, provider_name

__all__ = ["DEFAULT_CALL_TIMEOUT", "RouterLM", "split_model"]

DEFAULT_CALL_TIMEOUT = 120.0
"""Seconds a call may take, every deployment, attempt and backoff included, when the
caller sets no deadline."""

_PROVIDER_MARGIN = 0.02  # seconds
# Vendors whose APIs accept OpenAI's json_schema response_format.
_NO_JSON_SCHEMA = frozenset({"anthropic"})
_END: Any = object()
_Errors = list[tuple[str, BaseException]]


def split_model(model: str) -> tuple[str, str]:
    """Split "vendor/model" into its parts.

    Raises:
        ServiceInputError: (a ValueError) naming `model`, if it has no vendor prefix or
            is longer than `MAX_MODEL_NAME` characters.
    """
    problem = model_name_problem(model)
    if problem is not None:
        shown = f", got {model!r}" if len(model) <= MAX_MODEL_NAME else ""
        raise ServiceInputError(field="model", problem=problem + shown)
    vendor, _, name = model.partition("/")
    return vendor, name


def _is_callers_fault(exc: LmvisorError) -> bool:
    """Errors that another deployment would repeat, so falling back cannot help."""
    return isinstance(exc, BadRequestError)


def _seconds(name: str, value: float | None) -> float | None:
    """A timeout option: None or +inf is no bound; otherwise it must be > 0."""
    if value is None or value == math.inf:
        return None
    if math.isnan(value) or value <= 0:
        raise ValueError(f"{name} must be > 0 (or None), got {value!r}")
    return float(value)


async def _first_item(items: AsyncIterator[LMStreamItem], deployment: str) -> LMStreamItem:
    """The stream's first item.

    Raises:
        ResponseFormatError: the stream ended before it.
        LmvisorError: whatever the provider's stream raises.
    """
    first = await anext(items, _END)
    if first is _END:
        raise ResponseFormatError(
            provider=split_model(deployment)[0],
            model=deployment,
            detail="stream ended before its first item",
        )
    return first


def _early(until: float | None, wait: float | None) -> float | None:
    """The provider's deadline: a little before the router stops waiting.

    So the provider's own typed outcome (its vendor error, `RetryExhausted`)
    normally reaches the router before the router's wait runs out, and the
    caller sees why the call failed rather than a bare timeout.
    """
    if until is None or wait is None:
        return until
    return until - min(_PROVIDER_MARGIN, wait / 10)


@final
class RouterLM:
    """An `LM` that routes each request to a provider actor, falling back in order.

    Args:
        runtime: whose registry holds the provider actors (and whose clock
            deadlines are on).
        model: the primary deployment, "vendor/model".
        fallbacks: further deployments, tried in order (a repeated one, the
            primary included, only where it first appears).
        vendors: the vendors with a provider configured; a model naming any
            other raises `UnknownProvider` here, not at the first call.
        timeout: seconds a whole call may take when the caller gives no
            (earlier) deadline; None or +inf: no bound of the router's own.
        deployment_timeout: seconds one deployment may take of it (None: all
            that is left), so a slow deployment leaves time to fall back.
        cooldowns: failure bookkeeping, shareable between routers.
        capabilities: override what the primary vendor is assumed to support.

    Raises:
        ServiceInputError: a model is not "vendor/model" (of at most `MAX_MODEL_NAME`
            characters).
        ValueError: a timeout is not positive.
        UnknownProvider: a model's vendor is not in `vendors`.
    """

    __slots__ = (
        "_addresses",
        "_capabilities",
        "_clock",
        "_cooldowns",
        "_deployment_timeout",
        "_deployments",
        "_model",
        "_runtime",
        "_timeout",
    )

    def __init__(
        self,
        runtime: Runtime,
        model: str,
        *,
        fallbacks: Sequence[str] = (),
        vendors: Collection[str] | None = None,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
        deployment_timeout: float | None = None,
        cooldowns: Cooldowns | None = None,
        capabilities: LMCapabilities | None = None,
    ) -> None:
        # A deployment named twice (a model listed among its own fallbacks) is tried once:
        # a second try in the same call would only repeat the first one's failure.
        deployments = tuple(dict.fromkeys((model, *fallbacks)))
        for name in deployments:
            vendor, _ = split_model(name)
            if vendors is not None and vendor not in vendors:
                raise UnknownProvider(model=name, vendor=vendor, known=list(vendors))
        self._runtime = runtime
        self._clock: Clock = runtime.clock
        self._model = model
        self._deployments = deployments
        # Addresses resolve the registered name on every call, so a restarted provider is
        # still found; building them once keeps the split and lookup off the hot path.
        self._addresses: dict[str, Via] = {d: self._address(d) for d in deployments}
        self._timeout = _seconds("timeout", timeout)
        self._deployment_timeout = _seconds("deployment_timeout", deployment_timeout)
        self._cooldowns = cooldowns if cooldowns is not None else Cooldowns(clock=runtime.clock)
        primary = split_model(model)[0]
        self._capabilities = capabilities or LMCapabilities(
            json_schema=primary not in _NO_JSON_SCHEMA, reasoning=supports_reasoning(model)
        )

    @property
    def model(self) -> str:
        return self._model

    @property
    def capabilities(self) -> LMCapabilities:
        return self._capabilities

    @property
    def cooldowns(self) -> Cooldowns:
        return self._cooldowns

    async def complete(
        self,
        request: LMRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - shortens the call's deadline
    ) -> LMResponse:
        """Send `request` to the first deployment that answers, within the call's deadline.

        Args:
            request: the request; a "vendor/model" `model` other than the
                router's is tried first.
            timeout: seconds this call may take (it only shortens the deadline).

        Cancellation cancels the provider's work for the call at once.

        Raises:
            DeadlineExceeded: the deadline passed (the last deployment's error chained).
            NoDeploymentAvailable: every deployment failed or is cooling down.
            AppClosed: the runtime holding the providers has stopped.
            LmvisorError: the single deployment's own error, or an error that is
                the caller's fault (a bad request), raised at once.
            ValueError: `timeout` is not positive.
        """
        now = self._clock.monotonic()
        at = self._deadline(timeout, now)
        model = request.model
        order = self._deployments if not model or model == self._model else self._order(request)
        candidates = order if len(order) == 1 else self._candidates(order)
        # Made on the first failure, and an index loop: the frame holds no list or
        # iterator the garbage collector must walk while the call is in flight.
        errors: _Errors | None = None
        for index in range(len(candidates)):
            deployment = candidates[index]
            if index:
                now = self._clock.monotonic()
            until, wait = self._window(at, now, request, errors or ())
            address = self._addresses.get(deployment) or self._address(deployment)
            msg = Complete(
                request=request if model == deployment else self._retarget(request, deployment),
                deadline=_early(until, wait),
            )
            try:
                # `Complete` runs inline, in this task, so this task's cancellation stops
                # the provider's work too. No timer of the router's own: the provider
                # bounds every wait by the message's deadline (the slot, the limiter,
                # each attempt through the transport's timeout, each backoff) and ends
                # with its typed error just before the router's time is up.
                response = await address.resolve().call(msg, timeout=None)
            except LmvisorError as exc:
                if _is_callers_fault(exc):
                    raise
                if errors is None:
                    errors = []
                self._failed(deployment, exc, errors, lone=len(order) == 1)
                continue
            self._cooldowns.success(deployment)
            return response
        raise self._exhausted(request, errors or [])

    async def stream(
        self,
        request: LMRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - shortens the call's deadline
    ) -> AsyncIterator[LMStreamItem]:
        """Stream from the first deployment whose stream starts, within the call's deadline.

        Each deployment's provider retries until the first item arrives; a
        failure before it falls back to the next deployment, a failure after
        it is raised to the reader (the answer is never restarted elsewhere).

        Raises:
            As `complete()`; after the first item, the provider's typed error
            (`ActorExited` when its incarnation died).
        """
        at = self._deadline(timeout, self._clock.monotonic())
        errors: _Errors = []
        order = self._order(request)
        for deployment in self._candidates(order):
            try:
                items = await self._open_stream(deployment, request, at, errors)
            except LmvisorError as exc:
                if _is_callers_fault(exc):
                    raise
                self._failed(deployment, exc, errors, lone=len(order) == 1)
                continue
            # aclosing: a reader that stops early closes the provider's stream (and its
            # connection) now, not when the abandoned generator is collected.
            async with aclosing(items):
                try:
                    first = await _first_item(items, deployment)
                except LmvisorError as exc:
                    if _is_callers_fault(exc):
                        raise
                    self._failed(deployment, exc, errors, lone=len(order) == 1)
                    continue
                yield first
                async for item in items:
                    yield item
            self._cooldowns.success(deployment)
            return
        raise self._exhausted(request, errors)

    async def _open_stream(
        self, deployment: str, request: LMRequest, at: float | None, errors: _Errors
    ) -> AsyncGenerator[LMStreamItem, None]:
        """Ask `deployment`'s provider to open its stream, within what is left of the call."""
        until, wait = self._window(at, self._clock.monotonic(), request, errors)
        target = self._addresses.get(deployment) or self._address(deployment)
        msg = OpenStream(request=self._retarget(request, deployment), deadline=_early(until, wait))
        return await target.call(msg, timeout=wait)

    # --- deadlines -----------------------------------------------------------------------

    def _deadline(self, timeout: float | None, now: float) -> float | None:
        """The call's absolute deadline: the earliest of the caller's, `timeout`, the router's."""
        at = current_deadline()
        budget = _seconds("timeout", timeout) if timeout is not None else None
        if budget is None or (self._timeout is not None and self._timeout < budget):
            budget = self._timeout
        if budget is not None:
            end = now + budget
            at = end if at is None or end < at else at
        return at

    def _window(
        self,
        at: float | None,
        now: float,
        request: LMRequest,
        errors: Sequence[tuple[str, BaseException]],
    ) -> tuple[float | None, float | None]:
        """This deployment's deadline and the seconds to wait for it, as of `now`.

        Raises:
            DeadlineExceeded: no time is left for another deployment.
        """
        per = self._deployment_timeout
        if at is None and per is None:
            return None, None
        if at is not None and now >= at:
            raise self._out_of_time(request, errors)
        until = at if per is None or (at is not None and at <= now + per) else now + per
        assert until is not None
        return until, until - now

    # --- bookkeeping ---------------------------------------------------------------------

    def _address(self, deployment: str) -> Via:
        return self._runtime.via(provider_name(split_model(deployment)[0]))

    def _candidates(self, order: tuple[str, ...]) -> tuple[str, ...]:
        if len(order) == 1:
            # A lone deployment never cools down (LiteLLM's rule too): with nothing to
            # fall back to, a cooldown would only turn retryable failures into instant ones.
            return order
        return tuple(d for d in order if not self._cooldowns.is_cooling(d))

    def _failed(self, deployment: str, exc: BaseException, errors: _Errors, *, lone: bool) -> None:
        if isinstance(exc, RuntimeClosed):
            # No provider will be there again, so no fallback or cooldown.
            operation = f"a call to {clipped(deployment, MAX_MODEL_NAME)}"
            raise AppClosed.of(exc, operation=operation) from None
        if not lone and not isinstance(exc, BudgetExceeded):
            self._cooldowns.failure(deployment)
        errors.append((deployment, exc))

    def _order(self, request: LMRequest) -> tuple[str, ...]:
        if request.model and request.model != self._model and "/" in request.model:
            return (request.model, *(d for d in self._deployments if d != request.model))
        return self._deployments

    @staticmethod
    def _retarget(request: LMRequest, deployment: str) -> LMRequest:
        if request.model == deployment:
            return request
        return dataclasses.replace(request, model=deployment)

    def _out_of_time(
        self, request: LMRequest, errors: Sequence[tuple[str, BaseException]]
    ) -> BaseException:
        if errors and isinstance(errors[-1][1], DeadlineExceeded):
            return errors[-1][1]
        model = clipped(request.model or self._model, MAX_MODEL_NAME)
        error = DeadlineExceeded(operation=f"routing a call to {model}")
        if errors:
            error.__cause__ = errors[-1][1]
        return error

    def _exhausted(self, request: LMRequest, errors: _Errors) -> BaseException:
        if len(errors) == 1 and len(self._deployments) == 1:
            return errors[0][1]
        error = NoDeploymentAvailable(model=request.model or self._model, errors=errors)
        if errors:
            error.__cause__ = errors[-1][1]
        return error

    def __repr__(self) -> str:
        return f"RouterLM(model={self._model!r}, deployments={list(self._deployments)!r})"
