"""Tests for the embedded app's lifecycle as a careless user meets it: `lmvisor.services.app`.

An app used after its block, a config given as a mapping or with a data directory that
cannot be one, and a block opened, cancelled and closed over and over.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from lmvisor.config.errors import ConfigError
from lmvisor.config.schema import LmvisorConfig
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.runtime.actor import Actor
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.services.app import open_app
from lmvisor.services.cache_store import CacheStore
from lmvisor.services.errors import AppClosed
from lmvisor.services.optimization_worker import WORKER_NAME
from lmvisor.testing.lm_server import LMServer
from lmvisor.testing.scripted_lm import ScriptedLM

QUIET = {"logging": {"level": "error"}}


def _config(**values: object) -> LmvisorConfig:
    return LmvisorConfig.model_validate({**QUIET, **values})


def _closed(operation: str) -> str:
    return rf"^the app is closed: {re.escape(operation)} needs a running app, and the app in "


class TestClosedApp:
    async def test_every_call_after_the_block_is_refused_as_closed(
        self, lm_server: LMServer
    ) -> None:
        """Programs, jobs, the cache and `lm` raise AppClosed naming the call after the block."""
        async with open_app(_config(data_dir=None), lm_server=lm_server) as app:
            await app.register("qa", Predict("question -> answer"))
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "app.register()": lambda: app.register("qb", Predict("q -> a")),
            "app.swap()": lambda: app.swap("qa", Predict("question -> answer")),
            "app.rollback()": lambda: app.rollback("qa"),
            "app.unregister()": lambda: app.unregister("qa"),
            "app.describe()": lambda: app.describe("qa"),
            "app.list_modules()": app.list_modules,
            "app.get()": lambda: app.get("qa"),
            "app.submit_optimization()": lambda: app.submit_optimization({}),
            "app.optimization_status()": lambda: app.optimization_status("j"),
            "app.list_optimizations()": app.list_optimizations,
            "app.cancel_optimization()": lambda: app.cancel_optimization("j"),
            "app.optimization_result()": lambda: app.optimization_result("j"),
            "app.suspend_optimizations()": app.suspend_optimizations,
            "app.cache_statistics()": app.cache_statistics,
            "app.clear_cache()": app.clear_cache,
            "app.flush_cache()": app.flush_cache,
        }
        for operation, call in calls.items():
            with pytest.raises(AppClosed, match=_closed(operation)):
                await call()
        with pytest.raises(AppClosed, match=_closed("app.run()")):
            app.run("qa", {"question": "late"})  # refused before a coroutine exists
        with pytest.raises(AppClosed, match=_closed("app.lm()")):
            app.lm("openai/gpt-4o")
        with pytest.raises(AppClosed, match=_closed("app.cache_in_front()")):
            app.cache_in_front(lm_server)  # type: ignore[arg-type]

    async def test_the_message_names_the_namespace_and_the_block(self, lm_server: LMServer) -> None:
        """The whole message says which app stopped and why; the error carries its code."""
        async with open_app(_config(data_dir=None), namespace="mine", lm_server=lm_server) as app:
            pass
        with pytest.raises(AppClosed) as caught:
            await app.list_modules()
        assert str(caught.value) == (
            "the app is closed: app.list_modules() needs a running app, and the app in"
            " namespace 'mine' has stopped (its `async with open_app(...)` block exited)"
        )
        assert (caught.value.code, caught.value.retryable) == ("app_closed", False)

    async def test_a_program_holding_the_apps_lm_is_refused_after_close(
        self, lm_server: LMServer
    ) -> None:
        """A Predict run on an `app.lm()` taken before the block exited raises AppClosed."""
        async with open_app(_config(data_dir=None), lm_server=lm_server) as app:
            lm, fallback = app.lm(), app.lm(fallbacks=["anthropic/claude-3-5-haiku-latest"])
        for held in (lm, fallback):
            refused = pytest.raises(AppClosed, match=_closed("a call to openai/gpt-4o-mini"))
            with context(lm=held), refused:
                await Predict("question -> answer")(question="asked after close")

    async def test_the_modules_client_after_the_block_is_refused_as_closed(
        self, lm_server: LMServer
    ) -> None:
        """Every call through `app.modules` raises AppClosed, not a missing actor's name."""
        async with open_app(_config(data_dir=None), lm_server=lm_server) as app:
            await app.register("qa", Predict("question -> answer"))
        modules = app.modules
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "register": lambda: modules.register("qb", Predict("q -> a")),
            "swap": lambda: modules.swap("qa", Predict("question -> answer")),
            "rollback": lambda: modules.rollback("qa"),
            "unregister": lambda: modules.unregister("qa"),
            "describe": lambda: modules.describe("qa"),
            "get": lambda: modules.get("qa"),
            "list_modules": modules.list_modules,
            "execute": lambda: modules.execute("qa", {"question": "late"}),
        }
        for verb, call in calls.items():
            with pytest.raises(AppClosed, match=_closed(f"app.modules.{verb}()")):
                await call()

    async def test_a_held_lm_is_refused_while_the_tree_stops_even_on_a_cache_hit(
        self, lm_server: LMServer
    ) -> None:
        """Asked from a service's terminate during shutdown, a cached answer is AppClosed."""
        seen: list[object] = []

        class AsksOnStop(Actor):
            async def terminate(self, reason: object) -> None:
                try:
                    with context(lm=held):
                        seen.append(await Predict("question -> answer")(question="warm"))
                except AppClosed as exc:
                    seen.append(exc.operation)

        async with open_app(_config(data_dir=None), lm_server=lm_server) as app:
            held = app.lm()
            with context(lm=held):
                await Predict("question -> answer")(question="warm")  # now in L1
            await app.runtime.start_child(ChildSpec("asks", AsksOnStop))
        assert seen == ["a call to openai/gpt-4o-mini"]

    async def test_a_cache_in_front_of_your_lm_is_spent_with_the_app(self) -> None:
        """After the block, a `cache_in_front` LM answers neither from its cache nor upstream."""
        upstream = ScriptedLM(model="mine/lm")
        async with open_app(_config(data_dir=None), loopback_lm="always") as app:
            cached = app.cache_in_front(upstream)
            with context(lm=cached):
                await Predict("question -> answer")(question="warm")
        for question in ("warm", "cold"):
            with context(lm=cached), pytest.raises(AppClosed, match=_closed("a call to mine/lm")):
                await Predict("question -> answer")(question=question)
        assert len(upstream.requests) == 1

    async def test_what_the_app_left_behind_is_still_readable(self, lm_server: LMServer) -> None:
        """After close the tree, the events and the providers' health can still be read."""
        async with open_app(_config(data_dir=None), lm_server=lm_server) as app:
            await app.register("qa", Predict("question -> answer"))
        assert [e.type for e in await app.events.query()] == ["module.registered"]
        assert not any(h.running for h in app.provider_health().values())
        assert app.tree().id == "root"

    async def test_a_body_that_raises_closes_the_app_and_keeps_its_error(
        self, lm_server: LMServer
    ) -> None:
        """The body's own exception propagates unchanged and the app is closed after it."""
        with pytest.raises(KeyError, match=r"^'mine'$"):
            async with open_app(_config(data_dir=None), lm_server=lm_server) as app:
                raise KeyError("mine")
        with pytest.raises(AppClosed):
            await app.list_modules()


class TestConfigArgument:
    async def test_a_mapping_is_validated_into_a_config(self, tmp_path: Path) -> None:
        """A dict of settings opens the app with those settings and the defaults for the rest."""
        settings = {**QUIET, "data_dir": str(tmp_path / "made"), "modules": {"max_versions": 3}}
        async with open_app(settings, loopback_lm="always") as app:
            assert app.runtime.config.modules.max_versions == 3
            assert app.default_model == "openai/gpt-4o-mini"
        assert (tmp_path / "made" / "modules.sqlite3").is_file()

    async def test_a_mapping_with_bad_values_names_each_field(self) -> None:
        """Every bad setting of a mapping is named by its path, nothing started."""
        settings = {"modules": {"timeout": -1, "default_lm": "gpt-4o"}, "api_key": "sk-1"}
        with pytest.raises(ConfigError) as caught:
            async with open_app(settings):
                pass
        assert caught.value.paths == ("modules.default_lm", "modules.timeout", "api_key")
        assert str(caught.value).startswith("invalid configuration (open_app, 3 problems):")
        assert "sk-1" not in str(caught.value)

    async def test_neither_a_config_nor_a_mapping_is_a_type_error(self) -> None:
        """A path string where the config goes is refused with what to pass instead."""
        expected = r"^open_app: config must be an LmvisorConfig .* got str$"
        with pytest.raises(TypeError, match=expected):
            async with open_app("lmvisor.toml"):  # type: ignore[arg-type]
                pass

    @pytest.mark.parametrize(
        ("relative", "why"),
        [("a-file", "not a directory"), ("a-file/below", "Not a directory")],
    )
    async def test_a_data_dir_that_cannot_be_a_directory_is_named(
        self, tmp_path: Path, relative: str, why: str
    ) -> None:
        """data_dir naming a file (or a path under one) is a ConfigError before anything starts."""
        (tmp_path / "a-file").write_text("mine")
        data_dir = tmp_path / relative
        with pytest.raises(ConfigError) as caught:
            async with open_app(_config(data_dir=data_dir), loopback_lm="always"):
                pass
        assert str(caught.value) == (
            "invalid configuration (open_app, 1 problem):\n"
            f"  data_dir: {str(data_dir)!r} cannot be used: {why}"
        )
        assert (tmp_path / "a-file").read_text() == "mine"


def _threads_fds_tasks() -> tuple[int, int, int]:
    return threading.active_count(), len(os.listdir("/proc/self/fd")), len(asyncio.all_tasks())


class TestRepeatedAndCancelled:
    async def test_opening_and_closing_again_leaves_nothing_behind(self, tmp_path: Path) -> None:
        """Ten blocks on one data directory, one after another: threads, fds and tasks stay flat."""
        config = _config(data_dir=tmp_path)
        async with open_app(config, loopback_lm="always") as app:
            await app.register("qa", Predict("question -> answer"))
        before = _threads_fds_tasks()
        for i in range(10):
            async with open_app(config, loopback_lm="always") as app:
                await app.run("qa", {"question": f"round {i}"})
        assert _threads_fds_tasks() == before

    @pytest.mark.parametrize("turns", [0, 1, 5, 20, 60])
    async def test_cancelled_while_starting_or_running_leaves_nothing_behind(
        self, tmp_path: Path, turns: int
    ) -> None:
        """Cancelling the task in `open_app` after `turns` loop turns is a plain cancellation."""
        entered = []

        async def body() -> None:
            async with open_app(_config(data_dir=tmp_path), loopback_lm="always") as app:
                entered.append(app)
                await asyncio.Event().wait()

        async with open_app(_config(data_dir=tmp_path), loopback_lm="always"):
            pass  # the loop's executor thread, started on first use, is kept by the loop
        before = _threads_fds_tasks()
        task = asyncio.create_task(body())
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _threads_fds_tasks() == before
        for app in entered:
            with pytest.raises(AppClosed):
                await app.list_modules()


class TestJobsAtTheBlocksEnd:
    async def test_a_job_running_when_the_block_exits_resumes_at_the_next_open(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A job still running when the block exits is suspended before the app's LMs refuse
        calls (its worker is gone when the cache closes: a worker still running then had its
        calls refused and could end the job as failed for good), and the next app on the
        same directory resumes and completes it."""
        workers_at_close: list[bool] = []
        close = CacheStore.close

        def watched(store: CacheStore, namespace: str) -> None:
            workers_at_close.append(runtime.whereis((WORKER_NAME, job)) is not None)
            close(store, namespace)

        monkeypatch.setattr(CacheStore, "close", watched)
        spec = {
            "optimizer": "COPRO",
            "params": {"breadth": 3, "depth": 2},
            "program": {"module": "Predict", "signature": "question -> answer"},
            "trainset": [{"question": f"q{i}", "answer": "a"} for i in range(40)],
            "input_keys": ["question"],
            "metric": "tests.services._optimization_support:hashed_metric",
        }
        config = _config(data_dir=tmp_path / "data")
        async with LMServer(latency=0.05) as server:
            async with open_app(config, lm_server=server) as app:
                runtime = app.runtime
                job = await app.submit_optimization(spec)
                for _ in range(3000):  # the job under way: its first trial done
                    if (await app.optimization_status(job)).trials_done:
                        break
                    await asyncio.sleep(0.01)
                assert (await app.optimization_status(job)).status == "running"
            assert workers_at_close == [False]
            async with open_app(config, lm_server=server) as again:
                status = await again.optimization_status(job)
                assert status.status in ("running", "completed"), status.error
                for _ in range(6000):
                    if status.status != "running":
                        break
                    await asyncio.sleep(0.01)
                    status = await again.optimization_status(job)
                assert status.status == "completed", status.error
