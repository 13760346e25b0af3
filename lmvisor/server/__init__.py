"""lmvisor.server: the daemon's HTTP API (ASGI), its process, and the `lmvisor` CLI.

`create_app(context)` builds the FastAPI app over a `ServerContext`;
`serve(config)` runs the daemon process; `lmvisor.server.cli:main` is the
`lmvisor` command. Importing this package loads nothing heavy until a name
is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_exports

if TYPE_CHECKING:
    from lmvisor.server.app import create_app
    from lmvisor.server.context import ServerContext, server_context
    from lmvisor.server.daemon import Daemon, run_daemon, serve
    from lmvisor.server.errors import (
        EXIT_FAILURE,
        EXIT_OK,
        EXIT_USAGE,
        AppHookFailed,
        AppLoadError,
        DaemonError,
        Draining,
        InsecureBind,
        InvalidHeader,
        RequestError,
        RequestTooLarge,
        StartupError,
        Unauthorized,
    )
    from lmvisor.server.host import RegisterHook, load_register, open_context
    from lmvisor.server.http_errors import STATUS_BY_ERROR, ErrorBody, status_for
    from lmvisor.server.readiness import CheckResult, ReadinessCheck

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "STATUS_BY_ERROR",
    "AppHookFailed",
    "AppLoadError",
    "CheckResult",
    "Daemon",
    "DaemonError",
    "Draining",
    "ErrorBody",
    "InsecureBind",
    "InvalidHeader",
    "ReadinessCheck",
    "RegisterHook",
    "RequestError",
    "RequestTooLarge",
    "ServerContext",
    "StartupError",
    "Unauthorized",
    "create_app",
    "load_register",
    "open_context",
    "run_daemon",
    "serve",
    "server_context",
    "status_for",
]

_EXPORTS = {
    "EXIT_FAILURE": "lmvisor.server.errors",
    "EXIT_OK": "lmvisor.server.errors",
    "EXIT_USAGE": "lmvisor.server.errors",
    "STATUS_BY_ERROR": "lmvisor.server.http_errors",
    "AppHookFailed": "lmvisor.server.errors",
    "AppLoadError": "lmvisor.server.errors",
    "CheckResult": "lmvisor.server.readiness",
    "Daemon": "lmvisor.server.daemon",
    "Draining": "lmvisor.server.errors",
    "ErrorBody": "lmvisor.server.http_errors",
    "InsecureBind": "lmvisor.server.errors",
    "InvalidHeader": "lmvisor.server.errors",
    "ReadinessCheck": "lmvisor.server.readiness",
    "RegisterHook": "lmvisor.server.host",
    "RequestError": "lmvisor.server.errors",
    "RequestTooLarge": "lmvisor.server.errors",
    "ServerContext": "lmvisor.server.context",
    "DaemonError": "lmvisor.server.errors",
    "StartupError": "lmvisor.server.errors",
    "Unauthorized": "lmvisor.server.errors",
    "create_app": "lmvisor.server.app",
    "load_register": "lmvisor.server.host",
    "open_context": "lmvisor.server.host",
    "run_daemon": "lmvisor.server.daemon",
    "serve": "lmvisor.server.daemon",
    "server_context": "lmvisor.server.context",
    "status_for": "lmvisor.server.http_errors",
}

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
