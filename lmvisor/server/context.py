"""What the HTTP app serves: the application tree, its runtime, the settings, readiness, drain.

One `ServerContext` lives for the daemon's life (or an embedded run's). The
`--app pkg.module:register` hook receives it at start-up to register what it
needs (programs through `context.app`, readiness checks, extra routers); routes
reach it through the `server_context` dependency. `app` is the application
facade (`lmvisor.services.App`): the program and optimization routes are served
only when the context has one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, final

from fastapi import APIRouter, Request

from lmvisor.config.schema import LmvisorConfig, ServerConfig
from lmvisor.runtime.runtime import Runtime
from lmvisor.server.errors import NoApplication
from lmvisor.server.http_metrics import HttpMetrics
from lmvisor.server.readiness import ReadinessCheck, tree_started

if TYPE_CHECKING:
    from lmvisor.services.app import App

__all__ = ["ServerContext", "server_context"]


@final
class ServerContext:
    """The daemon's served state (see the module docstring).

    Args:
        runtime: the runtime whose tree, events and metrics the API serves.
        config: the daemon's configuration (`runtime.config` when omitted).
        app: the application tree running in `runtime` (None: only the runtime is served).

    The built-in readiness check `tree` (every supervised actor running) is
    always present.
    """

    __slots__ = (
        "_app",
        "_checks",
        "_http_metrics",
        "_metrics",
        "_ready_callbacks",
        "_routers",
        "config",
        "draining",
        "runtime",
        "started_at",
    )

    def __init__(
        self, runtime: Runtime, *, config: LmvisorConfig | None = None, app: App | None = None
    ) -> None:
        self.runtime = runtime
        self.config = config if config is not None else runtime.config
        self._app = app
        self.started_at = time.time()
        self.draining = asyncio.Event()
        self._checks: dict[str, ReadinessCheck] = {"tree": tree_started(runtime)}
        self._routers: list[APIRouter] = []
        self._ready_callbacks: list[Callable[[str], None]] = []
        self._metrics: set[str] = set()
        self._http_metrics: HttpMetrics | None = None
        for path in self.config.server.metrics:
            self.allow_metric(path)

    @property
    def app(self) -> App:
        """The application tree (programs, optimization jobs, cache).

        Raises:
            NoApplication: this context serves a bare runtime.
        """
        if self._app is None:
            raise NoApplication()
        return self._app

    @property
    def has_app(self) -> bool:
        """Whether an application tree is served (and with it the program routes)."""
        return self._app is not None

    @property
    def server(self) -> ServerConfig:
        """The `server` part of the configuration."""
        return self.config.server

    @property
    def http_metrics(self) -> HttpMetrics:
        """The daemon's HTTP metrics in the runtime's registry, made on first use: the
        request plumbing and the HTTP protocol count into the same one."""
        if self._http_metrics is None:
            self._http_metrics = HttpMetrics(self.runtime.metrics)
        return self._http_metrics

    @property
    def readiness_checks(self) -> list[tuple[str, ReadinessCheck]]:
        """Every readiness check, by name, in the order added."""
        return list(self._checks.items())

    @property
    def routers(self) -> list[APIRouter]:
        """Routers added by `add_router`, mounted after the built-in routes."""
        return list(self._routers)

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        """Make `/readyz` also depend on `check`.

        Raises:
            ValueError: `name` is already taken.
        """
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} already exists")
        self._checks[name] = check

    def allow_metric(self, path: str) -> None:
        """Let optimization jobs submitted over HTTP name the metric at `path`.

        `path` is "pkg.module:function" (or "pkg.module.function"), or "pkg.module:*"
        for every function of the module. Configured ones: `server.metrics`.

        Raises:
            ValueError: `path` names no module or no function.
        """
        module, sep, name = path.partition(":") if ":" in path else path.rpartition(".")
        if not module or not name or (not sep and name == "*"):
            raise ValueError(f"metric {path!r} must be 'pkg.module:function' or 'pkg.module:*'")
        self._metrics.add(f"{module}:{name}")

    def metric_allowed(self, path: str) -> bool:
        """Whether an HTTP-submitted job may name the metric at `path` (see `allow_metric`)."""
        module, _, name = path.partition(":") if ":" in path else path.rpartition(".")
        return f"{module}:{name}" in self._metrics or f"{module}:*" in self._metrics

    @property
    def ready_callbacks(self) -> list[Callable[[str], None]]:
        """Callbacks added by `on_ready`, in the order added."""
        return list(self._ready_callbacks)

    def on_ready(self, callback: Callable[[str], None]) -> None:
        """Call `callback(url)` once the daemon listens (a banner, a registration elsewhere).

        A callback that raises is logged; the daemon serves on.
        """
        self._ready_callbacks.append(callback)

    def add_router(self, router: APIRouter) -> None:
        """Serve `router`'s routes too (it gets the same middleware, auth and error bodies)."""
        self._routers.append(router)

    def __repr__(self) -> str:
        state = "draining" if self.draining.is_set() else "serving"
        return f"<ServerContext {self.runtime.namespace!r} {state}>"


async def server_context(request: Request) -> ServerContext:
    """FastAPI dependency: the `ServerContext` of the app serving `request`.

    A coroutine on purpose: FastAPI runs a plain function dependency on a worker
    thread, a thread hop on every request.
    """
    context = request.app.state.lmvisor
    assert isinstance(context, ServerContext)
    return context
