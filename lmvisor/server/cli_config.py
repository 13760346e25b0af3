"""`lmvisor config set` and `lmvisor config get`: one setting of a running daemon, or of a file.

    lmvisor config set PATH VALUE --url URL [--token T] [--json-value | --string]
    lmvisor config get PATH [--url URL [--token T] | --config FILE]

`set` sends `PATCH /v1/config` (the daemon applies the change at once or refuses it,
naming the setting) and prints the setting as the daemon now has it, secrets masked.
VALUE is read as JSON when it parses as JSON (`500`, `true`, `null`, `["a"]`,
`{"rpm": 5}`), else taken as the string given; `--json-value` requires JSON, `--string`
keeps it a string even when it looks like a number (a numeric API key).

`get` prints the setting at PATH, secrets masked: a daemon's (`GET /v1/config?path=`)
with `--url`, else the local configuration's (`--config`, ./lmvisor.toml, LMVISOR_*).

Exit codes as every command: 0 done, 2 a refused or unknown setting (the daemon's
422) or a bad argument, 1 a daemon that cannot be reached.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from lmvisor.server.cli_support import (
    ConfigOption,
    TokenOption,
    UrlOption,
    remote,
    reporting,
)

__all__ = ["config_get", "config_set", "parse_value"]

_PathArgument = Annotated[
    str, typer.Argument(metavar="PATH", help="Dotted path (providers.openai.api_key).")
]


def parse_value(text: str, *, as_json: bool = False, as_string: bool = False) -> Any:
    """VALUE as the command sends it: JSON when it parses (or `as_json`), else the text.

    Raises:
        typer.BadParameter: `as_json` and `text` is not JSON, or both flags are given.
    """
    if as_json and as_string:
        raise typer.BadParameter("give --json-value or --string, not both", param_hint="VALUE")
    if as_string:
        return text
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError:
        if as_json:
            # The value may be a secret: the message names the problem, never the text.
            raise typer.BadParameter(
                "is not valid JSON (--json-value)", param_hint="VALUE"
            ) from None
        return text


def _no_constant(name: str) -> Any:
    # NaN and Infinity are no JSON a daemon takes (the request could not be sent).
    raise ValueError(f"{name} is not JSON")


def config_set(
    ctx: typer.Context,
    path: _PathArgument,
    value: Annotated[str, typer.Argument(metavar="VALUE", help="JSON, else a string.")],
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: Annotated[
        bool, typer.Option("--json-value", help="VALUE must be JSON (no string fallback).")
    ] = False,
    as_string: Annotated[
        bool, typer.Option("--string", help="VALUE is a string even if it reads as JSON.")
    ] = False,
) -> None:
    """Change one setting of a running daemon; prints it as now in force, secrets masked."""
    with reporting(ctx):
        if not url:
            raise typer.BadParameter(
                "a running daemon's URL is required (or LMVISOR_URL): a file is edited by hand",
                param_hint="--url",
            )
        parsed = parse_value(value, as_json=as_json, as_string=as_string)
        change = [{"path": path, "value": parsed}]
        answer = remote(url, token, lambda daemon: daemon.update_config(change))
        from lmvisor.server.config_update import masked_setting

        _show(path, masked_setting(answer.get("config", {}), path))


def config_get(
    ctx: typer.Context,
    path: _PathArgument,
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
) -> None:
    """Print one setting (a daemon's with --url, else the local configuration's), masked."""
    if url and config is not None:
        raise typer.BadParameter("give --config or --url, not both", param_hint="--config")
    with reporting(ctx):
        if url:
            setting = remote(url, token, lambda daemon: daemon.setting(path))
        else:
            from lmvisor.config.loading import load_config
            from lmvisor.server.config_update import masked_setting

            setting = masked_setting(load_config(config).model_dump(mode="json"), path)
        _show(path, setting)


def _show(path: str, setting: Any) -> None:
    """`path = value`, the value as JSON (a table indented below the path)."""
    indent = 2 if isinstance(setting, dict | list) and setting else None
    typer.echo(f"{path} = {json.dumps(setting, indent=indent, ensure_ascii=False)}")
