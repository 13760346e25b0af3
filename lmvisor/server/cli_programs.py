"""`lmvisor run` and `lmvisor optimize`: a program's answer, an optimization with live progress.

    lmvisor run PROGRAM [--input k=v | k:=JSON]... [--timeout S] [--json]
    lmvisor optimize SPEC.toml|SPEC.json [--detach] [--json]

PROGRAM is a registered program's id, or a JSON file holding a program spec
(or a registration body: `{"id", "program", "options"}`). Against a daemon
(`--url`) a file is registered first, under an id made of its name and a hash
of its content, so running the same file again reuses it. Embedded, the file is
registered in the embedded tree; an id needs the `--app` hook that registers it.

`--input question="What is DSPy?"` passes a string; `--input k:=[1, 2]` passes
JSON (httpie's convention), for lists, numbers and objects.

SPEC is an optimization job (`lmvisor.services.optimization_job`) in TOML or
JSON. Dataset paths are read relative to the spec file; against a daemon
their rows are sent inline (a daemon never reads a client's path). The
command follows the job with a progress bar and ends with a result table; it
exits 0 when the job completed, 1 when it failed or was cancelled. Against a
daemon, `--detach` only submits, and Ctrl-C stops following (the job runs on);
embedded, Ctrl-C cancels the job.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, final

import typer

from lmvisor._files import (
    MAX_DATASET_BYTES,
    MAX_PROGRAM_BYTES,
    check_regular_file,
    read_regular_file,
)
from lmvisor._redaction import url_without_password
from lmvisor.server.cli_support import (
    AppOption,
    ConfigOption,
    JsonOption,
    LoopbackOption,
    TokenOption,
    UrlOption,
    client,
    load_hook,
    out,
    print_json,
    reporting,
)
from lmvisor.server.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    DaemonRefused,
    DaemonSilent,
)
from lmvisor.services.program_id import PROGRAM_ID_PATTERN

if TYPE_CHECKING:
    from lmvisor.server.client import DaemonClient
    from lmvisor.server.render import JobProgressDisplay

__all__ = [
    "ProgramRef",
    "load_job_spec",
    "optimize",
    "parse_inputs",
    "program_ref",
    "run",
]

_ID_CHARS: Final = re.compile(r"[^a-z0-9_\-.]+")
_PROGRAM_ID: Final = re.compile(PROGRAM_ID_PATTERN)
_SHOWN_CHARS: Final = 200
_DONE_STATES: Final = frozenset({"completed", "failed", "cancelled"})


@final
@dataclass(frozen=True, slots=True)
class ProgramRef:
    """What `lmvisor run` runs: an id, and the spec to register first when it came from a file."""

    id: str
    spec: Mapping[str, Any] | None = None
    options: Mapping[str, Any] | None = None


def program_ref(argument: str) -> ProgramRef:
    """PROGRAM as given: a JSON file's spec (with a content-derived id), else a program id.

    Raises:
        typer.BadParameter: the file cannot be read or is not a JSON object, or
            `argument` is neither a file nor a program id (lowercase letters, digits,
            `_-.`, at most 128 characters, as a daemon takes them).
    """
    path = Path(argument)
    try:
        is_file = path.is_file()
    except OSError:  # a name too long to be a path (ENAMETOOLONG)
        is_file = False
    if not (path.suffix == ".json" or is_file):
        if not _PROGRAM_ID.fullmatch(argument):
            raise typer.BadParameter(
                f"{_shown(argument)} is neither a JSON file nor a program id (a-z, 0-9, `_-.`,"
                " at most 128 characters)",
                param_hint="PROGRAM",
            )
        return ProgramRef(argument)
    try:
        raw = read_regular_file(path, MAX_PROGRAM_BYTES)
        data = _loads(raw)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(
            f"cannot read {_shown(argument)}: {_problem(exc)}", param_hint="PROGRAM"
        ) from exc
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{_shown(argument)} is not a JSON object", param_hint="PROGRAM")
    stem = _ID_CHARS.sub("-", path.stem.lower()).strip("-.") or "program"
    default_id = f"{stem[:100]}-{hashlib.sha256(raw).hexdigest()[:8]}"
    if "program" in data and "module" not in data:
        return ProgramRef(str(data.get("id") or default_id), data["program"], data.get("options"))
    return ProgramRef(default_id, data)


def parse_inputs(items: Iterable[str]) -> dict[str, Any]:
    """`k=v` pairs as strings, `k:=JSON` pairs as JSON values.

    Raises:
        typer.BadParameter: an item has no `=`, or its JSON does not parse.
    """
    inputs: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.rstrip(":"):
            raise typer.BadParameter(f"{item!r} is not k=v or k:=JSON", param_hint="--input")
        if name.endswith(":"):
            try:
                inputs[name[:-1]] = _loads(value)
            except ValueError as exc:
                raise typer.BadParameter(
                    f"{item!r}: the value is not JSON ({exc})", param_hint="--input"
                ) from None
        else:
            inputs[name] = value
    return inputs


def load_job_spec(path: Path, *, inline: bool) -> dict[str, Any]:
    """The job in a TOML or JSON file, its dataset paths resolved against the file's folder.

    With `inline`, dataset files are read and their rows sent instead (for a daemon);
    without, each must be a regular file of at most 1 GiB.

    Raises:
        typer.BadParameter: the file cannot be read or parsed, or a dataset file is bad.
    """
    try:
        text = read_regular_file(path, MAX_PROGRAM_BYTES).decode("utf-8")
        data = _toml_loads(text) if path.suffix == ".toml" else _loads(text)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(
            f"cannot read {_shown(str(path))}: {_problem(exc)}", param_hint="SPEC"
        ) from exc
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{_shown(str(path))} is not an object", param_hint="SPEC")
    for name in ("trainset", "valset"):
        value = data.get(name)
        if isinstance(value, str):
            found = (path.parent / value).resolve()
            data[name] = _read_rows(found, name) if inline else _checked_path(found, name)
    return data


def _checked_path(path: Path, name: str) -> str:
    """`path` for the embedded job to read, once it is a regular file of bounded size (the
    job reads it whole: `/dev/zero` ran it out of memory, a FIFO blocked it for good)."""
    try:
        check_regular_file(path, MAX_DATASET_BYTES)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(
            f"{name} {_shown(str(path))}: {_problem(exc)}", param_hint="SPEC"
        ) from exc
    return str(path)


def _read_rows(path: Path, name: str) -> list[Any]:
    """The JSONL file's rows; a bad one is named by its line in the file, from 1."""
    try:
        text = read_regular_file(path, MAX_DATASET_BYTES).decode("utf-8")
        lines = text.split("\n")  # not at U+2028 in a string
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(
            f"{name} {_shown(str(path))}: {_problem(exc)}", param_hint="SPEC"
        ) from exc
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(_loads(line))
        except ValueError as exc:
            raise typer.BadParameter(
                f"{name} {_shown(str(path))} line {number}: not JSON ({exc})", param_hint="SPEC"
            ) from None
    return rows


def _shown(text: str) -> str:
    """`text` quoted for a message, cut short (an id or path may be kilobytes long)."""
    if len(text) <= _SHOWN_CHARS:
        return repr(text)
    return repr(text[:_SHOWN_CHARS]) + f"... ({len(text)} characters)"


def _problem(exc: OSError | ValueError) -> str:
    """The problem alone: an OSError's message repeats the (maybe long) file name."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)


def _loads(text: str | bytes) -> Any:
    """JSON `text`, strictly: nesting too deep to decode, `NaN`, `Infinity` and numbers
    out of a float's range (`1e309`) are a `ValueError` like any other bad JSON (no
    daemon request can carry them)."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is out of a float's range")
    return value


def _toml_loads(text: str) -> dict[str, Any]:
    """TOML `text`; nesting too deep to decode is a `ValueError` like any other bad TOML."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ValueError("TOML nested too deeply") from None


# --- run --------------------------------------------------------------------------


def run(
    ctx: typer.Context,
    program: Annotated[str, typer.Argument(help="A program id, or a JSON program spec file.")],
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="An input field: k=text or k:=JSON (repeatable)."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds for the whole run (0.001 to 86,400)."),
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    app_spec: AppOption = None,
    loopback_lm: LoopbackOption = "never",
    as_json: JsonOption = False,
) -> None:
    """Run a program once: its outputs, usage, cost, cached flag and correlation id."""
    with reporting(ctx):
        timeout = _run_timeout(timeout)
        ref = program_ref(program)
        values = parse_inputs(inputs or ())
        if url:
            with client(url, token) as daemon:
                result = _run_remote(daemon, ref, values, timeout)
        else:
            from lmvisor.server.embedded import embedded_run

            hook = load_hook(app_spec)
            result = embedded_run(
                config, ref, values, timeout=timeout, register=hook, loopback_lm=loopback_lm
            )
        if as_json:
            print_json(result)
        else:
            from lmvisor.server.render import run_result

            out().print(run_result(result))


_SHORTEST_RUN: Final = 0.001
_LONGEST_RUN: Final = 86_400.0


def _run_timeout(seconds: float | None) -> float | None:
    """`--timeout`: None, or seconds from a millisecond to a day.

    Raises:
        typer.BadParameter: naming `--timeout`, outside that range or NaN (inf, or 1e308,
            ran unbounded embedded, where a daemon caps what it is asked; 1e-300 could
            never finish).
    """
    if seconds is not None and not _SHORTEST_RUN <= seconds <= _LONGEST_RUN:
        raise typer.BadParameter(
            f"must be from 0.001 to 86400 seconds, got {seconds!r}", param_hint="--timeout"
        )
    return seconds


def _run_remote(
    daemon: DaemonClient, ref: ProgramRef, inputs: dict[str, Any], timeout: float | None
) -> dict[str, Any]:
    if timeout is None:
        # The run then waits for its answer without limit (the daemon's own deadline
        # bounds it), so a host that accepts and never answers would hang `run` for good:
        # a bounded call first shows a daemon is there.
        daemon.health()
    if ref.spec is not None:
        try:
            daemon.register(ref.id, ref.spec, options=ref.options)
        except DaemonRefused as exc:
            if exc.error_code != "module_already_registered":
                raise
    return daemon.run(ref.id, inputs, timeout=timeout)


# --- optimize ---------------------------------------------------------------------


def optimize(
    ctx: typer.Context,
    spec_path: Annotated[
        Path, typer.Argument(metavar="SPEC", help="The job: a TOML or JSON file.")
    ],
    detach: Annotated[
        bool, typer.Option("--detach", help="Submit to the daemon and print the job's id only.")
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    config: ConfigOption = None,
    app_spec: AppOption = None,
    loopback_lm: LoopbackOption = "never",
    as_json: JsonOption = False,
) -> None:
    """Run an optimization job with a live progress bar, then show its result."""
    if detach and not url:
        raise typer.BadParameter("--detach needs a daemon (--url)", param_hint="--detach")
    with reporting(ctx):
        spec = load_job_spec(spec_path, inline=bool(url))
        from lmvisor.server.render import JobProgressDisplay, job_table

        display = JobProgressDisplay(enabled=not as_json)
        if url:
            final = _optimize_remote(url, token, spec, display, detach=detach)
        else:
            from lmvisor.server.embedded import embedded_optimize

            hook = load_hook(app_spec)
            with display:
                final = embedded_optimize(
                    config, spec, display.update, register=hook, loopback_lm=loopback_lm
                )
        if as_json:
            print_json(final)
        else:
            out().print(job_table(final))
    if not detach and final.get("status") != "completed":
        raise typer.Exit(EXIT_FAILURE)
    raise typer.Exit(EXIT_OK)


def _optimize_remote(
    url: str,
    token: str | None,
    spec: dict[str, Any],
    display: JobProgressDisplay,
    *,
    detach: bool,
) -> dict[str, Any]:
    with client(url, token) as daemon:
        submitted = daemon.submit_optimization(spec)
        if detach:
            return submitted
        job_id = str(submitted["id"])
        try:
            with display:
                final = _follow(daemon.follow_optimization(job_id), display.update, submitted)
            if final.get("status") not in _DONE_STATES:  # the stream ended early (a drain)
                final = daemon.optimization(job_id)
            return final
        except KeyboardInterrupt:
            typer.echo(_still_running("interrupted: stopped following", job_id, url), err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except DaemonSilent:
            typer.echo(_still_running("the daemon went silent", job_id, url), err=True)
            raise


def _still_running(why: str, job_id: str, url: str) -> str:
    """The line naming a followed job left running, and how to cancel it."""
    return (
        f"{why}; job {job_id} runs on (cancel: POST"
        f" {url_without_password(url)}/v1/optimizations/{job_id}/cancel)"
    )


def _follow(
    items: Iterable[dict[str, Any]], show: Callable[[dict[str, Any]], None], last: dict[str, Any]
) -> dict[str, Any]:
    """Show each progress item; the final status (the last one seen if the stream was cut)."""
    for item in items:
        show(item)
        if item["event"] in ("status", "done"):
            last = item["data"]
        if item["event"] == "done" or last.get("status") in _DONE_STATES:
            break
    return last
