"""What the HTTP app serves: the runtime, the settings, readiness checks, extra routes, drain.

One `ServerContext` lives for the daemon's life (or an embedded app's). The
`--app pkg.module:register` hook receives it at start-up to register what it
needs; routes reach it through the `server_context` dependency. The services
issue's application facade joins it here (an `app` attribute) so program and
optimization routes reach the ModuleManager and the coordinator the same way.
"""

from __future__ import annotations

import asyncio
import time
from typing import final

from fastapi import APIRouter, Request

from lmvisor.config.schema import LmvisorConfig, ServerConfig
from lmvisor.runtime.runtime import Runtime
from lmvisor.server.readiness import ReadinessCheck, tree_started

__all__ = ["ServerContext", "server_context"]


@final
class ServerContext:
    """The daemon's served state (see the module docstring).

    Args:
        runtime: the runtime whose tree, events and metrics the API serves.
        config: the daemon's configuration (`runtime.config` when omitted).

    The built-in readiness check `tree` (every supervised actor running) is
    always present.
    """

    __slots__ = ("_checks", "_routers", "config", "draining", "runtime", "started_at")

    def __init__(self, runtime: Runtime, *, config: LmvisorConfig | None = None) -> None:
        self.runtime = runtime
        self.config = config if config is not None else runtime.config
        self.started_at = time.time()
        self.draining = asyncio.Event()
        self._checks: dict[str, ReadinessCheck] = {"tree": tree_started(runtime)}
        self._routers: list[APIRouter] = []

    @property
    def server(self) -> ServerConfig:
        """The `server` part of the configuration."""
        return self.config.server

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

    def add_router(self, router: APIRouter) -> None:
        """Serve `router`'s routes too (it gets the same middleware, auth and error bodies)."""
        self._routers.append(router)

    def __repr__(self) -> str:
        state = "draining" if self.draining.is_set() else "serving"
        return f"<ServerContext {self.runtime.namespace!r} {state}>"


def server_context(request: Request) -> ServerContext:
    """FastAPI dependency: the `ServerContext` of the app serving `request`."""
    context = request.app.state.lmvisor
    assert isinstance(context, ServerContext)
    return context
