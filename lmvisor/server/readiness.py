"""Readiness: named checks that `/readyz` runs: "tree started" and "providers reachable".

A check is an async callable returning a `CheckResult`. `/readyz` runs every
check at once, each bounded by a timeout (a check that hangs or raises counts
as failed, with the reason in its detail), and answers 200 only when all pass
and the daemon is not draining. Others are added through
`ServerContext.add_readiness_check`.

`providers_ready(app)` passes when every model in use (the default model and
each registered program's) has its vendor's provider actor running, or, for a
program, a fallback that answers without it (a default answer, or a
`fallback_lm` whose provider runs). An open circuit breaker is shown in the
detail but does not fail the check: a breaker closes again only through calls,
and an instance taken out of rotation would get none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias, final

from lmvisor.runtime.runtime import Runtime
from lmvisor.runtime.tree import TreeNode

if TYPE_CHECKING:
    from lmvisor.services.app import App, ProviderHealth
    from lmvisor.services.module_table import ModuleInfo

__all__ = ["CheckResult", "ReadinessCheck", "providers_ready", "run_checks", "tree_started"]


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


def providers_ready(app: App) -> ReadinessCheck:
    """A check that passes when every model in use can be answered (see the module docstring)."""

    async def check() -> CheckResult:
        health = app.provider_health()
        problems = []
        model_problem = _model_problem(app.default_model, health)
        if model_problem is not None:
            problems.append(f"default model {model_problem}")
        for info in await app.list_modules():
            problem = _model_problem(info.lm, health)
            if problem is not None and not _has_fallback(info, health):
                problems.append(f"program {info.module_id!r}: {problem}, and no fallback")
        if problems:
            return CheckResult(False, "; ".join(problems))
        shown = ", ".join(f"{h.vendor} (breaker {h.breaker})" for h in health.values())
        return CheckResult(True, f"providers running: {shown}")

    return check


def _model_problem(model: str, health: dict[str, ProviderHealth]) -> str | None:
    vendor = model.partition("/")[0]
    found = health.get(vendor)
    if found is None:
        return f"{model}: no provider for {vendor!r} (no API key or base URL configured)"
    if not found.running:
        return f"{model}: the {vendor!r} provider is not running"
    return None


def _has_fallback(info: ModuleInfo, health: dict[str, ProviderHealth]) -> bool:
    if info.options.get("default") is not None:
        return True
    fallback_lm = info.options.get("fallback_lm")
    return isinstance(fallback_lm, str) and _model_problem(fallback_lm, health) is None


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
