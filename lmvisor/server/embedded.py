"""The CLI's embedded mode: the daemon's application tree, opened from the same configuration.

Without `--url` the CLI answers from a tree it starts itself through
`host.open_context` (the daemon's namespace, its `--app` hook and `--loopback-lm`
choice) and stops afterwards. `run` and `optimize` hold the data directory as a
daemon does (a daemon serving it makes them refuse, naming its URL); `tree`
starts in memory; `events` opens the runtime alone, so a durable event store
shows what a daemon recorded. Answers have the shapes the HTTP API serves (`lmvisor.server.views`,
`program_views`, `optimization_progress`), so the CLI renders both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lmvisor.config.loading import load_config, replace_value
from lmvisor.runtime.errors import LmvisorError
from lmvisor.runtime.runtime import Runtime
from lmvisor.server.context import ServerContext
from lmvisor.server.data_lock import DataDirLock
from lmvisor.server.host import DAEMON_NAMESPACE, RegisterHook, open_context
from lmvisor.server.optimization_progress import job_progress, job_view
from lmvisor.server.program_views import invalid_input, run_view
from lmvisor.server.views import event_view, tree_view
from lmvisor.services.app_lm import LoopbackMode
from lmvisor.services.errors import ModuleAlreadyRegistered

if TYPE_CHECKING:
    from lmvisor.server.cli_programs import ProgramRef

__all__ = [
    "embedded_events",
    "embedded_optimize",
    "embedded_run",
    "embedded_tree",
    "follow_embedded",
    "run_embedded",
]

T = TypeVar("T")

EventFilters = Mapping[str, Any]
"""`correlation_id`, `type` (a list), `since` and `limit`, as the CLI collects them."""


def run_embedded(
    path: Path | None,
    use: Callable[[ServerContext], Awaitable[T]],
    *,
    register: RegisterHook | None = None,
    loopback_lm: LoopbackMode = "never",
    keep_data: bool = True,
) -> T:
    """Open the tree configured by `path` (see `load_config`), run `use` on it, close it.

    The tree holds its data directory for the run (`data_lock`), as a daemon does;
    with `keep_data=False` it runs in memory instead and touches no file (a look at
    the tree's shape).

    Raises:
        ConfigError: the configuration is invalid.
        DataDirInUse: a daemon serves the data directory (use `--url`).
        StartError: the tree could not start.
        AppHookFailed: `register` raised.
    """
    config = load_config(path)
    if not keep_data:
        config = replace_value(config, "data_dir", None)

    async def run() -> T:
        with contextlib.ExitStack() as holds:
            if config.data_dir is not None:
                holds.enter_context(DataDirLock(config.data_dir))
            async with open_context(config, register=register, loopback_lm=loopback_lm) as ctx:
                _tell(ctx)
                return await use(ctx)

    return asyncio.run(run())


def _with_runtime(path: Path | None, use: Callable[[Runtime], Awaitable[T]]) -> T:
    """Open only the runtime configured by `path` (its event store), run `use`, close it."""
    config = load_config(path)

    async def run() -> T:
        async with Runtime.open(config, namespace=DAEMON_NAMESPACE) as runtime:
            return await use(runtime)

    return asyncio.run(run())


def _tell(context: ServerContext) -> None:
    notice = context.app.notice
    if notice:
        print(notice, file=sys.stderr)


def embedded_run(
    path: Path | None,
    ref: ProgramRef,
    inputs: Mapping[str, Any],
    *,
    timeout: float | None,
    register: RegisterHook | None = None,
    loopback_lm: LoopbackMode = "never",
) -> dict[str, Any]:
    """Run a program once in an embedded tree (registering `ref`'s spec first); `/run`'s answer.

    Raises:
        UnknownModule: `ref` is an id nothing registered (the `--app` hook registers programs).
        InvalidInput: the inputs do not fit the program.
        LmvisorError: the run failed.
    """

    async def use(context: ServerContext) -> dict[str, Any]:
        app = context.app
        if ref.spec is not None:
            with contextlib.suppress(ModuleAlreadyRegistered):
                await app.register(ref.id, ref.spec, options=ref.options)
        try:
            execution = await app.run(ref.id, inputs, timeout=timeout)
        except LmvisorError:
            raise
        except (ValueError, TypeError) as exc:
            raise invalid_input(exc) from exc
        return run_view(execution)

    return run_embedded(path, use, register=register, loopback_lm=loopback_lm)


def embedded_optimize(
    path: Path | None,
    spec: Mapping[str, Any],
    show: Callable[[dict[str, Any]], None],
    *,
    register: RegisterHook | None = None,
    loopback_lm: LoopbackMode = "never",
) -> dict[str, Any]:
    """Run an optimization job in an embedded tree, showing its progress; its final status.

    `show` gets `{"event", "data"}` items, as a daemon's progress stream yields
    them. Interrupted (Ctrl-C), the job is cancelled before the tree stops.

    Raises:
        OptimizationSpecError, MetricError: the job is malformed.
    """

    async def use(context: ServerContext) -> dict[str, Any]:
        app = context.app
        job_id = await app.submit_optimization(spec)
        try:
            last: dict[str, Any] = job_view(await app.optimization_status(job_id))
            async for message in job_progress(app, job_id):
                show({"event": message.event, "data": dict(message.data)})
                last = dict(message.data)
            return last
        except asyncio.CancelledError:
            await app.cancel_optimization(job_id)
            raise

    return run_embedded(path, use, register=register, loopback_lm=loopback_lm)


def embedded_tree(path: Path | None) -> dict[str, Any]:
    """The supervision tree a daemon with this configuration runs (started in memory)."""

    async def tree(context: ServerContext) -> dict[str, Any]:
        return tree_view(context.runtime.tree())

    return run_embedded(path, tree, keep_data=False)


async def _stored(runtime: Runtime, filters: EventFilters) -> list[dict[str, Any]]:
    found = await runtime.events.query(
        correlation_id=filters["correlation_id"],
        type=filters["type"] or None,
        since=filters["since"],
        limit=filters["limit"],
    )
    return [event_view(event) for event in found]


def embedded_events(path: Path | None, filters: EventFilters) -> list[dict[str, Any]]:
    """The stored events matching `filters` (from SQLite when `events.sqlite_path` is set)."""
    return _with_runtime(path, lambda runtime: _stored(runtime, filters))


def follow_embedded(
    path: Path | None, filters: EventFilters, show: Callable[[dict[str, Any]], None]
) -> None:
    """Show the matching stored events, then new ones as they happen, until interrupted.

    `show` gets `{"event": "event", "data": <event view>}` items, as a daemon's
    stream yields them. Ends only by KeyboardInterrupt (or cancellation).
    """
    _with_runtime(path, lambda runtime: _follow(runtime, filters, show))


async def _follow(
    runtime: Runtime, filters: EventFilters, show: Callable[[dict[str, Any]], None]
) -> None:
    live: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    # Subscribe before reading what is stored, so nothing falls between the two.
    remove = runtime.events.subscribe(
        lambda event: live.put_nowait(event_view(event)), filters["type"] or None
    )
    try:
        stored = await _stored(runtime, filters)
        seen = {view["id"] for view in stored}
        for view in stored:
            show({"event": "event", "data": view})
        while True:
            view = await live.get()
            wanted = filters["correlation_id"] in (None, view["correlation_id"])
            if wanted and view["id"] not in seen:
                show({"event": "event", "data": view})
    finally:
        remove()
