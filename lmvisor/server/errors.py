"""The server layer's errors: bad requests, refused callers, and a daemon that cannot start.

    LmvisorError
    └── DaemonError                    the daemon refused a request or could not start
        ├── RequestError               the HTTP request itself is wrong (a 4xx)
        │   ├── InvalidHeader          a header's value is malformed or out of range
        │   ├── Unauthorized           no bearer token, or not one the daemon knows
        │   ├── RequestTooLarge        the body is larger than `server.max_body_bytes`
        │   ├── HeaderTimeout          the head did not arrive within `server.header_timeout`
        │   ├── HeadersTooLarge        the head is larger than the protocol's limit
        │   ├── BodyTimeout            the body did not arrive within `server.body_timeout`
        │   ├── ClientDisconnected     the client went away before the answer (never sent)
        │   ├── InvalidInput           a program's inputs do not fit its signature
        │   ├── NotAllowed             the request names something the daemon may not use
        │   └── Draining               the daemon is shutting down; retry elsewhere
        ├── StartupError               `lmvisor serve` cannot start (a usage/config error)
        │   ├── InsecureBind           a non-loopback address without any token
        │   ├── AppLoadError           the `--app pkg.module:register` hook cannot be loaded
        │   └── DataDirInUse           another daemon (or CLI run) holds the data directory
        ├── AppHookFailed              the `--app` hook ran and raised (a runtime failure)
        ├── NoApplication              the context serves a bare runtime, without programs
        └── DaemonCallError            the CLI's call to a running daemon failed
            ├── DaemonUnreachable      no daemon answered at the URL
            ├── DaemonRefused          the daemon answered with an error body
            ├── DaemonSilent           a followed stream went silent past its heartbeats
            └── NotADaemon             what answered at the URL is not an lmvisor daemon

The process exit codes (`EXIT_OK`, `EXIT_FAILURE`, `EXIT_USAGE`,
`EXIT_INTERRUPTED`) live here too: `StartupError` and configuration errors are
usage errors (2), the rest runtime failures (1); a Ctrl-C before a command is
done is 130 (128 + SIGINT, as a shell reports it).

Every `RequestError` names the offending `field` (a header name, a dotted
body path) so the HTTP error body can carry it. `lmvisor.server.http_errors`
maps these and every other layer's errors to status codes, in one place.
"""

from __future__ import annotations

from typing import Final

from lmvisor._redaction import url_without_password
from lmvisor.runtime.errors import LmvisorError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "AppHookFailed",
    "AppLoadError",
    "BodyTimeout",
    "ClientDisconnected",
    "DaemonCallError",
    "DaemonError",
    "DaemonRefused",
    "DaemonSilent",
    "DaemonUnreachable",
    "DataDirInUse",
    "Draining",
    "HeaderTimeout",
    "HeadersTooLarge",
    "InsecureBind",
    "InvalidHeader",
    "InvalidInput",
    "NoApplication",
    "NotADaemon",
    "NotAllowed",
    "RequestError",
    "RequestTooLarge",
    "StartupError",
    "Unauthorized",
]

EXIT_OK: Final = 0
"""Done, or stopped by a signal after draining."""
EXIT_FAILURE: Final = 1
"""A runtime failure: the root supervisor gave up, a port is busy, a daemon is unreachable."""
EXIT_USAGE: Final = 2
"""A usage or configuration error: nothing was started."""
EXIT_INTERRUPTED: Final = 130
"""Ctrl-C (SIGINT) stopped a command before it was done (`serve` drains and exits 0)."""


class DaemonError(LmvisorError):
    """The daemon refused a request or could not start."""

    code = "server_error"


class RequestError(DaemonError):
    """The HTTP request is wrong; `field` names the part to fix (None: the request as a whole)."""

    code = "bad_request"
    field: str | None = None


class InvalidHeader(RequestError):
    """The caller sent a malformed header value; fix it and resend."""

    code = "invalid_header"

    def __init__(self, *, header: str, problem: str) -> None:
        super().__init__(f"header {header}: {problem}", context={"header": header})
        self.field = header


class Unauthorized(RequestError):
    """The caller sent no bearer token or an unknown one; send a configured token."""

    code = "unauthorized"
    field = "Authorization"

    def __init__(self, *, problem: str) -> None:
        super().__init__(problem)


class RequestTooLarge(RequestError):
    """The caller's body exceeds the daemon's limit; send less (or raise the limit)."""

    code = "request_too_large"
    field = "body"

    def __init__(self, *, limit: int) -> None:
        super().__init__(
            f"request body exceeds the limit of {limit} bytes", context={"limit": limit}
        )
        self.limit = limit


class HeaderTimeout(RequestError):
    """The caller started a request but did not finish its head in time; send it promptly."""

    code = "header_timeout"
    field = "headers"

    def __init__(self, *, seconds: float) -> None:
        super().__init__(
            f"request headers not received within {seconds:g} seconds",
            context={"seconds": seconds},
        )
        self.seconds = seconds


class HeadersTooLarge(RequestError):
    """The caller's request line and headers exceed the daemon's limit; send a smaller head."""

    code = "headers_too_large"
    field = "headers"

    def __init__(self, *, limit: int) -> None:
        super().__init__(
            f"request headers exceed the limit of {limit} bytes", context={"limit": limit}
        )
        self.limit = limit


class BodyTimeout(RequestError):
    """The caller sent its headers but not the whole body in time; send the body promptly."""

    code = "body_timeout"
    field = "body"

    def __init__(self, *, seconds: float) -> None:
        super().__init__(
            f"request body not received within {seconds:g} seconds", context={"seconds": seconds}
        )
        self.seconds = seconds


class ClientDisconnected(RequestError):
    """The client closed its connection before the answer; its run was cancelled.

    Nobody reads the answer: it exists for the access log and the HTTP metrics,
    which count it as 499 (nginx's "client closed request").
    """

    code = "client_disconnected"

    def __init__(self, *, operation: str) -> None:
        super().__init__(
            f"{operation}: the client disconnected before the answer; the work was cancelled",
            context={"operation": operation},
        )
        self.operation = operation


class InvalidInput(RequestError):
    """The caller's inputs do not fit the program (a missing or unusable field); fix and resend."""

    code = "invalid_input"

    def __init__(self, *, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", context={"field": field, "problem": problem})
        self.field = field
        self.problem = problem


class NotAllowed(RequestError):
    """The request names what the daemon will not use (a metric not allowed, a server file)."""

    code = "not_allowed"

    def __init__(self, *, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", context={"field": field, "problem": problem})
        self.field = field
        self.problem = problem


class Draining(RequestError):
    """The daemon is shutting down and takes no new work; retry against another instance."""

    code = "draining"
    retryable = True

    def __init__(self) -> None:
        super().__init__("the daemon is shutting down and accepts no new work")


class StartupError(DaemonError):
    """`lmvisor serve` cannot start as configured; fix the configuration or arguments."""

    code = "startup_error"


class InsecureBind(StartupError):
    """The operator asked for a non-loopback address without a token; configure one."""

    code = "insecure_bind"

    def __init__(self, *, host: str) -> None:
        super().__init__(
            f"refusing to listen on {host!r} without authentication: it is not a loopback"
            " address; set server.token (or LMVISOR_SERVER__TOKEN) or bind 127.0.0.1",
            context={"host": host},
        )
        self.host = host


class AppLoadError(StartupError):
    """The `--app` hook cannot be imported or is not callable; fix the `module:function` spec."""

    code = "app_load_error"

    def __init__(self, *, spec: str, problem: str) -> None:
        super().__init__(f"cannot load app hook {spec!r}: {problem}", context={"spec": spec})
        self.spec = spec


class DataDirInUse(StartupError):
    """Another process serves this data directory; talk to it (`--url`) or use another one."""

    code = "data_dir_in_use"

    def __init__(self, *, data_dir: str, pid: int | None, url: str | None) -> None:
        who = f"process {pid}" if pid is not None else "another process"
        hint = f"pass --url {url}" if url else "wait for it to finish"
        super().__init__(
            f"data directory {data_dir!r} is in use by {who}"
            + (f" serving {url}" if url else "")
            + f": {hint}, or set another data_dir (LMVISOR_DATA_DIR)",
            context={"data_dir": data_dir, "pid": pid, "url": url},
        )
        self.data_dir = data_dir
        self.url = url


class AppHookFailed(DaemonError):
    """The user's `--app` hook raised while registering; the cause is chained. Fix the hook."""

    code = "app_hook_failed"

    def __init__(self, *, spec: str, reason: BaseException) -> None:
        super().__init__(
            f"app hook {spec!r} failed: {type(reason).__name__}: {reason}",
            context={"spec": spec, "reason": repr(reason)},
        )
        self.spec = spec


class NoApplication(DaemonError):
    """Code asked a context without an application tree for one; open it with `open_context`."""

    code = "no_application"

    def __init__(self) -> None:
        super().__init__("this server context serves a bare runtime: it has no application tree")


class DaemonCallError(DaemonError):
    """The CLI's call to a running daemon failed."""

    code = "daemon_call_error"


class DaemonUnreachable(DaemonCallError):
    """No daemon answered at the URL; start one or fix `--url` / LMVISOR_URL."""

    code = "daemon_unreachable"
    retryable = True

    def __init__(self, *, url: str, problem: str) -> None:
        shown = url_without_password(url)
        super().__init__(f"no daemon answered at {shown}: {problem}", context={"url": shown})
        self.url = url


class DaemonRefused(DaemonCallError):
    """The daemon answered an error; `status`, `error_code` and `field` come from its body."""

    code = "daemon_refused"

    def __init__(
        self, *, status: int, error_code: str, message: str, field: str | None = None
    ) -> None:
        where = f" (field {field})" if field else ""
        super().__init__(
            f"daemon answered {status} {error_code}: {message}{where}",
            context={"status": status, "error_code": error_code, "field": field},
        )
        self.status = status
        self.error_code = error_code
        self.field = field


class DaemonSilent(DaemonCallError):
    """A followed event stream sent nothing, not even a heartbeat, for several of the
    daemon's heartbeat intervals: the daemon stalled or the connection is gone; follow again."""

    code = "daemon_silent"
    retryable = True

    def __init__(self, *, url: str, request: str, seconds: float) -> None:
        shown = url_without_password(url)
        super().__init__(
            f"the daemon at {shown} sent nothing on {request} for {seconds:g}s, not even a"
            " heartbeat: it stalled or the connection is gone",
            context={"url": shown, "request": request, "seconds": seconds},
        )
        self.url = url


class NotADaemon(DaemonCallError):
    """Something answered at the URL, but not as an lmvisor daemon; fix `--url` / LMVISOR_URL."""

    code = "not_a_daemon"

    def __init__(self, *, url: str, request: str, problem: str) -> None:
        shown = url_without_password(url)
        super().__init__(
            f"{shown} is not an lmvisor daemon: {request} answered {problem}",
            context={"url": shown, "request": request},
        )
        self.url = url
