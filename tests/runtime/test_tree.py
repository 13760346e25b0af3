"""Tests for lmvisor.runtime.tree: TreeNode rendering, lookup and build_tree on a worker."""

from __future__ import annotations

from lmvisor.runtime.runtime import Runtime
from lmvisor.runtime.tree import TreeNode, build_tree

from .helpers import Counter, Inc


def _leaf(node_id: str, reason: str | None = None) -> TreeNode:
    return TreeNode(node_id, "worker", "running", 1, 2, reason, "Counter<3>", ())


class TestTreeNode:
    def test_render_indents_children(self) -> None:
        """render() draws one line per node, children indented under their parent."""
        tree = TreeNode("root", "supervisor", "running", 0, 0, None, "Supervisor<1>",
                        (_leaf("a", "RuntimeError('x')"),))  # fmt: skip
        assert tree.render().splitlines() == [
            "root [supervisor] running restarts=0 mailbox=0 actor=Supervisor<1>",
            "  a [worker] running restarts=1 mailbox=2 actor=Counter<3>"
            " last_reason=RuntimeError('x')",
        ]

    def test_find_searches_depth_first(self) -> None:
        """find() returns the node with the id, or None."""
        tree = TreeNode("root", "supervisor", "running", 0, 0, None, None, (_leaf("a"),))
        assert tree.find("a") == _leaf("a")
        assert tree.find("zz") is None


class TestBuildTree:
    async def test_worker_node_reads_its_mailbox_depth(self, runtime: Runtime) -> None:
        """build_tree on a worker gives a leaf with its status and mailbox depth."""
        ref = await runtime.spawn(Counter())
        ref.cast_nowait(Inc())
        ref.cast_nowait(Inc())
        node = build_tree("solo", ref)
        assert (node.id, node.kind, node.status, node.mailbox_depth, node.children) == (
            "solo",
            "worker",
            "running",
            2,
            (),
        )
