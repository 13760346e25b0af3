"""Tests for lmvisor.server.health and lmvisor.server.readiness."""

from __future__ import annotations

import asyncio

from lmvisor.runtime.runtime import Runtime
from lmvisor.server.readiness import CheckResult, run_checks, tree_started
from tests.server.conftest import app_client


class TestHealthz:
    async def test_up(self, runtime: Runtime) -> None:
        """/healthz answers ok with the version and namespace."""
        async with app_client(runtime) as (_, client):
            body = (await client.get("/healthz")).json()
        assert body["status"] == "ok"
        assert body["namespace"] == runtime.namespace
        assert body["uptime_seconds"] >= 0


class TestReadyz:
    async def test_ready_when_every_check_passes(self, runtime: Runtime) -> None:
        """A started tree is ready: 200 with the tree check's detail."""
        async with app_client(runtime) as (_, client):
            answer = await client.get("/readyz")
        assert answer.status_code == 200
        assert answer.json()["checks"]["tree"]["ok"] is True

    async def test_failing_check_is_503(self, runtime: Runtime) -> None:
        """A failing added check makes /readyz answer 503 naming it."""

        async def providers() -> CheckResult:
            return CheckResult(False, "openai unreachable, no fallback")

        async with app_client(runtime) as (context, client):
            context.add_readiness_check("providers", providers)
            answer = await client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json() == {
            "status": "not_ready",
            "checks": {
                "tree": {"ok": True, "detail": "every supervised actor is running"},
                "providers": {"ok": False, "detail": "openai unreachable, no fallback"},
            },
        }

    async def test_draining_is_503(self, runtime: Runtime) -> None:
        """While draining, /readyz answers 503 `draining` so balancers stop sending work."""
        async with app_client(runtime) as (context, client):
            context.draining.set()
            answer = await client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["status"] == "draining"


class TestRunChecks:
    async def test_hanging_and_raising_checks_fail_with_reason(self) -> None:
        """A check that hangs past the timeout or raises is a failed result saying why."""

        async def hangs() -> CheckResult:
            await asyncio.sleep(3600)
            return CheckResult(True)

        async def raises() -> CheckResult:
            raise ConnectionError("down")

        results = await run_checks([("hangs", hangs), ("raises", raises)], timeout=0.01)
        assert results["hangs"] == CheckResult(False, "no answer within 0.01s")
        assert results["raises"] == CheckResult(False, "check failed: ConnectionError")

    async def test_tree_check_names_stopped_children(self, runtime: Runtime) -> None:
        """The tree check fails naming a child that is not running."""
        from lmvisor.runtime.child_spec import ChildSpec
        from tests.server._daemon_app import Fragile

        await runtime.start_child(ChildSpec("fragile", Fragile))
        await runtime.terminate_child("fragile")
        result = await tree_started(runtime)()
        assert not result.ok
        assert "fragile" in result.detail

    async def test_duplicate_check_names_are_refused(self, runtime: Runtime) -> None:
        """Adding a second check under a taken name raises ValueError."""
        import pytest

        async with app_client(runtime) as (context, _):

            async def check() -> CheckResult:
                return CheckResult(True)

            with pytest.raises(ValueError, match=r"^readiness check 'tree' already exists$"):
                context.add_readiness_check("tree", check)
