"""Tests for graceful degradation (lmvisor.services.module_execution): the fallback chain."""

from __future__ import annotations

import pytest

from lmvisor.programs.predict import Predict
from lmvisor.providers.errors import BadRequestError
from lmvisor.runtime.observe.names import CACHE_STALE_SERVED, FALLBACK_STRATEGY_SUCCESS
from lmvisor.services.app import App
from lmvisor.services.errors import AllStrategiesFailed, CacheMiss
from lmvisor.services.module_options import ModuleOptions, parse_module_options
from lmvisor.testing.lm_server import FaultRule, LMServer

QA = {"module": "Predict", "signature": "question -> answer", "lm": "openai/gpt-4o-mini"}
NO_RETRIES = {name: {"max_retries": 0} for name in ("openai", "anthropic")}


def _fail(server: LMServer, model: str, status: int = 500) -> None:
    server.add_fault(FaultRule(kind="status", status=status, model=model))


def _options(app: App, **overrides: object) -> dict[str, object]:
    fallback = Predict("question -> answer")
    fallback.lm = app.lm("openai/gpt-4o")
    options: dict[str, object] = {
        "allow_stale": True,
        "fallback": fallback,
        "fallback_lm": "anthropic/claude-3-5-haiku-latest",
        "default": {"answer": "I don't know."},
    }
    options.update(overrides)
    return options


class TestOptions:
    def test_strategies_follow_the_fixed_order(self) -> None:
        """Only configured fallbacks are tried, always stale, module, cheaper model, default."""
        options = ModuleOptions(default={"a": 1}, fallback_lm="x/y", allow_stale=True)
        assert options.strategies() == ("stale_cache", "fallback_lm", "default")
        assert ModuleOptions().strategies() == ()

    def test_fallback_spec_is_built(self) -> None:
        """A fallback given as a spec becomes a program; a bad one names its field."""
        options = parse_module_options({"fallback": {"module": "Predict", "signature": "a -> b"}})
        assert isinstance(options.fallback, Predict)
        assert options.to_dict()["fallback"]["signature"] == "a: str -> b: str"

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"allow_stale": "yes"}, "^invalid options.allow_stale: must be true or false$"),
            ({"fallback_lm": "gpt"}, "^invalid options.fallback_lm: must be 'vendor/model'$"),
            (
                {"lm": "openai/" + "x" * 100_000},
                "^invalid options.lm: must be at most 256 characters, got 100007$",
            ),
            ({"default": ["x"]}, "^invalid options.default: must be an object"),
            ({"fallback": 3}, "^invalid options.fallback: must be a Module or a program spec$"),
        ],
    )
    def test_bad_options_name_their_field(self, data: dict[str, object], message: str) -> None:
        """Malformed options are ServiceInputErrors naming the option."""
        with pytest.raises(ValueError, match=message):
            parse_module_options(data)


@pytest.mark.lmvisor_config(providers=NO_RETRIES)
class TestChain:
    async def test_a_simpler_module_answers_when_the_program_fails(
        self, app: App, lm_server: LMServer
    ) -> None:
        """With nothing cached, the stale strategy misses and the simpler module answers."""
        await app.register("qa", QA, options=_options(app))
        _fail(lm_server, "gpt-4o-mini")
        execution = await app.run("qa", {"question": "2+2?"})
        assert execution.strategy == "fallback_module"
        assert [name for name, _ in execution.failures] == ["primary", "stale_cache"]
        assert "CacheMiss" in execution.failures[1][1]
        [event] = await app.events.query(type=FALLBACK_STRATEGY_SUCCESS)
        assert event.data == {
            "module_id": "qa",
            "strategy": "fallback_module",
            "error": "ServerError",
        }

    async def test_then_a_cheaper_model_then_the_default(
        self, app: App, lm_server: LMServer
    ) -> None:
        """Each fallback is tried in order; the first that answers wins."""
        await app.register("qa", QA, options=_options(app))
        _fail(lm_server, "gpt-4o-mini")
        _fail(lm_server, "gpt-4o")
        assert (await app.run("qa", {"question": "a"})).strategy == "fallback_lm"
        _fail(lm_server, "claude-3-5-haiku-latest")
        execution = await app.run("qa", {"question": "b"})
        assert execution.strategy == "default"
        assert execution.prediction.answer == "I don't know."
        assert [n for n, _ in execution.failures] == [
            "primary",
            "stale_cache",
            "fallback_module",
            "fallback_lm",
        ]
        strategies = [
            e.data["strategy"] for e in await app.events.query(type=FALLBACK_STRATEGY_SUCCESS)
        ]
        assert strategies == ["fallback_lm", "default"]

    async def test_all_strategies_failing_raise_every_cause(
        self, app: App, lm_server: LMServer
    ) -> None:
        """With every fallback failing, AllStrategiesFailed carries each cause in order."""
        await app.register("qa", QA, options=_options(app, default=None))
        for model in ("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku-latest"):
            _fail(lm_server, model)
        with pytest.raises(
            AllStrategiesFailed, match=r"^program 'qa' failed with every strategy"
        ) as e:
            await app.run("qa", {"question": "?"})
        causes = e.value.causes
        assert [name for name, _ in causes] == [
            "primary",
            "stale_cache",
            "fallback_module",
            "fallback_lm",
        ]
        assert isinstance(causes[1][1], CacheMiss)
        assert e.value.to_dict()["context"]["causes"][0][0] == "primary"

    async def test_callers_mistake_skips_the_fallbacks(self, app: App) -> None:
        """A missing input is raised at once, not answered by the default."""
        await app.register("qa", QA, options=_options(app))
        with pytest.raises(ValueError, match=r"^missing input 'question'"):
            await app.run("qa", {})


@pytest.mark.lmvisor_config(providers=NO_RETRIES, modules={"cache_ttl": 0})
class TestStale:
    async def test_stale_answer_covers_a_failed_lm_call(
        self, app: App, lm_server: LMServer
    ) -> None:
        """With allow_stale, an expired cached answer stands in for a failing vendor."""
        await app.register("qa", QA, options={"allow_stale": True})
        first = await app.run("qa", {"question": "capital of France?"})
        _fail(lm_server, "gpt-4o-mini", status=503)
        second = await app.run("qa", {"question": "capital of France?"})
        assert (second.strategy, second.stale) == ("primary", True)
        assert second.prediction.answer == first.prediction.answer
        assert len(await app.events.query(type=CACHE_STALE_SERVED)) == 1

    async def test_stale_cache_strategy_answers_when_the_program_cannot(
        self, app: App, lm_server: LMServer
    ) -> None:
        """A failure no single call may cover (a bad request) falls back to the stale cache."""
        await app.register("qa", QA, options={"allow_stale": True, "default": {"answer": "?"}})
        first = await app.run("qa", {"question": "q"})
        _fail(lm_server, "gpt-4o-mini", status=400)
        second = await app.run("qa", {"question": "q"})
        assert (second.strategy, second.stale) == ("stale_cache", True)
        assert second.prediction.answer == first.prediction.answer
        assert "BadRequestError" in second.failures[0][1]
        assert issubclass(BadRequestError, Exception)
