"""Terminal renderings for the CLI (rich): the supervision tree, event tables and event lines.

Each takes the JSON views the API serves (`lmvisor.server.views`), so a tree
or an event looks the same whether it came from a daemon or an embedded run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

__all__ = ["event_line", "events_table", "supervision_tree"]

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
