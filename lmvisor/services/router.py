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
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import aclosing
from typing import final

from lmvisor.programs.lm import LMCapabilities, LMRequest, LMResponse, LMStreamItem
from lmvisor.providers.errors import BadRequestError
from lmvisor.providers.reasoning import supports_reasoning
from lmvisor.runtime.errors import LmvisorError
from lmvisor.runtime.registry import Via
from lmvisor.runtime.runtime import Runtime
from lmvisor.services.cooldown import Cooldowns
from lmvisor.services.errors import BudgetExceeded, NoDeploymentAvailable, UnknownProvider
from lmvisor.services.lm_provider import Complete, OpenStream, provider_name

__all__ = ["RouterLM", "split_model"]

# Vendors whose APIs accept OpenAI's json_schema response_format.
_NO_JSON_SCHEMA = frozenset({"anthropic"})


def split_model(model: str) -> tuple[str, str]:
    """Split "vendor/model" into its parts.

    Raises:
        ValueError: if `model` has no vendor prefix.
    """
    vendor, sep, name = model.partition("/")
    if not sep or not vendor or not name:
        raise ValueError(f"model must be 'vendor/model', got {model!r}")
    return vendor, name


def _is_callers_fault(exc: LmvisorError) -> bool:
    """Errors that another deployment would repeat, so falling back cannot help."""
    return isinstance(exc, BadRequestError)


@final
class RouterLM:
    """An `LM` that routes each request to a provider actor, falling back in order.

    Args:
        runtime: whose registry holds the provider actors.
        model: the primary deployment, "vendor/model".
        fallbacks: further deployments, tried in order.
        vendors: the vendors with a provider configured; a model naming any
            other raises `UnknownProvider` here, not at the first call.
        timeout: seconds a caller waits for one deployment (retries included);
            None waits as long as the provider takes.
        cooldowns: failure bookkeeping, shareable between routers.
        capabilities: override what the primary vendor is assumed to support.

    Raises:
        ValueError: if a model is not "vendor/model".
        UnknownProvider: if a model's vendor is not in `vendors`.
    """

    __slots__ = (
        "_addresses",
        "_capabilities",
        "_cooldowns",
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
        timeout: float | None = 120.0,
        cooldowns: Cooldowns | None = None,
        capabilities: LMCapabilities | None = None,
    ) -> None:
        deployments = (model, *fallbacks)
        for name in deployments:
            vendor, _ = split_model(name)
            if vendors is not None and vendor not in vendors:
                raise UnknownProvider(model=name, vendor=vendor, known=list(vendors))
        self._runtime = runtime
        self._model = model
        self._deployments = deployments
        # Addresses resolve the registered name on every call, so a restarted provider is
        # still found; building them once keeps the split and lookup off the hot path.
        self._addresses: dict[str, Via] = {d: self._address(d) for d in deployments}
        self._timeout = timeout
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

    async def complete(self, request: LMRequest) -> LMResponse:
        """Send `request` to the first deployment that answers.

        Cancellation cancels the wait for the current deployment (the provider
        may still finish the vendor call).

        Raises:
            NoDeploymentAvailable: every deployment failed or is cooling down.
            LmvisorError: the single deployment's own error, or an error that is
                the caller's fault (a bad request), raised at once.
        """
        errors: list[tuple[str, BaseException]] = []
        candidates = self._candidates(request)
        for deployment in candidates:
            target = self._addresses.get(deployment) or self._address(deployment)
            try:
                response = await target.resolve().call(
                    Complete(request=self._retarget(request, deployment)), timeout=self._timeout
                )
            except LmvisorError as exc:
                if _is_callers_fault(exc):
                    raise
                self._failed(deployment, exc, errors, lone=len(self._order(request)) == 1)
                continue
            self._cooldowns.success(deployment)
            return response
        raise self._exhausted(request, errors)

    async def stream(self, request: LMRequest) -> AsyncIterator[LMStreamItem]:
        """Stream from the first deployment that admits the request.

        Falls back only while opening: once text has arrived, a failure is
        raised to the reader rather than restarting the answer elsewhere.
        """
        errors: list[tuple[str, BaseException]] = []
        candidates = self._candidates(request)
        for deployment in candidates:
            target = self._addresses.get(deployment) or self._address(deployment)
            try:
                items = await target.call(
                    OpenStream(request=self._retarget(request, deployment)),
                    timeout=self._timeout,
                )
            except LmvisorError as exc:
                if _is_callers_fault(exc):
                    raise
                self._failed(deployment, exc, errors, lone=len(self._order(request)) == 1)
                continue
            # aclosing: a reader that stops early closes the provider's stream (and its
            # connection) now, not when the abandoned generator is collected.
            async with aclosing(items):
                try:
                    # The breaker, the limiter and the connection are all met by the first
                    # item, so a failure there still falls back.
                    first = await anext(items)
                except LmvisorError as exc:
                    if _is_callers_fault(exc):
                        raise
                    self._failed(deployment, exc, errors, lone=len(self._order(request)) == 1)
                    continue
                yield first
                async for item in items:
                    yield item
            self._cooldowns.success(deployment)
            return
        raise self._exhausted(request, errors)

    def _address(self, deployment: str) -> Via:
        return self._runtime.via(provider_name(split_model(deployment)[0]))

    def _candidates(self, request: LMRequest) -> tuple[str, ...]:
        order = self._order(request)
        if len(order) == 1:
            # A lone deployment never cools down (LiteLLM's rule too): with nothing to
            # fall back to, a cooldown would only turn retryable failures into instant ones.
            return order
        return tuple(d for d in order if not self._cooldowns.is_cooling(d))

    def _failed(
        self,
        deployment: str,
        exc: BaseException,
        errors: list[tuple[str, BaseException]],
        *,
        lone: bool,
    ) -> None:
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

    def _exhausted(
        self, request: LMRequest, errors: list[tuple[str, BaseException]]
    ) -> BaseException:
        if len(errors) == 1 and len(self._deployments) == 1:
            return errors[0][1]
        error = NoDeploymentAvailable(model=request.model or self._model, errors=errors)
        if errors:
            error.__cause__ = errors[-1][1]
        return error

    def __repr__(self) -> str:
        return f"RouterLM(model={self._model!r}, deployments={list(self._deployments)!r})"
