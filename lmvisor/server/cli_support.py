"""What every `lmvisor` command shares: its options, error reporting, output, and the daemon client.

`reporting(ctx)` turns any failure into one line on stderr and the exit code
(`exit_code_for`: 2 for usage and configuration errors, a daemon's 4xx
included; 1 for runtime failures); `--debug` adds the traceback. Ctrl-C is
`interrupted` and 130; a reader that went away (`| head`) ends the command
quietly, as typer does (exit 1). The option
types (`UrlOption`, `TokenOption`, `ConfigOption`, `JsonOption`, `AppOption`,
`LoopbackOption`) keep flags and help texts the same across commands.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, final
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape

from lmvisor.config.errors import ConfigError
from lmvisor.runtime.errors import LmvisorError, StartError
from lmvisor.server.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    DaemonRefused,
    StartupError,
)

if TYPE_CHECKING:
    from lmvisor.server.client import DaemonClient
    from lmvisor.server.host import RegisterHook

__all__ = [
    "AppOption",
    "CliOptions",
    "ConfigOption",
    "JsonOption",
    "LoopbackOption",
    "TokenOption",
    "UrlOption",
    "client",
    "exit_code_for",
    "load_hook",
    "one_line",
    "out",
    "print_json",
    "remote",
    "reporting",
]

T = TypeVar("T")

UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar="LMVISOR_URL", help="A running daemon's URL (else embedded)."),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="LMVISOR_TOKEN", help="Bearer token for the daemon.", show_default=False
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="A TOML file (default: ./lmvisor.toml if present)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a rendering.")]
AppOption = Annotated[
    str | None,
    typer.Option(
        "--app", metavar="PKG.MODULE:FUNCTION", help="Hook that registers programs at start."
    ),
]
LoopbackOption = Annotated[
    Literal["never", "if_no_key", "always"],
    typer.Option(
        "--loopback-lm",
        envvar="LMVISOR_LOOPBACK_LM",
        help="When lmvisor's own loopback LM answers instead of vendors (if_no_key: only"
        " when no vendor key is set, and it says so).",
    ),
]


@final
@dataclass(frozen=True, slots=True)
class CliOptions:
    """The options of the `lmvisor` command itself (before the subcommand)."""

    debug: bool


def one_line(exc: BaseException) -> str:
    """`exc` as one readable line: a config error lists each bad field, others their message."""
    if isinstance(exc, typer.TyperException):  # typer.BadParameter, any usage error
        text = exc.format_message()
    elif isinstance(exc, ConfigError):
        text = "invalid configuration: " + "; ".join(str(problem) for problem in exc.problems)
    elif isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        text = f"{exc.strerror}{where}"
    elif isinstance(exc, StartError):
        text = _start_failure(exc)
    elif isinstance(exc, DaemonRefused) and exc.status == 401:
        text = f"{exc}: give the daemon's token with --token or LMVISOR_TOKEN"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _start_failure(exc: StartError) -> str:
    """A start failure by the path of children down to the one that failed and its own
    cause (the nested `StartError` reprs named the file at fault four quotes deep)."""
    path = [exc.child_id]
    reason = exc.reason
    while isinstance(reason, StartError):
        path.append(reason.child_id)
        reason = reason.reason
    cause = one_line(reason) if isinstance(reason, BaseException) else repr(reason)
    return f"cannot start {'/'.join(path)}: {cause}"


def exit_code_for(exc: BaseException) -> int:
    """2 for usage and configuration errors, else 1.

    Usage errors include a daemon's 4xx answer and, embedded, every error the
    daemon would have answered with a 4xx (a bad spec or input, an unknown id).
    """
    if isinstance(exc, ConfigError | StartupError | typer.BadParameter):
        return EXIT_USAGE
    if isinstance(exc, DaemonRefused):
        return EXIT_USAGE if 400 <= exc.status < 500 else EXIT_FAILURE
    if isinstance(exc, LmvisorError):
        from lmvisor.server.http_errors import status_for

        return EXIT_USAGE if 400 <= status_for(exc) < 500 else EXIT_FAILURE
    return EXIT_FAILURE


@contextmanager
def reporting(ctx: typer.Context) -> Iterator[None]:
    """Run a command's body: a failure is one line on stderr and its exit code (see above)."""
    try:
        yield
    except (typer.Exit, typer.Abort, BrokenPipeError):
        raise
    except KeyboardInterrupt:
        Console(stderr=True, highlight=False).print("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        options = ctx.find_object(CliOptions)
        if options is not None and options.debug:
            err.print(escape(traceback.format_exc()), end="")
        err.print(f"[red]error:[/red] {escape(one_line(exc))}")
        raise typer.Exit(exit_code_for(exc)) from None


def out() -> Console:
    """The console for a command's output (stdout, no highlighting, no wrapping)."""
    return Console(highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """`data` as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def client(url: str, token: str | None) -> DaemonClient:
    """A client for the daemon at `url`.

    Raises:
        typer.BadParameter: `url` is not an http(s) URL whose host and port read,
            `token` is not printable ASCII (what an HTTP header can carry), or both
            `url` holds credentials and `token` is given. No message quotes a value:
            each may hold a secret.
    """
    from lmvisor.server.client import DaemonClient

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it checks the port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise typer.BadParameter("must be an http:// or https:// URL", param_hint="--url")
    if token is not None and not (token.isascii() and token.isprintable()):
        raise typer.BadParameter("must be printable ASCII", param_hint="--token")
    if token and (parts.username or parts.password):
        # httpx sends the URL's user and password as Basic auth in place of the bearer
        # token: every call would be refused 401 with the token never sent.
        raise typer.BadParameter(
            "holds a user and password and --token (or LMVISOR_TOKEN) is given: both are the"
            " Authorization header; give one",
            param_hint="--url",
        )
    return DaemonClient(url, token=token)


def remote(url: str, token: str | None, use: Callable[[DaemonClient], T]) -> T:
    """Call `use` with a client for the daemon at `url`, then close it."""
    with client(url, token) as daemon:
        return use(daemon)


def load_hook(spec: str | None) -> RegisterHook | None:
    """The `--app` hook named `spec`, or None; the working directory joins `sys.path` either way.

    Like uvicorn's `--app-dir .`: the hook's package, and the metrics optimization
    jobs name, are found from the directory the command runs in.

    Raises:
        AppLoadError: the hook cannot be imported or is not callable.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if spec is None:
        return None
    from lmvisor.server.host import load_register

    return load_register(spec)
