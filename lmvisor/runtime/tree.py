"""Snapshots of a supervision tree, built only from `statistics()` records.

`build_tree(id, ref)` walks a supervisor's `ActorStatistics.children`
recursively; `TreeNode.render()` draws it for the CLI and examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

from lmvisor.runtime.actor import ActorRef, ChildStatistics

__all__ = ["TreeNode", "build_tree"]


@final
@dataclass(frozen=True, slots=True)
class TreeNode:
    """One node of `Runtime.tree()`.

    Attributes:
        id: the child id in its supervisor ("root" for the runtime's root).
        kind: "supervisor" or "worker".
        status: "running", "stopping", "dead", "starting", or for a child that
            is not running its supervisor's view: "stopped", "terminated",
            "restarting".
        restarts: how many times its supervisor restarted it.
        mailbox_depth: messages waiting (0 when not running).
        last_reason: repr of the last abnormal exit reason, or None.
        actor: the running incarnation's name (``Class<n>``), or None.
        children: child nodes in start order (empty for a worker).
    """

    id: str
    kind: str
    status: str
    restarts: int
    mailbox_depth: int
    last_reason: str | None
    actor: str | None
    children: tuple[TreeNode, ...]

    def render(self, indent: str = "") -> str:
        """The tree as indented text, one node per line."""
        line = (
            f"{indent}{self.id} [{self.kind}] {self.status}"
            f" restarts={self.restarts} mailbox={self.mailbox_depth}"
        )
        if self.actor is not None:
            line += f" actor={self.actor}"
        if self.last_reason is not None:
            line += f" last_reason={self.last_reason}"
        lines = [line]
        lines.extend(child.render(indent + "  ") for child in self.children)
        return "\n".join(lines)

    def find(self, node_id: str) -> TreeNode | None:
        """The first node with `node_id`, depth first, or None."""
        if self.id == node_id:
            return self
        for child in self.children:
            found = child.find(node_id)
            if found is not None:
                return found
        return None


def _node(
    node_id: str, kind: str, ref: ActorRef | None, parent_view: ChildStatistics | None
) -> TreeNode:
    restarts = 0 if parent_view is None else parent_view.restarts
    reason = None if parent_view is None else parent_view.last_reason
    last_reason = None if reason is None else repr(reason)
    if ref is None:
        status = "stopped" if parent_view is None else parent_view.status
        return TreeNode(node_id, kind, status, restarts, 0, last_reason, None, ())
    stats = ref.statistics()
    children: tuple[TreeNode, ...] = ()
    if stats.children is not None:
        children = tuple(_node(c.id, c.type, c.ref, c) for c in stats.children)
    return TreeNode(
        id=node_id,
        kind=kind,
        status=stats.status.value,
        restarts=restarts,
        mailbox_depth=stats.mailbox.depth,
        last_reason=last_reason,
        actor=stats.name,
        children=children,
    )


def build_tree(node_id: str, ref: ActorRef) -> TreeNode:
    """Snapshot the tree under `ref` (a supervisor or a worker), reading only statistics."""
    kind = "supervisor" if ref.statistics().children is not None else "worker"
    return _node(node_id, kind, ref, None)
