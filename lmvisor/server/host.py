"""What the daemon serves, opened and closed as one: the application tree and the `--app` hook.

`open_context(config, register=...)` starts the application tree
(`lmvisor.services.open_app`: the runtime, cache, LM providers, module manager,
optimization coordinator), builds the `ServerContext` with the readiness check
`providers`, runs the hook, yields the context, and on exit shuts the tree down
in reverse start order. The daemon and the CLI's embedded mode both go through
here, so they serve the same thing from the same configuration.

`loopback_lm` is the application's explicit opt-in to lmvisor's own loopback LM
server ("never" by default: a daemon never falls back silently; "if_no_key"
for demos such as `make run`; "always" for tests).

A hook is named `pkg.module:function` (`load_register`) and called once with
the context; it may be async. It registers what the daemon should serve:
programs (`await context.app.register(...)`), readiness checks, extra routers,
and a callback for when the daemon listens (`context.on_ready`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeAlias

from lmvisor.config.schema import LmvisorConfig
from lmvisor.server.context import ServerContext
from lmvisor.server.errors import AppHookFailed, AppLoadError
from lmvisor.server.readiness import providers_ready
from lmvisor.services.app import open_app
from lmvisor.services.app_lm import LoopbackMode

__all__ = ["DAEMON_NAMESPACE", "RegisterHook", "load_register", "open_context"]

DAEMON_NAMESPACE: Final = "lmvisor"
"""The runtime namespace of the daemon and of the CLI's embedded runs: with a durable
event store (`events.sqlite_path`), `lmvisor events` run embedded reads what the daemon
recorded, since stored events are queried by namespace."""

RegisterHook: TypeAlias = Callable[[ServerContext], Awaitable[None] | None]
"""The `--app` hook: called once with the daemon's context at start-up."""


def load_register(spec: str) -> RegisterHook:
    """Import the hook named `pkg.module:function` (attributes may be dotted).

    Raises:
        AppLoadError: the spec is malformed, the import fails, the attribute is
            missing, or it is not callable.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise AppLoadError(spec=spec, problem="expected 'pkg.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        problem = f"import failed: {type(exc).__name__}: {exc}"
        raise AppLoadError(spec=spec, problem=problem) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(spec=spec, problem=f"no attribute {part!r}") from None
    if not callable(target):
        raise AppLoadError(spec=spec, problem="not callable")
    hook: RegisterHook = target
    return hook


@asynccontextmanager
async def open_context(
    config: LmvisorConfig,
    *,
    register: RegisterHook | None = None,
    register_name: str = "<hook>",
    namespace: str = DAEMON_NAMESPACE,
    loopback_lm: LoopbackMode = "never",
) -> AsyncIterator[ServerContext]:
    """Start what the daemon serves and yield its context; stop it all on exit.

    Raises:
        ValueError: `loopback_lm` is not "never", "if_no_key" or "always".
        StartError: a service failed to start (nothing is left running).
        AppHookFailed: `register` raised (cause chained); the tree is shut down.
    """
    async with open_app(config, namespace=namespace, loopback_lm=loopback_lm) as app:
        context = ServerContext(app.runtime, config=app.runtime.config, app=app)
        context.add_readiness_check("providers", providers_ready(app))
        if register is not None:
            await _run_hook(register, context, register_name)
        yield context


async def _run_hook(register: RegisterHook, context: ServerContext, name: str) -> None:
    try:
        result = register(context)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        raise AppHookFailed(spec=name, reason=exc) from exc
