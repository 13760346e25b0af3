"""The `lmvisor` command: run the daemon, look inside it, check a configuration.

    lmvisor serve [--config PATH] [--host H] [--port P] [--app pkg.module:register]
    lmvisor tree [--json]
    lmvisor events [--correlation-id ID] [--type T]... [--since EPOCH] [--limit N] [--follow]
    lmvisor config check [PATH]
    lmvisor version

`tree`, `events`, `config check` and `version` talk to a running daemon when
`--url` (or LMVISOR_URL) is given, sending `--token` (or LMVISOR_TOKEN) as the
bearer token; otherwise they start the same runtime embedded, from the same
configuration (`--config`, else ./lmvisor.toml, then LMVISOR_* variables), and
answer from it.

Exit codes: 0 ok, 1 runtime failure (the daemon's root gave up, a daemon could
not be reached, a port is busy), 2 usage or configuration error. An error is
one line on stderr; `--debug` adds the traceback.
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
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from lmvisor.config.errors import ConfigError
from lmvisor.config.loading import load_config
from lmvisor.config.schema import LmvisorConfig
from lmvisor.server.about import version_info
from lmvisor.server.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    DaemonRefused,
    StartupError,
)

if TYPE_CHECKING:
    from lmvisor.server.client import DaemonClient

__all__ = [
    "app",
    "config_app",
    "config_check",
    "events",
    "exit_code_for",
    "main",
    "one_line",
    "serve",
    "tree",
    "version",
]

T = TypeVar("T")

app = typer.Typer(
    name="lmvisor",
    help="DSPy's programming model on an OTP-style runtime: the daemon and its tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Validate and show configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

_Url = Annotated[
    str | None,
    typer.Option("--url", envvar="LMVISOR_URL", help="A running daemon's URL (else embedded)."),
]
_Token = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="LMVISOR_TOKEN", help="Bearer token for the daemon.", show_default=False
    ),
]
_ConfigPath = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="A TOML file (default: ./lmvisor.toml if present)."),
]
_Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a rendering.")]


@dataclass(frozen=True, slots=True)
class _Options:
    debug: bool


def one_line(exc: BaseException) -> str:
    """`exc` as one readable line: a config error lists each bad field, others their message."""
    if isinstance(exc, ConfigError):
        text = "invalid configuration: " + "; ".join(str(problem) for problem in exc.problems)
    elif isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        text = f"{exc.strerror}{where}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def exit_code_for(exc: BaseException) -> int:
    """2 for usage and configuration errors (a daemon's 4xx included), else 1."""
    if isinstance(exc, ConfigError | StartupError):
        return EXIT_USAGE
    if isinstance(exc, DaemonRefused) and 400 <= exc.status < 500:
        return EXIT_USAGE
    return EXIT_FAILURE


@contextmanager
def _reporting(ctx: typer.Context) -> Iterator[None]:
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_OK) from None
    except Exception as exc:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        options = ctx.find_object(_Options)
        if options is not None and options.debug:
            err.print(escape(traceback.format_exc()), end="")
        err.print(f"[red]error:[/red] {escape(one_line(exc))}")
        raise typer.Exit(exit_code_for(exc)) from None


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    ctx.obj = _Options(debug=debug)


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _client(url: str, token: str | None) -> DaemonClient:
    from lmvisor.server.client import DaemonClient

    return DaemonClient(url, token=token)


def _remote(url: str, token: str | None, use: Callable[[DaemonClient], T]) -> T:
    with _client(url, token) as client:
        return use(client)


# --- serve ----------------------------------------------------------------------


@app.command()
def serve(
    ctx: typer.Context,
    config: _ConfigPath = None,
    host: Annotated[str | None, typer.Option("--host", help="Listen address.")] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=0, max=65535, help="Listen port (0: any free).")
    ] = None,
    app_spec: Annotated[
        str | None,
        typer.Option(
            "--app", metavar="PKG.MODULE:FUNCTION", help="Hook that registers programs at start."
        ),
    ] = None,
) -> None:
    """Run the daemon until SIGTERM/SIGINT (it drains in-flight requests first)."""
    with _reporting(ctx):
        overrides = {key: value for key, value in (("host", host), ("port", port)) if value}
        if port == 0:
            overrides["port"] = 0
        settings = load_config(config, server=overrides) if overrides else load_config(config)
        from lmvisor.server.daemon import serve as run_daemon
        from lmvisor.server.host import load_register

        register = None
        if app_spec is not None:
            # Like uvicorn's --app-dir: the hook's package is found from the working directory.
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            register = load_register(app_spec)
        code = run_daemon(settings, register=register, register_name=app_spec or "<hook>")
    raise typer.Exit(code)


# --- tree -------------------------------------------------------------------------


@app.command()
def tree(
    ctx: typer.Context,
    url: _Url = None,
    token: _Token = None,
    config: _ConfigPath = None,
    as_json: _Json = False,
) -> None:
    """Show the live supervision tree: status, restarts, mailbox depth, last crash."""
    from lmvisor.server.render import supervision_tree

    with _reporting(ctx):
        if url:
            view = _remote(url, token, lambda client: client.tree())
        else:
            from lmvisor.server.embedded import embedded_tree

            view = embedded_tree(config)
        if as_json:
            _print_json(view)
        else:
            _out().print(supervision_tree(view))


# --- events -----------------------------------------------------------------------


@app.command()
def events(
    ctx: typer.Context,
    correlation_id: Annotated[
        str | None, typer.Option("--correlation-id", help="Only this correlation id's events.")
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option("--type", "-t", help="Event type or `prefix.*` (repeatable)."),
    ] = None,
    since: Annotated[
        float | None, typer.Option("--since", help="Only events at or after this epoch time.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most N.")] = 100,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new ones.")] = False,
    url: _Url = None,
    token: _Token = None,
    config: _ConfigPath = None,
    as_json: _Json = False,
) -> None:
    """Show recorded events, oldest first; `--follow` streams new ones until Ctrl-C."""
    filters: dict[str, Any] = {
        "correlation_id": correlation_id,
        "type": list(types or ()),
        "since": since,
        "limit": limit,
    }
    with _reporting(ctx):
        if follow:
            _follow(url, token, config, filters, as_json)
            return
        if url:
            found = _remote(url, token, lambda client: client.events(**filters))
        else:
            from lmvisor.server.embedded import embedded_events

            found = embedded_events(config, filters)
        _show_events(found, as_json)


def _show_events(found: list[dict[str, Any]], as_json: bool) -> None:
    from lmvisor.server.render import events_table

    if as_json:
        _print_json(found)
    elif not found:
        Console(stderr=True).print("no matching events")
    else:
        _out().print(events_table(found))


def _follow(
    url: str | None,
    token: str | None,
    path: Path | None,
    filters: dict[str, Any],
    as_json: bool,
) -> None:
    from lmvisor.server.render import event_line

    out = _out()

    def show(item: dict[str, Any]) -> None:
        if as_json:
            typer.echo(json.dumps(item, ensure_ascii=False))
        elif item["event"] == "lagged":
            out.print(f"[yellow]... {item['data'].get('dropped')} event(s) dropped[/yellow]")
        else:
            out.print(event_line(item["data"]))

    if url:
        with _client(url, token) as client:
            for item in client.follow_events(**filters):
                show(item)
        return
    Console(stderr=True).print(
        "[dim]no --url (or LMVISOR_URL): following an embedded runtime; pass --url to follow"
        " a daemon[/dim]"
    )
    from lmvisor.server.embedded import follow_embedded

    follow_embedded(path, filters, show)


# --- config check -----------------------------------------------------------------


@config_app.command("check")
def config_check(
    ctx: typer.Context,
    path: Annotated[
        Path | None, typer.Argument(help="A TOML file (default: ./lmvisor.toml if present).")
    ] = None,
    url: _Url = None,
    token: _Token = None,
    as_json: _Json = False,
) -> None:
    """Validate a configuration and print it in full, secrets masked (`**********`)."""
    if url and path is not None:
        raise typer.BadParameter("give a PATH or --url, not both", param_hint="PATH")
    with _reporting(ctx):
        if url:
            data = _remote(url, token, lambda client: client.config())
        else:
            data = _checked(load_config(path))
        if as_json:
            _print_json(data)
            return
        _out().print_json(data=data)
        source = url or (str(path) if path is not None else "defaults, ./lmvisor.toml, env")
        Console(stderr=True).print(f"[green]configuration OK[/green] ({escape(source)})")


def _checked(config: LmvisorConfig) -> dict[str, Any]:
    from lmvisor.server.auth import check_bind

    check_bind(config.server)
    dumped: dict[str, Any] = config.model_dump(mode="json")
    return dumped


# --- version ----------------------------------------------------------------------


@app.command()
def version(
    ctx: typer.Context, url: _Url = None, token: _Token = None, as_json: _Json = False
) -> None:
    """Print lmvisor's version (and a daemon's, with --url)."""
    with _reporting(ctx):
        info = version_info()
        data: dict[str, Any] = {"lmvisor": info.lmvisor, "python": info.python}
        if url:
            health = _remote(url, token, lambda client: client.health())
            data["daemon"] = {"url": url, "version": health["version"]}
        if as_json:
            _print_json(data)
            return
        typer.echo(f"lmvisor {info.lmvisor} (Python {info.python})")
        if url:
            typer.echo(f"daemon at {url}: lmvisor {data['daemon']['version']}")


def main() -> None:
    """The `lmvisor` console script."""
    app(prog_name="lmvisor")
