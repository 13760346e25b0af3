"""`Module`: the base of every program — one async call path, parameters, state, save/load.

A module is called with `await module(**inputs)`; its `forward` does the work. Calls
run callbacks (module start/end) and sum the usage of every LM call made inside into the
returned `Prediction`. `run_sync` is a facade for scripts and notebooks.

State is JSON only: `save(path)` writes each predictor's demos, instructions and field
descriptions (DSPy's format, so DSPy-saved programs load too); pickle is refused.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import Any, TypeVar, cast

from lmvisor._files import MAX_PROGRAM_BYTES, read_regular_file
from lmvisor.programs._usage import close_accumulator, open_accumulator
from lmvisor.programs.callbacks import Callback, new_call_id, notify
from lmvisor.programs.dspy_compat import MAX_STATE_DEPTH, check_state_depth
from lmvisor.programs.errors import StateError
from lmvisor.programs.example import Example, Prediction
from lmvisor.programs.settings import active_callbacks

__all__ = ["Module", "Parameter", "run_bounded"]

_M = TypeVar("_M", bound="Module")
_PICKLE_SUFFIXES = frozenset({".pkl", ".pickle"})


class Parameter:
    """Marks an object whose state is learned (demos, instructions): a predictor."""

    def reset(self) -> None:
        """Forget what was learned."""

    def dump_state(self) -> dict[str, Any]:
        """The learned state as JSON-ready data."""
        return {}

    def load_state(
        self, state: Mapping[str, Any], *, where: str = "self", lm_settings: bool = False
    ) -> Any:
        """Restore state written by `dump_state` (or by DSPy); returns the parameter.

        `where` names the parameter in error messages.
        """
        return self

    def prepare_state(
        self, state: Mapping[str, Any], *, where: str = "self", lm_settings: bool = False
    ) -> Callable[[], None]:
        """Check `state` and return the change applying it, so a program loads all or nothing.

        The default defers to `load_state`; a parameter whose loading can fail half-way
        overrides this.
        """
        return lambda: self.load_state(state, where=where, lm_settings=lm_settings)


class Module:
    """Base class of programs: subclass it and implement `async def forward(self, **inputs)`.

    Args:
        callbacks: hooks for this module's calls, after the settings' callbacks.
    """

    callbacks: tuple[Callback, ...] = ()

    def __init__(self, *, callbacks: Sequence[Callback] = ()) -> None:
        self.callbacks = tuple(callbacks)

    async def forward(self, **inputs: Any) -> Any:
        """Run the program; subclasses must override this."""
        raise TypeError(f"{type(self).__name__} must implement async def forward(...)")

    async def __call__(self, **inputs: Any) -> Any:
        """Run `forward` with callbacks and usage accounting.

        Cancellation propagates: the LM call in flight is cancelled with the task.
        """
        acc = open_accumulator()
        hooks = active_callbacks(self.callbacks)
        try:
            if not hooks:
                result = await self.forward(**inputs)
            else:
                result = await self._forward_hooked(hooks, inputs)
        finally:
            close_accumulator(acc)
        if isinstance(result, Prediction):
            result.set_usage(acc.usage, acc.total_cost(), cached=acc.all_cached())
        return result

    async def _forward_hooked(self, hooks: Sequence[Callback], inputs: dict[str, Any]) -> Any:
        call_id = new_call_id()
        notify(hooks, "on_module_start", call_id, self, inputs)
        try:
            result = await self.forward(**inputs)
        except BaseException as exc:
            notify(hooks, "on_module_end", call_id, None, exc)
            raise
        notify(hooks, "on_module_end", call_id, result, None)
        return result

    acall = __call__

    def stream(self, **inputs: Any) -> AsyncIterator[Any]:
        """Run the module, yielding each output field's text as it arrives, then the result.

        Every output field of every predictor is listened to (`StreamResponse` chunks,
        named by predictor); `StatusMessage`s mark tool calls. Close the iterator
        (`contextlib.aclosing`) to stop early: the program and its LM stream are cancelled.
        """
        from lmvisor.programs.streaming import listeners_for, streamify

        return streamify(self, stream_listeners=listeners_for(self))(**inputs)

    def run_sync(self, **inputs: Any) -> Any:
        """Run the module to completion from synchronous code (a new event loop).

        Raises:
            RuntimeError: called from inside a running event loop; `await module(...)` there.
        """
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self(**inputs))
        raise RuntimeError("run_sync() cannot run inside an event loop; await the module instead")

    async def batch(
        self,
        examples: Iterable[Example | Mapping[str, Any]],
        *,
        concurrency: int = 8,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Run the module on each example, at most `concurrency` at once, results in order.

        An `Example` with input keys contributes only its inputs.

        Raises:
            ValueError: concurrency < 1.
            Exception: the first failure, unless `return_exceptions` puts failures in place.
        """
        return await run_bounded(
            [_bind(self, ex) for ex in examples],
            concurrency=concurrency,
            return_exceptions=return_exceptions,
        )

    # --- parameters -----------------------------------------------------------------

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """Every parameter reachable from this module, with its dotted name."""
        seen: set[int] = set()
        found: list[tuple[str, Parameter]] = []
        me = cast(object, self)
        if isinstance(me, Parameter):
            seen.add(id(me))
            found.append(("self", me))
        for name, value in _walk(self, "", seen):
            found.append((name, value))
        return found

    def named_predictors(self) -> list[tuple[str, Any]]:
        """The predictors (Predict instances) with their dotted names."""
        return self.named_parameters()

    def predictors(self) -> list[Any]:
        """The predictors, without names."""
        return [p for _, p in self.named_predictors()]

    def named_sub_modules(self) -> list[tuple[str, Module]]:
        """This module and every module reachable from it."""
        found: list[tuple[str, Module]] = [("self", self)]
        for name, value in _walk_modules(self, "", {id(self)}):
            found.append((name, value))
        return found

    def deepcopy(self: _M) -> _M:
        """A deep copy; LMs, adapters and callbacks are shared, not copied."""
        return copy.deepcopy(self)

    def reset_copy(self: _M) -> _M:
        """A deep copy with every parameter reset (no demos, no per-predictor LM)."""
        new = self.deepcopy()
        for _, param in new.named_parameters():
            param.reset()
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = _copy_attr(key, value, memo)
        return new

    # --- state ------------------------------------------------------------------------

    def dump_state(self) -> dict[str, Any]:
        """Each parameter's state under its dotted name."""
        return {name: param.dump_state() for name, param in self.named_parameters()}

    def load_state(self: _M, state: Mapping[str, Any], *, lm_settings: bool = False) -> _M:
        """Restore each parameter from `state` (as written by `dump_state` or by DSPy).

        All or nothing: every parameter's entry is checked before any is changed.
        With `lm_settings`, each predictor's saved generation settings (temperature,
        max_tokens...) are restored too; API keys and base URLs never are.

        Raises:
            StateError: `state` is not a mapping, or a parameter's entry is missing or bad.
        """
        if not isinstance(state, Mapping):
            raise StateError(where="<root>", problem="state must be a JSON object")
        check_state_depth(state, "<root>")
        changes = []
        for name, param in self.named_parameters():
            entry = state.get(name)
            if entry is None:
                raise StateError(where=name, problem="no saved state for this predictor")
            if not isinstance(entry, Mapping):
                raise StateError(where=name, problem="predictor state must be a JSON object")
            changes.append(param.prepare_state(entry, where=name, lm_settings=lm_settings))
        for change in changes:
            change()
        return self

    def save(self, path: str | Path, *, save_program: bool = False) -> None:
        """Write the state as JSON to `path`.

        Raises:
            ValueError: `save_program=True` or a pickle suffix: only JSON state is written.
        """
        target = Path(path)
        if save_program or target.suffix in _PICKLE_SUFFIXES:
            raise ValueError(
                f"cannot save to {str(target)!r}: pickled programs are not supported; "
                "save the JSON state to a .json path"
            )
        state = self.dump_state()
        state["metadata"] = {
            "dependency_versions": {"python": f"{sys.version_info[0]}.{sys.version_info[1]}"},
            "format": "lmvisor.program_state/1",
        }
        target.write_text(json.dumps(state, indent=2, ensure_ascii=False), encoding="utf-8")

    def load(self: _M, path: str | Path, *, lm_settings: bool = False) -> _M:
        """Read JSON state from `path` (lmvisor's or DSPy 3.x's) into this module.

        All or nothing, as `load_state`; `lm_settings` restores saved generation settings.

        Raises:
            StateError: the file is missing, pickled, not JSON, nested too deeply, or does
                not fit the module.
        """
        target = Path(path)
        try:
            raw = read_regular_file(target, MAX_PROGRAM_BYTES)
        except OSError as exc:
            raise StateError(where=str(target), problem=f"cannot read file: {exc}") from None
        except ValueError as exc:  # a FIFO, a device, a directory, or too large
            raise StateError(where=str(target), problem=f"cannot read file: {exc}") from None
        if target.suffix in _PICKLE_SUFFIXES or raw[:1] == b"\x80":
            raise StateError(
                where=str(target), problem="pickled programs are refused; only JSON state loads"
            )
        try:
            state = json.loads(raw)
        except ValueError as exc:
            raise StateError(where=str(target), problem=f"not valid JSON: {exc}") from None
        except RecursionError:
            too_deep = f"nested deeper than {MAX_STATE_DEPTH} levels"
            raise StateError(where=str(target), problem=too_deep) from None
        return self.load_state(state, lm_settings=lm_settings)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={p!r}" for n, p in self.named_parameters() if n != "self")
        return f"{type(self).__name__}({inner})"


def _bind(module: Module, example: Example | Mapping[str, Any]) -> Callable[[], Awaitable[Any]]:
    if isinstance(example, Example):
        inputs = dict(
            example.inputs().items() if example.input_keys is not None else example.items()
        )
    elif isinstance(example, Mapping):
        inputs = dict(example)
    else:
        raise TypeError("each example must be an Example or a mapping of inputs")
    return lambda: module(**inputs)


async def run_bounded(
    jobs: Sequence[Callable[[], Awaitable[Any]]],
    *,
    concurrency: int,
    return_exceptions: bool = False,
) -> list[Any]:
    """Run the jobs, at most `concurrency` at a time; results in order.

    On a failure without `return_exceptions`, the other jobs are cancelled and it is raised.

    Raises:
        ValueError: concurrency < 1.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    import asyncio  # lazily: keeps `import lmvisor.programs` cheap

    gate = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            if not return_exceptions:
                return await job()
            try:
                return await job()
            except Exception as exc:
                return exc

    tasks = [asyncio.ensure_future(one(job)) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _children(value: Any, name: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield f"{name}[{i}]", item
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"{name}[{key!r}]", item
    else:
        yield name, value


def _walk(module: Module, prefix: str, seen: set[int]) -> Iterator[tuple[str, Parameter]]:
    # Private attributes count too, as in DSPy: `self._gen = Predict(...)` is saved and loaded.
    for attr, value in module.__dict__.items():
        if attr == "callbacks":
            continue
        for name, item in _children(value, prefix + attr):
            if id(item) in seen:
                continue
            if isinstance(item, Parameter):
                seen.add(id(item))
                yield name, item
            elif isinstance(item, Module):
                seen.add(id(item))
                yield from _walk(item, name + ".", seen)


def _walk_modules(module: Module, prefix: str, seen: set[int]) -> Iterator[tuple[str, Module]]:
    for attr, value in module.__dict__.items():
        for name, item in _children(value, prefix + attr):
            if isinstance(item, Module) and id(item) not in seen:
                seen.add(id(item))
                yield name, item
                yield from _walk_modules(item, name + ".", seen)


_SHARED_ATTRS = frozenset({"lm", "adapter", "callbacks"})


def _copy_attr(key: str, value: Any, memo: dict[int, Any]) -> Any:
    if key in _SHARED_ATTRS:
        return value
    try:
        return copy.deepcopy(value, memo)
    except Exception:
        try:
            return copy.copy(value)
        except Exception:
            return value
