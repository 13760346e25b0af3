"""JSON views of the runtime's tree and events, shared by the HTTP API and the CLI.

Both views pass the runtime's `Redactor`: a crash reason or an event value that
carries a credential is shown as `[REDACTED]`, and a value that is not JSON
becomes its repr, so one odd value never breaks an answer or a stream.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from lmvisor.runtime.observe import Redactor
from lmvisor.runtime.observe.events import Event
from lmvisor.runtime.tree import TreeNode

__all__ = ["event_view", "tree_view"]


@cache
def _redactor() -> Redactor:
    return Redactor()


def tree_view(node: TreeNode) -> dict[str, Any]:
    """`node` and its subtree as JSON-ready data (crash reasons redacted and cut)."""
    reason = None if node.last_reason is None else str(_redactor().redact(node.last_reason))
    return {
        "id": node.id,
        "kind": node.kind,
        "status": node.status,
        "restarts": node.restarts,
        "mailbox_depth": node.mailbox_depth,
        "last_crash": reason,
        "actor": node.actor,
        "children": [tree_view(child) for child in node.children],
    }


def event_view(event: Event) -> dict[str, Any]:
    """`event` as JSON-ready data, secrets redacted."""
    data = json.loads(json.dumps(dict(event.data), default=repr))
    return {
        "id": event.id,
        "type": event.type,
        "data": _redactor().redact(data, cut=False),
        "correlation_id": event.correlation_id,
        "parent_id": event.parent_id,
        "timestamp": event.timestamp,
        "namespace": event.namespace,
    }
