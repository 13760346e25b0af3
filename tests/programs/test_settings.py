"""Settings: configure/context on a ContextVar — immutable, nested, isolated per task."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses

import pytest

from lmvisor.programs.adapters import JSONAdapter
from lmvisor.programs.lm import LMRequest
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import Settings, configure, context, current_settings
from lmvisor.testing.scripted_lm import ScriptedLM


class TestSettingsObject:
    def test_immutable(self) -> None:
        """The settings object cannot be changed in place."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            current_settings().lm = None  # type: ignore[misc]

    def test_unknown_setting(self) -> None:
        """An unknown name is a TypeError naming it."""
        with pytest.raises(TypeError, match=r"^unknown setting 'lmm'$"):
            Settings().evolve(lmm=None)
        with pytest.raises(TypeError, match=r"^unknown setting 'bogus'$"), context(bogus=1):
            pass


class TestConfigure:
    def test_configure_sets_current_context(self) -> None:
        """configure replaces the settings of the running context only."""
        lm = ScriptedLM()

        def body() -> None:
            configure(lm=lm, adapter=JSONAdapter())
            assert current_settings().lm is lm
            assert isinstance(current_settings().adapter, JSONAdapter)

        contextvars.copy_context().run(body)
        assert current_settings().lm is not lm

    async def test_configure_inherited_by_new_tasks(self) -> None:
        """Tasks started after configure see the configured LM."""
        lm = ScriptedLM()

        async def body() -> object:
            configure(lm=lm)
            return await asyncio.create_task(_current_lm())

        assert await asyncio.create_task(body()) is lm


async def _current_lm() -> object:
    return current_settings().lm


class TestContext:
    def test_nested_overrides(self) -> None:
        """Inner overrides win and are undone on exit, restoring the outer ones."""
        a, b = ScriptedLM(model="a/a"), ScriptedLM(model="b/b")
        with context(lm=a, lm_params={"temperature": 0.1}):
            with context(lm=b):
                assert current_settings().lm is b
                assert current_settings().lm_params == {"temperature": 0.1}
            assert current_settings().lm is a
        assert current_settings().lm is None

    def test_restored_after_error(self) -> None:
        """An exception inside the block still restores the settings."""
        with pytest.raises(RuntimeError), context(lm=ScriptedLM()):
            raise RuntimeError("boom")
        assert current_settings().lm is None

    async def test_thousand_concurrent_tasks_isolated(self) -> None:
        """1,000 tasks with their own LMs, all in flight at once, only call their own LM."""
        n = 1000
        all_in_flight = asyncio.Event()
        in_flight = 0

        async def reply(request: LMRequest) -> str:
            nonlocal in_flight
            in_flight += 1
            if in_flight == n:
                all_in_flight.set()
            await all_in_flight.wait()  # every request is pending before any returns
            return f"[[ ## answer ## ]]\n{request.model}"

        lms = [ScriptedLM(reply, model=f"lm/{i}") for i in range(n)]
        predict = Predict("question -> answer")

        async def one(i: int) -> str:
            with context(lm=lms[i]):
                pred = await predict(question=f"q{i}")
                assert current_settings().lm is lms[i]
                return str(pred.answer)

        answers = await asyncio.gather(*(one(i) for i in range(n)))
        assert answers == [f"lm/{i}" for i in range(n)]
        assert all(lm.calls == 1 for lm in lms)
        assert current_settings().lm is None
