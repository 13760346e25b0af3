"""Terminal renderings for the CLI (rich): the tree, events, a run's result, an optimization job.

Each takes the JSON views the API serves (`lmvisor.server.views`,
`program_views`, `optimization_progress`), so a tree, an event, a run or a job
looks the same whether it came from a daemon or an embedded run.
`JobProgressDisplay` is the live progress bar of `lmvisor optimize`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, final

from rich.console import Console, Group
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.tree import Tree

__all__ = [
    "JobProgressDisplay",
    "event_line",
    "events_table",
    "job_table",
    "run_result",
    "supervision_tree",
]

_STATUS_STYLE: Final = {"running": "green", "starting": "yellow", "stopping": "yellow"}
_DATA_WIDTH: Final = 120


def _label(node: Mapping[str, Any]) -> str:
    style = _STATUS_STYLE.get(str(node["status"]), "red")
    label = (
        f"[bold]{escape(str(node['id']))}[/bold] [dim]{escape(str(node['kind']))}[/dim]"
        f" [{style}]{escape(str(node['status']))}[/{style}]"
        f" restarts={node['restarts']} mailbox={node['mailbox_depth']}"
    )
    if node.get("actor"):
        label += f" [dim]{escape(str(node['actor']))}[/dim]"
    if node.get("last_crash"):
        label += f" [red]last crash: {escape(str(node['last_crash']))}[/red]"
    return label


def supervision_tree(node: Mapping[str, Any]) -> Tree:
    """The tree view (`GET /v1/tree`) as a rich `Tree`."""
    tree = Tree(_label(node))
    _add_children(tree, node)
    return tree


def _add_children(branch: Tree, node: Mapping[str, Any]) -> None:
    for child in node.get("children", ()):
        _add_children(branch.add(_label(child)), child)


def _when(timestamp: Any) -> str:
    try:
        moment = datetime.fromtimestamp(float(timestamp), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return str(timestamp)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _data(data: Any) -> str:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=repr)
    return text if len(text) <= _DATA_WIDTH else text[: _DATA_WIDTH - 3] + "..."


def events_table(events: Iterable[Mapping[str, Any]]) -> Table:
    """Event views (`GET /v1/events`) as a table: time, type, correlation id, data."""
    table = Table("time (UTC)", "type", "correlation id", "data", box=None, pad_edge=False)
    for event in events:
        table.add_row(
            _when(event.get("timestamp")),
            escape(str(event.get("type"))),
            escape(str(event.get("correlation_id") or "-")),
            escape(_data(event.get("data"))),
        )
    return table


def event_line(event: Mapping[str, Any]) -> str:
    """One event view as one line of markup, for `events --follow`."""
    return (
        f"[dim]{_when(event.get('timestamp'))}[/dim] [bold]{escape(str(event.get('type')))}[/bold]"
        f" [cyan]{escape(str(event.get('correlation_id') or '-'))}[/cyan]"
        f" {escape(_data(event.get('data')))}"
    )


# --- programs and optimization jobs ----------------------------------------------------


def _money(cost: Any) -> str:
    return "cost unknown" if cost is None else f"${float(cost):.6f}"


def run_result(view: Mapping[str, Any]) -> Group:
    """A run (`POST /v1/programs/{id}/run`'s answer): its outputs, then one line of accounting."""
    table = Table("field", "value", box=None, pad_edge=False, show_header=False)
    for name, value in dict(view.get("outputs") or {}).items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        table.add_row(f"[bold]{escape(str(name))}[/bold]", escape(str(text)))
    usage = view.get("usage") or {}
    cached = "cached" if view.get("cached") else "not cached"
    line = (
        f"[dim]{escape(str(view.get('module_id')))} v{view.get('version')}"
        f" · {usage.get('total_tokens', 0)} tokens · {_money(view.get('cost_usd'))} · {cached}"
        f" · {float(view.get('duration_ms') or 0):.1f} ms"
        f" · correlation id {escape(str(view.get('correlation_id')))}[/dim]"
    )
    if view.get("strategy") not in (None, "primary"):
        line += f" [yellow]answered by fallback {escape(str(view['strategy']))}[/yellow]"
    return Group(table, line)


def job_table(job: Mapping[str, Any]) -> Table:
    """An optimization job's status (`GET /v1/optimizations/{id}`) as a two-column table."""
    status = str(job.get("status"))
    style = {"completed": "green", "running": "yellow"}.get(status, "red")
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    score = job.get("best_score")
    rows = [
        ("job", job.get("id")),
        ("status", f"[{style}]{escape(status)}[/{style}]"),
        ("optimizer", job.get("optimizer")),
        ("program", job.get("program")),
        ("trials", f"{job.get('trials_done')} of {job.get('trials_total')}"),
        ("best score", "-" if score is None else f"{float(score):.4g}"),
    ]
    if job.get("version") is not None:
        rows.append(("deployed as version", job.get("version")))
    error = job.get("error")
    if isinstance(error, Mapping):
        rows.append(("error", f"[red]{escape(str(error.get('message')))}[/red]"))
    for name, value in rows:
        table.add_row(name, value if name in ("status", "error") else escape(str(value)))
    return table


@final
class JobProgressDisplay:
    """A live progress bar for an optimization job, fed its progress stream's items.

    Use as a context manager around the stream; `update({"event", "data"})` with
    each item (`status`, `trial`, `done`). Disabled, it shows nothing.
    """

    def __init__(self, *, enabled: bool = True, console: Console | None = None) -> None:
        self._enabled = enabled
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("best {task.fields[best]}"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
            disable=not enabled,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> JobProgressDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        # Started by the first item: a job refused before any progress leaves no blank
        # line above its one-line error.
        if self._task is not None:
            self._progress.stop()

    def update(self, item: Mapping[str, Any]) -> None:
        """Show one progress item."""
        data = item.get("data") or {}
        if item.get("event") not in ("status", "done") or not isinstance(data, Mapping):
            return
        total = int(data.get("trials_total") or 0)
        done = int(data.get("trials_done") or 0)
        score = data.get("best_score")
        best = "-" if score is None else f"{float(score):.4g}"
        if self._task is None:
            label = f"{data.get('optimizer')} on {data.get('program')}"
            self._task = self._progress.add_task(escape(label), total=total or None, best=best)
            self._progress.start()
        self._progress.update(self._task, completed=done, total=total or None, best=best)
