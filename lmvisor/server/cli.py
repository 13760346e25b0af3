"""The `lmvisor` command: run the daemon, run programs and optimizations, look inside, check.

    lmvisor serve [--config PATH] [--host H] [--port P] [--app pkg.module:register]
                  [--loopback-lm never|if_no_key|always]
    lmvisor run PROGRAM (an id, or a JSON spec file) [--input k=v | k:=JSON]... [--json]
    lmvisor optimize SPEC.toml|SPEC.json [--detach] [--json]
    lmvisor tree [--json]
    lmvisor events [--correlation-id ID] [--type T]... [--since EPOCH] [--limit N] [--follow]
    lmvisor config check [PATH]
    lmvisor config set PATH VALUE --url URL [--json-value | --string]
    lmvisor config get PATH [--url URL | --config FILE]
    lmvisor version

Every command but `serve` talks to a running daemon when `--url` (or
LMVISOR_URL) is given, sending `--token` (or LMVISOR_TOKEN) as the bearer
token; otherwise it starts the same application tree embedded, from the same
configuration (`--config`, else ./lmvisor.toml, then LMVISOR_* variables; `run`
and `optimize` also take the `--app` hook and `--loopback-lm`), and answers
from it.

Exit codes: 0 ok, 1 runtime failure (the daemon's root gave up, a daemon could
not be reached, a port is busy), 2 usage or configuration error, 130 Ctrl-C
before the command was done (`events --follow` ends by Ctrl-C: 0; `serve`
drains and exits 0). An error is one line on stderr; `--debug` adds the
traceback.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from lmvisor._redaction import url_without_password
from lmvisor.config.loading import load_config
from lmvisor.config.schema import LmvisorConfig
from lmvisor.server.about import version_info
from lmvisor.server.cli_config import config_get, config_set
from lmvisor.server.cli_programs import optimize, run
from lmvisor.server.cli_support import (
    AppOption,
    CliOptions,
    ConfigOption,
    JsonOption,
    LoopbackOption,
    TokenOption,
    UrlOption,
    client,
    exit_code_for,
    load_hook,
    one_line,
    out,
    print_json,
    remote,
    reporting,
)
from lmvisor.server.errors import EXIT_INTERRUPTED, EXIT_OK

__all__ = [
    "app",
    "config_app",
    "config_check",
    "config_get",
    "config_set",
    "events",
    "exit_code_for",
    "main",
    "one_line",
    "optimize",
    "run",
    "serve",
    "tree",
    "version",
]

app = typer.Typer(
    name="lmvisor",
    help="DSPy's programming model on an OTP-style runtime: the daemon and its tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(
    help="Validate and show configuration; read or change a running daemon's settings.",
    no_args_is_help=True,
)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    ctx.obj = CliOptions(debug=debug)


# --- serve ----------------------------------------------------------------------


@app.command()
def serve(
    ctx: typer.Context,
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option("--host", help="Listen address.")] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=0, max=65535, help="Listen port (0: any free).")
    ] = None,
    app_spec: AppOption = None,
    loopback_lm: LoopbackOption = "never",
) -> None:
    """Run the daemon until SIGTERM/SIGINT (it drains in-flight requests first)."""
    with reporting(ctx):
        overrides = {key: value for key, value in (("host", host), ("port", port)) if value}
        if port == 0:
            overrides["port"] = 0
        settings = load_config(config, server=overrides) if overrides else load_config(config)
        from lmvisor.server.daemon import serve as run_daemon

        code = run_daemon(
            settings,
            register=load_hook(app_spec),
            register_name=app_spec or "<hook>",
            loopback_lm=loopback_lm,
        )
    raise typer.Exit(code)


# --- tree -------------------------------------------------------------------------


@app.command()
def tree(
    ctx: typer.Context,
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the live supervision tree: status, restarts, mailbox depth, last crash."""
    from lmvisor.server.render import supervision_tree

    with reporting(ctx):
        if url:
            view = remote(url, token, lambda daemon: daemon.tree())
        else:
            from lmvisor.server.embedded import embedded_tree

            view = embedded_tree(config)
        if as_json:
            print_json(view)
        else:
            out().print(supervision_tree(view))


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
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show recorded events, oldest first; `--follow` streams new ones until Ctrl-C."""
    filters: dict[str, Any] = {
        "correlation_id": correlation_id,
        "type": list(types or ()),
        "since": since,
        "limit": limit,
    }
    with reporting(ctx):
        _check_filters(correlation_id, types or [], since)
        if follow:
            with contextlib.suppress(KeyboardInterrupt):  # the way a follow ends
                _follow(url, token, config, filters, as_json)
            return
        if url:
            found = remote(url, token, lambda daemon: daemon.events(**filters))
        else:
            from lmvisor.server.embedded import embedded_events

            found = embedded_events(config, filters)
        _show_events(found, as_json)


def _check_filters(correlation_id: str | None, types: list[str], since: float | None) -> None:
    """Raises `typer.BadParameter` naming the filter a daemon would refuse, and why."""
    # The daemon's own rules, imported here: `lmvisor --help` need not load them.
    from lmvisor.runtime.correlation import CORRELATION_ID_PATTERN
    from lmvisor.runtime.observe.events import EVENT_TYPE_FILTER_PATTERN, MAX_TYPE_FILTERS

    if correlation_id is not None and not re.fullmatch(CORRELATION_ID_PATTERN, correlation_id):
        raise typer.BadParameter(
            "must be 1 to 128 of A-Z, a-z, 0-9 and `._:-`", param_hint="--correlation-id"
        )
    kinds_ok = all(re.fullmatch(EVENT_TYPE_FILTER_PATTERN, kind) for kind in types)
    if len(types) > MAX_TYPE_FILTERS or not kinds_ok:
        raise typer.BadParameter(
            f"at most {MAX_TYPE_FILTERS}, each 1 to 200 of A-Z, a-z, 0-9 and `_.:-*`",
            param_hint="--type",
        )
    if since is not None and not math.isfinite(since):
        raise typer.BadParameter(f"must be a finite epoch time, got {since}", param_hint="--since")


def _show_events(found: list[dict[str, Any]], as_json: bool) -> None:
    from lmvisor.server.render import events_table

    if as_json:
        print_json(found)
    elif not found:
        Console(stderr=True).print("no matching events")
    else:
        out().print(events_table(found))


def _follow(
    url: str | None,
    token: str | None,
    path: Path | None,
    filters: dict[str, Any],
    as_json: bool,
) -> None:
    from lmvisor.server.render import event_line

    console = out()

    def show(item: dict[str, Any]) -> None:
        if as_json:
            typer.echo(json.dumps(item, ensure_ascii=False))
        elif item["event"] == "lagged":
            console.print(f"[yellow]... {item['data'].get('dropped')} event(s) dropped[/yellow]")
        else:
            console.print(event_line(item["data"]))

    if url:
        with client(url, token) as daemon:
            # The stream's head is awaited without limit (its body then at most a few of
            # the daemon's heartbeats between bytes), so a host that accepts and never
            # answers would hang here: a bounded call first shows a daemon is there.
            daemon.health()
            for item in daemon.follow_events(**filters):
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
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate a configuration and print it in full, secrets masked (`**********`)."""
    if url and path is not None:
        raise typer.BadParameter("give a PATH or --url, not both", param_hint="PATH")
    with reporting(ctx):
        if url:
            data = remote(url, token, lambda daemon: daemon.config())
        else:
            data = _checked(load_config(path))
        if as_json:
            print_json(data)
            return
        out().print_json(data=data)
        shown = None if url is None else url_without_password(url)
        source = shown or (str(path) if path is not None else "defaults, ./lmvisor.toml, env")
        Console(stderr=True).print(f"[green]configuration OK[/green] ({escape(source)})")


def _checked(config: LmvisorConfig) -> dict[str, Any]:
    from lmvisor.server.auth import check_bind

    check_bind(config.server)
    dumped: dict[str, Any] = config.model_dump(mode="json")
    return dumped


# --- version ----------------------------------------------------------------------


@app.command()
def version(
    ctx: typer.Context,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print lmvisor's version (and a daemon's, with --url)."""
    with reporting(ctx):
        info = version_info()
        data: dict[str, Any] = {"lmvisor": info.lmvisor, "python": info.python}
        if url:
            health = remote(url, token, lambda daemon: daemon.health())
            data["daemon"] = {"url": url_without_password(url), "version": health["version"]}
        if as_json:
            print_json(data)
            return
        typer.echo(f"lmvisor {info.lmvisor} (Python {info.python})")
        if url:
            daemon = data["daemon"]
            typer.echo(f"daemon at {daemon['url']}: lmvisor {daemon['version']}")


# --- run, optimize (lmvisor.server.cli_programs) ------------------------------------

app.command("run")(run)
app.command("optimize")(optimize)
config_app.command("set")(config_set)
config_app.command("get")(config_get)
app.add_typer(config_app, name="config")


def main(args: list[str] | None = None) -> None:
    """The `lmvisor` console script: run `app`, exit with its code.

    A usage error (an unknown option, a value of the wrong type, a missing
    argument) is one line naming the option and the problem, and exit 2, like
    every other error; with no arguments at all, the help is shown (exit 2).

    Raises:
        SystemExit: always, with the command's exit code.
    """
    try:
        code = app(args=args, prog_name="lmvisor", standalone_mode=False)
    except typer.TyperException as exc:  # typer's click: a UsageError, a BadParameter
        code = exc.exit_code
        if type(exc).__name__ == "NoArgsIsHelpError":  # typer has shown the help
            pass
        else:
            where = getattr(exc, "ctx", None)
            hint = f" (see '{where.command_path} --help')" if where is not None else ""
            err = Console(stderr=True, highlight=False, soft_wrap=True)
            err.print(f"[red]error:[/red] {escape(one_line(exc) + hint)}")
    except typer.Abort:  # typer's answer to EOF on a prompt
        typer.echo("interrupted", err=True)
        code = EXIT_INTERRUPTED
    raise SystemExit(code if isinstance(code, int) else EXIT_OK)
