"""Readiness: named checks that `/readyz` runs, and the built-in "tree started" check.

A check is an async callable returning a `CheckResult`. `/readyz` runs every
check at once, each bounded by a timeout (a check that hangs or raises counts
as failed, with the reason in its detail), and answers 200 only when all pass
and the daemon is not draining. The services layer adds its own checks (say,
"every provider reachable or a fallback configured") through
`ServerContext.add_readiness_check`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias, final

from lmvisor.runtime.runtime import Runtime
from lmvisor.runtime.tree import TreeNode

__all__ = ["CheckResult", "ReadinessCheck", "run_checks", "tree_started"]


@final
@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome and a short human-readable detail."""

    ok: bool
    detail: str = ""


ReadinessCheck: TypeAlias = Callable[[], Awaitable[CheckResult]]
"""An async callable saying whether one part of the daemon can serve."""


def tree_started(runtime: Runtime) -> ReadinessCheck:
    """A check that passes when every node of `runtime`'s supervision tree is running."""

    async def check() -> CheckResult:
        if not runtime.root.alive:
            return CheckResult(False, "the root supervisor is not running")
        down = [node.id for node in _nodes(runtime.tree()) if node.status != "running"]
        if down:
            return CheckResult(False, "not running: " + ", ".join(down))
        return CheckResult(True, "every supervised actor is running")

    return check


def _nodes(node: TreeNode) -> list[TreeNode]:
    found = [node]
    for child in node.children:
        found.extend(_nodes(child))
    return found


async def run_checks(
    checks: Sequence[tuple[str, ReadinessCheck]],
    *,
    timeout: float = 2.0,  # noqa: ASYNC109 (each check gets its own bound)
) -> dict[str, CheckResult]:
    """Run every check concurrently, each within `timeout` seconds; results by name.

    A check that raises or times out is a failed result naming why; the
    caller's cancellation cancels every check.
    """
    results = await asyncio.gather(*(_bounded(check, timeout) for _, check in checks))
    return {name: result for (name, _), result in zip(checks, results, strict=True)}


async def _bounded(check: ReadinessCheck, timeout: float) -> CheckResult:  # noqa: ASYNC109
    try:
        async with asyncio.timeout(timeout):
            return await check()
    except TimeoutError:
        return CheckResult(False, f"no answer within {timeout:g}s")
    except Exception as exc:
        return CheckResult(False, f"check failed: {type(exc).__name__}")
