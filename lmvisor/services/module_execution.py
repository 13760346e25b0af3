"""One execution of a registered program: protections, fallbacks, events and metrics.

`run_execution` is what the ModuleManager's task supervisor runs for each
`execute` call, under the caller's correlation id and deadline:

1. `module_execution_start` is recorded (`module_id`, `module_type`, `version`).
2. The program's own breaker admits the call (or refuses it: `CircuitOpen`)
   and its limiter, if one is configured, takes a slot; a wait the deadline
   cannot cover is refused at once (`RateLimited`).
3. The program runs with the app's LM for its model, stale answers allowed
   for single LM calls when its options say so. A task context prepared with
   both (`prepare_context`, what `Modules.execute` starts executions in) saves
   setting them on every call.
4. If it fails, each configured fallback is tried in turn (`FALLBACK_ORDER`);
   the one that answers emits `fallback_strategy_success`. If none does,
   `AllStrategiesFailed` carries every cause; with no fallback configured the
   program's own error is raised. A caller's mistake (a missing input, a
   malformed value) is raised at once: no fallback could fix it.
   With a `stream` sink (`Modules.execute(..., stream=...)`), the primary
   strategy runs streamed: each output field's text goes to the sink as it
   arrives (`lmvisor.services.module_stream`); fallbacks run unstreamed.
5. `module_execution_complete` is recorded (`duration_ms`, `lm_calls`,
   `cost_usd`, `success`, `strategy`, and `error` on failure), and the
   `lmvisor_module_execution_seconds` / `_success_total` / `_errors_total`
   metrics are recorded. A cancelled execution (its caller stopped waiting: an
   HTTP client that disconnected, a cutoff, a drain) is a failure with the code
   `cancelled`, as a cancelled optimization job is.

Both events come at request rate, so they go in with `EventRing.record_values`: their
`Event` objects are built only for a listener or query that asks for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, final

from lmvisor.programs._usage import UsageAccumulator, close_accumulator, open_accumulator
from lmvisor.programs.example import Prediction
from lmvisor.programs.lm import LM
from lmvisor.programs.module import Module
from lmvisor.programs.settings import configure, context
from lmvisor.runtime.correlation import current_correlation_id
from lmvisor.runtime.deadline import current_deadline, deadline_at, time_left
from lmvisor.runtime.errors import LmvisorError
from lmvisor.runtime.observe.events import EventRing
from lmvisor.runtime.observe.names import (
    FALLBACK_STRATEGY_SUCCESS,
    MODULE_EXECUTION_COMPLETE,
    MODULE_EXECUTION_START,
)
from lmvisor.runtime.protection.limiter import RateLimiter
from lmvisor.services.cached_lm import cache_policy, cache_report
from lmvisor.services.errors import AllStrategiesFailed
from lmvisor.services.module_stream import StreamSink, stream_program
from lmvisor.services.module_table import ModuleRecord, ModuleVersion

__all__ = ["CANCELLED", "Execution", "ExecutionContext", "prepare_context", "run_execution"]

CANCELLED: Final = "cancelled"
"""The error code of an execution cancelled before it ended (event `error.code`, metric label)."""

PRIMARY: Final = "primary"
# The two events' fields, in order (`EventRing.record_values`: no dict per event).
_START: Final = MODULE_EXECUTION_START
_START_KEYS: Final = ("module_id", "module_type", "version")
_COMPLETE: Final = MODULE_EXECUTION_COMPLETE
_COMPLETE_KEYS: Final = (*_START_KEYS, "duration_ms", "lm_calls", "cost_usd", "success", "strategy")
_FAILED_KEYS: Final = (*_COMPLETE_KEYS, "error")


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Execution:
    """The outcome of one `execute`.

    Attributes:
        module_id: the program that ran.
        version: the version that ran (the current one when the call began).
        prediction: what the program (or the fallback that answered) returned.
        strategy: "primary", or the fallback that answered.
        duration_ms: from the start of the execution task to its end.
        lm_calls: LM calls made (cache hits included).
        cost_usd: their summed cost, None when a call reported none.
        cached: every LM call was answered by the cache.
        stale: an expired cached answer was used.
        correlation_id: the id the execution's events carry.
        failures: (strategy, error) of each strategy that failed before the answer.
    """

    module_id: str
    version: int
    prediction: Any
    strategy: str
    duration_ms: float
    lm_calls: int
    cost_usd: float | None
    cached: bool
    stale: bool
    correlation_id: str | None
    failures: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the prediction's values through `to_dict` when it has one)."""
        to_dict = getattr(self.prediction, "to_dict", None)
        return {
            "module_id": self.module_id,
            "version": self.version,
            "prediction": to_dict() if callable(to_dict) else self.prediction,
            "strategy": self.strategy,
            "duration_ms": self.duration_ms,
            "lm_calls": self.lm_calls,
            "cost_usd": self.cost_usd,
            "cached": self.cached,
            "stale": self.stale,
            "correlation_id": self.correlation_id,
            "failures": [list(f) for f in self.failures],
        }


@final
@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """What executions need from the application: its events and an LM per model."""

    events: EventRing
    lm_for: Callable[[str], LM]


def run_execution(
    ctx: ExecutionContext,
    record: ModuleRecord,
    version: ModuleVersion,
    inputs: Mapping[str, Any],
    at: float | None,
    stream: StreamSink | None = None,
    *,
    prepared: bool = False,
) -> Coroutine[Any, Any, Execution]:
    """Run `version` of `record`'s program on `inputs` before the absolute deadline `at`.

    With `stream`, the primary strategy's output fields go to it as they arrive. `prepared`:
    the running context was prepared with the program's LM and `allow_stale`
    (`prepare_context`), so the primary strategy runs in it as it is.

    Raises:
        CircuitOpen, RateLimited: the program's breaker or limiter refused (no fallback set).
        AllStrategiesFailed: the program and every configured fallback failed.
        DeadlineExceeded: the deadline passed (no fallback set).
        LmvisorError, ValueError: the program's own failure.
    """
    execution = _execute(ctx, record, version, inputs, stream, prepared)
    # A task started under that deadline already runs under it (`start_task(deadline=...)`).
    if at is None or current_deadline() == at:
        return execution
    return _bounded(at, execution)


async def _bounded(at: float, execution: Awaitable[Execution]) -> Execution:
    with deadline_at(at):
        return await execution


async def _execute(
    ctx: ExecutionContext,
    record: ModuleRecord,
    version: ModuleVersion,
    inputs: Mapping[str, Any],
    stream: StreamSink | None,
    prepared: bool,
) -> Execution:
    with cache_report() as report:
        module_id, number = record.module_id, version.number
        module_type = type(version.program).__name__
        ctx.events.record_values(_START, _START_KEYS, module_id, module_type, number)
        started = time.perf_counter()
        acc = open_accumulator()
        try:
            result, strategy, failures = await _strategies(
                ctx, record, version, inputs, stream, prepared
            )
        except (Exception, asyncio.CancelledError) as exc:
            seconds = time.perf_counter() - started
            close_accumulator(acc)
            _failed(ctx, record, (module_id, module_type, number), seconds, acc, exc)
            raise
        close_accumulator(acc)
        seconds = time.perf_counter() - started
        cost = acc.total_cost()
        record.figures.record(seconds)
        ms, calls = round(seconds * 1000.0, 3), acc.calls
        complete = (module_id, module_type, number, ms, calls, cost, True, strategy)
        ctx.events.record_values(_COMPLETE, _COMPLETE_KEYS, *complete)
        return Execution(
            module_id=module_id,
            version=number,
            prediction=result,
            strategy=strategy,
            duration_ms=seconds * 1000.0,
            lm_calls=calls,
            cost_usd=cost,
            cached=acc.all_cached(),
            stale=report.stale > 0 or strategy == "stale_cache",
            correlation_id=current_correlation_id(),
            failures=_described(failures) if failures else (),
        )


def _failed(
    ctx: ExecutionContext,
    record: ModuleRecord,
    base: tuple[str, str, int],
    seconds: float,
    acc: UsageAccumulator,
    exc: BaseException,
) -> None:
    """Record a failed (or cancelled) execution: its figures and its
    `module_execution_complete`."""
    if isinstance(exc, asyncio.CancelledError):
        code = CANCELLED
    else:
        code = exc.code if isinstance(exc, LmvisorError) else type(exc).__name__
    record.figures.record(seconds, code)
    error = {"type": type(exc).__name__, "code": code}
    ms, calls, cost = round(seconds * 1000.0, 3), acc.calls, acc.total_cost()
    ctx.events.record_values(_COMPLETE, _FAILED_KEYS, *base, ms, calls, cost, False, None, error)


def _described(failures: list[tuple[str, BaseException]]) -> tuple[tuple[str, str], ...]:
    return tuple((name, f"{type(err).__name__}: {err}") for name, err in failures)


async def _strategies(
    ctx: ExecutionContext,
    record: ModuleRecord,
    version: ModuleVersion,
    inputs: Mapping[str, Any],
    stream: StreamSink | None,
    prepared: bool,
) -> tuple[Any, str, list[tuple[str, BaseException]]]:
    try:  # the primary strategy, in this frame: it is nearly every execution's only one
        breaker = record.breaker
        trial = breaker.before_call()
        try:
            if record.limiter is not None:
                await _admit(record.limiter)
            if prepared:
                result = await _call(version.program, inputs, stream)
            else:
                result = await _in_context(ctx, record, version.program, inputs, stream)
        except BaseException as exc:
            breaker.on_failure(exc, trial)
            raise
        breaker.on_success(trial)
        return result, PRIMARY, []
    except Exception as exc:
        fallbacks = record.options.strategies()
        if not fallbacks or not _may_fall_back(exc):
            raise
        return await _fall_back(fallbacks, exc, ctx, record, version, inputs)


async def _fall_back(
    fallbacks: Sequence[str],
    error: Exception,
    ctx: ExecutionContext,
    record: ModuleRecord,
    version: ModuleVersion,
    inputs: Mapping[str, Any],
) -> tuple[Any, str, list[tuple[str, BaseException]]]:
    """Try each fallback in turn after the primary strategy failed with `error`."""
    failures: list[tuple[str, BaseException]] = [(PRIMARY, error)]
    for name in fallbacks:
        try:
            result = await _fallback(name, ctx, record, version, inputs)
        except Exception as exc:
            failures.append((name, exc))
            continue
        ctx.events.emit(
            FALLBACK_STRATEGY_SUCCESS,
            {
                "module_id": record.module_id,
                "strategy": name,
                "error": type(failures[0][1]).__name__,
            },
        )
        return result, name, failures
    raise AllStrategiesFailed(module_id=record.module_id, causes=failures) from failures[0][1]


async def _in_context(
    ctx: ExecutionContext,
    record: ModuleRecord,
    program: Module,
    inputs: Mapping[str, Any],
    stream: StreamSink | None,
) -> Any:
    """Run `program` with the app's LM for it and its cache policy."""
    with context(lm=ctx.lm_for(record.lm)), cache_policy(allow_stale=record.options.allow_stale):
        return await _call(program, inputs, stream)


def _call(program: Module, inputs: Mapping[str, Any], stream: StreamSink | None) -> Awaitable[Any]:
    return program(**inputs) if stream is None else stream_program(program, inputs, stream)


def prepare_context(lm: LM, *, allow_stale: bool) -> None:
    """Give the current context what a program's executions run with: `lm` and the cache
    policy (`allow_stale`). For a context made for tasks (`task_context`), whose executions
    then set neither per call; it keeps its own bounded call history.
    """
    configure(lm=lm)
    cache_policy(allow_stale=allow_stale).__enter__()  # left on: the context is the block


async def _admit(limiter: RateLimiter) -> None:
    """Take a slot, waiting only as long as the deadline allows."""
    wait = limiter.reserve()
    if wait == 0.0:
        return
    left = time_left()
    if left is not None and wait > left:
        limiter.try_acquire()  # refuses (RateLimited, reported to listeners): no time to wait
        return
    async with asyncio.timeout(left):
        await limiter.acquire()


def _fallback(
    name: str,
    ctx: ExecutionContext,
    record: ModuleRecord,
    version: ModuleVersion,
    inputs: Mapping[str, Any],
) -> Awaitable[Any]:
    options = record.options
    if name == "stale_cache":
        return _run(version.program, inputs, ctx.lm_for(record.lm), cache_only=True)
    if name == "fallback_module":
        assert options.fallback is not None
        return _run(options.fallback, inputs, ctx.lm_for(record.lm))
    if name == "fallback_lm":
        assert options.fallback_lm is not None
        return _run(version.program, inputs, ctx.lm_for(options.fallback_lm))
    return _default(options.default or {})


async def _run(
    program: Module, inputs: Mapping[str, Any], lm: LM, *, cache_only: bool = False
) -> Any:
    with context(lm=lm), cache_policy(allow_stale=cache_only, cache_only=cache_only):
        return await program(**inputs)


async def _default(values: Mapping[str, Any]) -> Prediction:
    return Prediction(dict(values))


def _may_fall_back(exc: BaseException) -> bool:
    """False for the caller's own mistakes (a missing input, a bad value): fallbacks repeat them."""
    if isinstance(exc, LmvisorError):
        return not isinstance(exc, ValueError)
    return not isinstance(exc, ValueError | TypeError)
