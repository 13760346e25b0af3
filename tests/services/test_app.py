"""Tests for lmvisor.services.app: the tree, its data directory, the LM choice, the seed example."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from lmvisor.config.schema import LmvisorConfig
from lmvisor.programs.chain_of_thought import ChainOfThought
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.runtime.observe.events import Event
from lmvisor.runtime.observe.names import OPTIMIZATION_COMPLETED, OPTIMIZATION_FAILED
from lmvisor.services.app import App, open_app
from lmvisor.services.app_lm import choose_default_model, loopback_config
from lmvisor.services.cache import CacheManager
from lmvisor.services.cache_store import PendingWrite
from lmvisor.services.errors import UnknownProvider
from lmvisor.services.optimization import OptimizationStatus
from lmvisor.testing.lm_server import LMServer

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"logging": {"level": "error"}}


def _config(**values: object) -> LmvisorConfig:
    return LmvisorConfig.model_validate({**QUIET, **values})


def _with_key(config: LmvisorConfig, vendor: str) -> LmvisorConfig:
    provider = config.providers[vendor].model_copy(update={"api_key": SecretStr("sk-test")})
    return config.model_copy(update={"providers": {**config.providers, vendor: provider}})


class TestTree:
    async def test_tree_has_the_seeds_shape_in_start_order(self, app: App) -> None:
        """root: system, cache, lm (lm_providers, lm_provider_roster), modules (tasks,
        manager), optimization, in order."""
        tree = app.tree()
        assert [c.id for c in tree.children] == ["system", "cache", "lm", "modules", "optimization"]
        lm = tree.find("lm")
        assert lm is not None and [c.id for c in lm.children] == [
            "lm_providers",
            "lm_provider_roster",
        ]
        modules = tree.find("modules")
        assert modules is not None and [c.id for c in modules.children] == ["tasks", "manager"]
        assert all(c.status == "running" for c in tree.children)

    async def test_default_data_dir_holds_the_sqlite_cache(
        self, lm_server: LMServer, tmp_path: Path
    ) -> None:
        """L3 lives in <data_dir>/cache.sqlite3; writes queued at shutdown still reach it."""
        data_dir = tmp_path / ".lmvisor"
        async with open_app(_config(data_dir=data_dir), lm_server=lm_server) as app:
            with context(lm=app.lm()):
                await Predict("question -> answer")(question="persist me")
            layers = [t.layer for t in (await app.cache_statistics()).tiers]
        assert layers == ["l1", "l3"]
        path = data_dir / "cache.sqlite3"
        assert sqlite3.connect(path).execute("SELECT count(*) FROM entries").fetchone() == (1,)
        async with open_app(_config(data_dir=data_dir), lm_server=lm_server) as again:
            with context(lm=again.lm()):
                await Predict("question -> answer")(question="persist me")
            stats = await again.cache_statistics()
        assert [(t.layer, t.hits) for t in stats.tiers] == [("l1", 0), ("l3", 1)]
        assert lm_server.stats().requests == 1

    async def test_a_batch_cut_short_by_shutdown_is_still_written(
        self, lm_server: LMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A batch the write-behind had taken, stuck mid-write when the app stops, reaches L3."""
        taken = asyncio.Event()
        write_batch = CacheManager._write_batch
        calls: list[int] = []

        async def stuck_once(manager: CacheManager, batch: list[PendingWrite]) -> None:
            calls.append(len(batch))
            if len(calls) == 1:
                taken.set()
                await asyncio.Event().wait()  # a slow disk: only the shutdown ends this wait
            await write_batch(manager, batch)

        monkeypatch.setattr(CacheManager, "_write_batch", stuck_once)
        data_dir = tmp_path / ".lmvisor"
        async with open_app(_config(data_dir=data_dir), lm_server=lm_server) as app:
            with context(lm=app.lm()):
                await Predict("question -> answer")(question="persist me")
            await taken.wait()
        assert calls == [1, 1]  # the write-behind's attempt, then the shutdown's, whole
        path = data_dir / "cache.sqlite3"
        assert sqlite3.connect(path).execute("SELECT count(*) FROM entries").fetchone() == (1,)

    async def test_memory_only_without_a_data_dir(self, app: App) -> None:
        """data_dir = None (the test default) keeps the cache in memory: no L3."""
        with context(lm=app.lm()):
            for _ in range(2):
                await Predict("question -> answer")(question="twice")
        stats = await app.cache_statistics()
        assert [t.layer for t in stats.tiers] == ["l1"]
        assert app.runtime.metrics.value("lmvisor_cache_hit_rate") == 0.5
        assert "lmvisor_cache_hits_total" in app.runtime.metrics.render()
        json.dumps(stats.to_dict())

    async def test_unreadable_cache_file_degrades_to_memory(
        self, lm_server: LMServer, tmp_path: Path
    ) -> None:
        """A cache file that is not a database is left out; the app still answers."""
        (tmp_path / "cache.sqlite3").write_bytes(b"not a database, just bytes" * 200)
        async with open_app(_config(data_dir=tmp_path), lm_server=lm_server) as app:
            with context(lm=app.lm()):
                await Predict("question -> answer")(question="still works")
            stats = await app.cache_statistics()
        assert [t.layer for t in stats.tiers] == ["l1"]

    async def test_corrupt_l3_row_is_dropped_and_refilled(
        self, lm_server: LMServer, tmp_path: Path
    ) -> None:
        """A garbage row in the file is counted, dropped, and replaced by a fresh answer."""
        config = _config(data_dir=tmp_path)
        async with open_app(config, lm_server=lm_server) as app:
            with context(lm=app.lm()):
                await Predict("question -> answer")(question="q")
        with sqlite3.connect(tmp_path / "cache.sqlite3") as conn:
            conn.execute("UPDATE entries SET payload = x'00ff00'")
        async with open_app(config, lm_server=lm_server) as app:
            with context(lm=app.lm()):
                prediction = await Predict("question -> answer")(question="q")
            await app.flush_cache()
            stats = await app.cache_statistics()
        assert prediction.cached is False
        l3 = next(t for t in stats.tiers if t.layer == "l3")
        assert (l3.corrupt, l3.entries) == (1, 1)
        assert lm_server.stats().requests == 2

    @pytest.mark.lmvisor_config(modules={"cache_enabled": False})
    async def test_marker_overrides_reach_the_app(self, app: App) -> None:
        """The lmvisor_config marker changes the app's configuration for that test only."""
        assert app.runtime.config.modules.cache_enabled is False
        assert (await app.cache_statistics()).enabled is False


class TestLMs:
    async def test_the_lms_kept_are_bounded(self, app: App) -> None:
        """app.lm keeps one LM per model until its bound, then starts again: never more."""
        first = app.lm("openai/m0")
        assert app.lm("openai/m0") is first
        for i in range(1, 600):
            app.lm(f"openai/m{i}")
        assert len(app._lms) <= 256
        assert app.lm("openai/m599") is app.lm("openai/m599")


class TestDefaultModel:
    def test_default_lm_kept_when_its_vendor_has_a_key(self) -> None:
        """With OPENAI's key the configured default stands, with nothing to say."""
        choice = choose_default_model(_with_key(_config(), "openai"))
        assert (choice.model, choice.notice) == ("openai/gpt-4o-mini", None)

    def test_only_another_vendors_key_picks_that_vendor(self) -> None:
        """With only Anthropic's key the program runs on Anthropic's default model, said so."""
        choice = choose_default_model(_with_key(_config(), "anthropic"))
        assert choice.model == "anthropic/claude-3-5-haiku-latest"
        assert choice.notice is not None and "has no API key" in choice.notice

    def test_no_key_no_model(self) -> None:
        """Without any key nothing is reachable."""
        assert choose_default_model(_config()).model is None

    def test_loopback_config_points_everything_home_without_real_keys(self) -> None:
        """Every provider targets the loopback URL, and a real key is replaced."""
        config = loopback_config(_with_key(_config(), "openai"), "http://127.0.0.1:9")
        assert config.providers["openai"].base_url == "http://127.0.0.1:9/v1"
        assert config.providers["anthropic"].base_url == "http://127.0.0.1:9"
        key = config.providers["openai"].api_key
        assert key is not None and key.get_secret_value() == "loopback"

    async def test_if_no_key_opts_into_the_loopback_and_says_so(self) -> None:
        """loopback_lm='if_no_key' without keys answers locally and its notice says so."""
        async with open_app(_config(data_dir=None), loopback_lm="if_no_key") as app:
            assert app.notice is not None and "loopback LM server" in app.notice
            assert app.loopback_url is not None
            with context(lm=app.lm()):
                prediction = await Predict("question -> answer")(question="hi")
        assert prediction.answer

    async def test_never_is_the_default_and_starts_no_provider(self) -> None:
        """Without keys and without opting in, no loopback is started and nothing is said."""
        async with open_app(_config(data_dir=None)) as app:
            assert (app.notice, app.loopback_url) == (None, None)
            lm_sup = app.tree().find("lm_providers")
            assert lm_sup is not None and lm_sup.children == ()

    async def test_bad_loopback_mode_is_refused(self) -> None:
        """An unknown loopback mode is a ValueError before anything starts."""
        with pytest.raises(ValueError, match=r"^loopback_lm must be 'never', 'if_no_key'"):
            async with open_app(_config(), loopback_lm="sometimes"):  # type: ignore[arg-type]
                pass


class TestSeedExample:
    async def _example(self, app: App) -> list[str]:
        await app.register("cot", ChainOfThought("question -> answer"))
        execution = await app.run(
            "cot", {"question": "What is the capital of France?"}, correlation_id="seed-1"
        )
        assert execution.prediction.reasoning and execution.prediction.answer
        return [e.type for e in await app.events.query(correlation_id="seed-1")]

    async def test_execution_events_by_correlation_id(self, app: App) -> None:
        """A ChainOfThought run through the ModuleManager: its module and LM events, by id."""
        assert await self._example(app) == [
            "module_execution_start",
            "lm_request",
            "module_execution_complete",
        ]

    async def test_two_apps_in_parallel_share_nothing(self, lm_server: LMServer) -> None:
        """Two apps running the example at once, same correlation id, see only their own."""

        async def one(name: str) -> tuple[list[str], float | None]:
            async with open_app(_config(data_dir=None), namespace=name, lm_server=lm_server) as app:
                types = await self._example(app)
                modules = [m.module_id for m in await app.list_modules()]
                assert modules == ["cot"]
                return types, app.runtime.metrics.value(
                    "lmvisor_module_success_total", module="cot"
                )

        results = await asyncio.gather(one("left"), one("right"))
        for types, successes in results:
            assert types == ["module_execution_start", "lm_request", "module_execution_complete"]
            assert successes == 1.0


class TestReadme:
    def test_first_program_runs_as_pasted_without_keys(self, tmp_path: Path) -> None:
        """The README's first program runs on a machine with no vendor key, and says so; run
        again on the same directory, it answers from the cache."""
        text = (ROOT / "README.md").read_text(encoding="utf-8")
        program = re.search(r"```python\n(.*?)```", text, re.S)
        assert program is not None
        script = tmp_path / "first.py"
        script.write_text(program.group(1), encoding="utf-8")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.endswith("_API_KEY") and not k.startswith("LMVISOR_")
        }
        runs = [
            subprocess.run(
                [sys.executable, str(script)],
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp_path,
                timeout=120,
                check=False,
            )
            for _ in range(2)
        ]
        for done in runs:
            assert done.returncode == 0, done.stderr
            assert "loopback LM server" in done.stdout
            assert "answer:" in done.stdout
        assert (tmp_path / ".lmvisor" / "cache.sqlite3").exists()
        # Run twice, as the README says: the program kept from the first run is adopted by
        # the second one's register, and the answer comes from the SQLite cache.
        assert "cached: False" in runs[0].stdout and "cached: True" in runs[1].stdout


class TestOptimizationSlot:
    async def test_job_takes_the_registered_program_and_deploys_by_hot_swap(self, app: App) -> None:
        """A job naming a registered program optimizes it through the app's LM and, with
        deploy, installs the result as that program's next version."""
        await app.register("qa", {"module": "Predict", "signature": "question -> answer"})
        rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(6)]
        job_id = await app.submit_optimization(
            {
                "optimizer": "LabeledFewShot",
                "params": {"k": 3},
                "program": "qa",
                "trainset": rows,
                "input_keys": ["question"],
                "metric": "tests.services._optimization_support:always",
                "deploy": True,
            }
        )
        status = await _settled(app, job_id)
        assert status.status == "completed", status
        assert status.version == 2
        info = await app.describe("qa")
        assert (info.version, info.demos) == (2, 3)
        assert [j.id for j in await app.list_optimizations()] == [job_id]

    async def test_an_inline_two_step_program_gets_the_apps_lms(
        self, app: App, lm_server: LMServer
    ) -> None:
        """A job whose inline spec names a two_step adapter builds its extraction model from
        the app's LMs, as a registered program does, and completes."""
        job_id = await app.submit_optimization(
            {
                "optimizer": "BootstrapFewShot",
                "params": {"max_bootstrapped_demos": 2, "max_labeled_demos": 2},
                "program": {
                    "module": "Predict",
                    "signature": "question -> answer",
                    "adapter": {"name": "two_step", "extraction_lm": "anthropic/claude-3-5-haiku"},
                },
                "trainset": [{"question": f"q{i}", "answer": f"a{i}"} for i in range(4)],
                "input_keys": ["question"],
                "metric": "tests.services._optimization_support:always",
            }
        )
        status = await _settled(app, job_id)
        assert status.status == "completed", status
        program = await app.optimization_result(job_id)
        (predictor,) = [p for _, p in program.named_predictors()]
        assert predictor.adapter.extraction_model.model == "anthropic/claude-3-5-haiku"
        assert lm_server.stats().by_path["/v1/messages"] > 0  # the extraction vendor answered

    async def test_an_unknown_extraction_vendor_is_refused_at_submit(self, app: App) -> None:
        """An inline two_step spec naming a vendor the app has no provider for is refused
        when submitted, typed, as a registration would be."""
        spec = {
            "optimizer": "LabeledFewShot",
            "program": {
                "module": "Predict",
                "signature": "question -> answer",
                "adapter": {"name": "two_step", "extraction_lm": "nowhere/model"},
            },
            "trainset": [{"question": "q", "answer": "a"}],
            "input_keys": ["question"],
            "metric": "tests.services._optimization_support:always",
        }
        with pytest.raises(UnknownProvider, match=r"nowhere"):
            await app.submit_optimization(spec)
        assert await app.list_optimizations() == []


async def _settled(app: App, job_id: str) -> OptimizationStatus:
    """The job's status once it has completed or failed (waiting on its event, not a clock)."""
    ended = asyncio.Event()

    def on_end(event: Event) -> None:
        if event.data.get("optimization_id") == job_id:
            ended.set()

    remove = app.events.subscribe(on_end, [OPTIMIZATION_COMPLETED, OPTIMIZATION_FAILED])
    try:
        if (await app.optimization_status(job_id)).status == "running":
            await ended.wait()
    finally:
        remove()
    # The worker tells the coordinator before this call reaches it: the status is final.
    return await app.optimization_status(job_id)


class TestProviderHealth:
    async def test_each_started_vendor_with_its_breaker(self, app: App) -> None:
        """Every started provider is reported running with a closed breaker."""
        health = app.provider_health()
        assert set(health) == {"openai", "anthropic", "local"}
        assert all(h.running and h.breaker == "closed" for h in health.values())

    async def test_a_stopped_provider_is_not_running(self, app: App) -> None:
        """A provider whose actor is gone shows as not running."""
        from lmvisor.runtime.supervisor import terminate_child
        from lmvisor.services.lm_provider import provider_name

        ref = app.runtime.whereis(provider_name("local"))
        supervisor = app.runtime.whereis("lm_providers")
        assert ref is not None and supervisor is not None
        await terminate_child(supervisor, ref)
        assert not app.provider_health()["local"].running
