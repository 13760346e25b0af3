"""ReAct, MultiHop, BestOfN, Refine, MultiChainComparison and Parallel on the scripted LM."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest

from lmvisor.programs.best_of_n import BestOfN, Refine
from lmvisor.programs.chain_of_thought import ChainOfThought
from lmvisor.programs.errors import AdapterParseError
from lmvisor.programs.example import Example, Prediction
from lmvisor.programs.lm import LMRequest
from lmvisor.programs.multi_chain_comparison import MultiChainComparison
from lmvisor.programs.multihop import MultiHop
from lmvisor.programs.parallel import Parallel
from lmvisor.programs.predict import Predict
from lmvisor.programs.react import ReAct
from lmvisor.programs.settings import context
from lmvisor.providers.errors import ContextWindowExceeded
from lmvisor.runtime.deadline import check_deadline, deadline
from lmvisor.runtime.errors import DeadlineExceeded
from lmvisor.testing.scripted_lm import ScriptedLM


def _reply(**values: Any) -> str:
    parts = [
        f"[[ ## {k} ## ]]\n{json.dumps(v) if isinstance(v, dict | list) else v}"
        for k, v in values.items()
    ]
    return "\n\n".join([*parts, "[[ ## completed ## ]]"])


def lookup(city: str) -> str:
    """Find the country of a city."""
    if city == "Atlantis":
        raise KeyError("no such city")
    return f"{city} is in Germany"


class TestReAct:
    async def test_tool_then_finish(self) -> None:
        """The agent calls a tool, sees its observation, finishes and extracts the answer."""
        lm = ScriptedLM(
            [
                _reply(
                    next_thought="look it up",
                    next_tool_name="lookup",
                    next_tool_args={"city": "Berlin"},
                ),
                _reply(next_thought="done", next_tool_name="finish", next_tool_args={}),
                _reply(reasoning="Berlin is in Germany", answer="Germany"),
            ]
        )
        agent = ReAct("question -> answer", tools=[lookup], max_iters=5)
        with context(lm=lm):
            pred = await agent(question="Where is Berlin?")
        assert pred.answer == "Germany"
        assert pred.trajectory["observation_0"] == "Berlin is in Germany"
        assert pred.trajectory["observation_1"] == "Completed."
        assert (
            "[[ ## observation_0 ## ]]\nBerlin is in Germany"
            in lm.requests[1].messages[-1]["content"]
        )
        assert (
            "(1) lookup, whose description is <desc>Find the country of a city.</desc>"
            in (lm.requests[0].messages[0]["content"])
        )
        assert pred.usage == lm.total_usage()

    async def test_tool_error_is_observation(self) -> None:
        """A tool's error goes back to the LM as the observation."""
        lm = ScriptedLM(
            [
                _reply(
                    next_thought="t", next_tool_name="lookup", next_tool_args={"city": "Atlantis"}
                ),
                _reply(next_thought="t", next_tool_name="finish", next_tool_args={}),
                _reply(reasoning="r", answer="unknown"),
            ]
        )
        with context(lm=lm):
            pred = await ReAct("question -> answer", tools=[lookup])(question="q")
        assert (
            pred.trajectory["observation_0"]
            == "Execution error in lookup: KeyError: 'no such city'"
        )
        assert (
            "[[ ## observation_0 ## ]]\nExecution error in lookup: KeyError: 'no such city'"
            in lm.requests[1].messages[-1]["content"]
        )
        assert pred.answer == "unknown"

    async def test_max_iters(self) -> None:
        """After max_iters steps the agent extracts from the trajectory it has."""
        step = _reply(next_thought="t", next_tool_name="lookup", next_tool_args={"city": "Bonn"})
        lm = ScriptedLM([step, step, _reply(reasoning="r", answer="Germany")])
        with context(lm=lm):
            pred = await ReAct("question -> answer", tools=[lookup], max_iters=2)(question="q")
        assert lm.calls == 3
        assert pred.answer == "Germany"

    def test_validation(self) -> None:
        """Duplicate tool names and max_iters < 1 are rejected."""
        with pytest.raises(ValueError, match=r"^duplicate tool name 'lookup'$"):
            ReAct("q -> a", tools=[lookup, lookup])
        with pytest.raises(ValueError, match=r"^max_iters must be >= 1$"):
            ReAct("q -> a", tools=[lookup], max_iters=0)


class TestMultiHop:
    async def test_decompose_answer_synthesize(self) -> None:
        """Sub-questions are answered concurrently, then synthesized into the answer."""
        both_pending = asyncio.Event()
        pending = 0

        async def reply(request: LMRequest) -> str:
            nonlocal pending
            system = request.messages[0]["content"]
            user = request.messages[-1]["content"]
            if "`sub_questions` (list[str])" in system and "sub_answers" not in system:
                return _reply(sub_questions=["Where is Berlin?", "Where is Paris?"])
            if "sub_answers" in system:
                return _reply(reasoning="combine", answer="Germany and France")
            pending += 1
            if pending == 2:
                both_pending.set()
            await both_pending.wait()  # both sub-questions are in flight together
            return _reply(reasoning="r", answer="Germany" if "Berlin" in user else "France")

        lm = ScriptedLM(reply)
        with context(lm=lm):
            pred = await MultiHop("question -> answer")(question="Where are Berlin and Paris?")
        assert pred.answer == "Germany and France"
        assert pred.sub_answers == ["Germany", "France"]
        assert lm.calls == 4
        assert '["Germany", "France"]' in lm.requests[-1].messages[-1]["content"]


class TestBestOfN:
    async def test_stops_at_threshold(self) -> None:
        """Attempts stop at the first reward reaching the threshold, at temperature 1.0."""
        lm = ScriptedLM([_reply(answer="bad"), _reply(answer="good"), _reply(answer="unused")])
        best = BestOfN(
            Predict("question -> answer"), 3, lambda args, p: float(p.answer == "good"), 1.0
        )
        with context(lm=lm):
            pred = await best(question="q")
        assert pred.answer == "good"
        assert lm.calls == 2
        assert all(r.params["temperature"] == 1.0 for r in lm.requests)
        assert pred.usage == lm.total_usage()

    async def test_best_when_none_reach(self) -> None:
        """Without a success, the best-rewarded prediction is returned."""
        lm = ScriptedLM([_reply(answer="aa"), _reply(answer="aaaa"), _reply(answer="a")])
        best = BestOfN(Predict("question -> answer"), 3, lambda a, p: len(p.answer), 10)
        with context(lm=lm):
            assert (await best(question="q")).answer == "aaaa"

    async def test_failures(self) -> None:
        """Failed attempts are tolerated up to fail_count, then the error is raised."""
        lm = ScriptedLM([RuntimeError("one"), _reply(answer="ok")])
        best = BestOfN(Predict("question -> answer"), 2, lambda a, p: 1.0, 1.0)
        with context(lm=lm):
            assert (await best(question="q")).answer == "ok"
        strict = BestOfN(Predict("question -> answer"), 3, lambda a, p: 1.0, 1.0, fail_count=1)
        with (
            context(lm=ScriptedLM([RuntimeError("boom")])),
            pytest.raises(RuntimeError, match="boom"),
        ):
            await strict(question="q")

    async def test_async_reward(self) -> None:
        """An async reward function is awaited."""

        async def reward(args: dict[str, Any], pred: Prediction) -> float:
            return 1.0

        with context(lm=ScriptedLM()):
            assert (await BestOfN(Predict("q -> a"), 2, reward, 0.5)(q="x")).a


class TestRefine:
    async def test_feedback_reaches_next_attempt(self) -> None:
        """After a miss the LM's advice for the predictor is passed to it as `hint_`."""
        lm = ScriptedLM(
            [
                _reply(answer="wrong"),
                _reply(discussion="not a number", advice='{"self": "Answer with a number."}'),
                _reply(answer="4"),
            ]
        )
        refine = Refine(Predict("question -> answer"), 3, lambda a, p: float(p.answer == "4"), 1.0)
        with context(lm=lm):
            pred = await refine(question="2+2?")
        assert pred.answer == "4"
        assert "hint_" not in lm.requests[0].messages[-1]["content"]
        assert "reward_value" in lm.requests[1].messages[-1]["content"]
        assert "[[ ## hint_ ## ]]\nAnswer with a number." in lm.requests[2].messages[-1]["content"]

    async def test_botched_advice_fails_the_attempt_not_the_search(self) -> None:
        """Advice that does not parse counts as a failed attempt; the search goes on, as DSPy."""
        answers = iter(["wrong", "4"])

        def answer(request: LMRequest) -> str:
            if "reward_value" in request.messages[-1]["content"]:
                return "I refuse to follow the format."
            return _reply(answer=next(answers))

        refine = Refine(Predict("question -> answer"), 3, lambda a, p: float(p.answer == "4"), 1.0)
        with context(lm=ScriptedLM(answer)):
            assert (await refine(question="2+2?")).answer == "4"
        refine = Refine(Predict("question -> answer"), 3, lambda a, p: 0.0, 1.0, fail_count=1)
        answers = iter(["wrong", "4"])
        with context(lm=ScriptedLM(answer)), pytest.raises(AdapterParseError):
            await refine(question="2+2?")

    async def test_botched_advice_keeps_the_earlier_advice(self) -> None:
        """After good advice and then a botched one, the next attempt still gets the good
        advice as its hint, as DSPy's `advice` variable keeps its value."""
        prompts: list[str] = []
        advice = iter([_reply(discussion="d", advice='{"self": "Answer with a number."}')])

        def answer(request: LMRequest) -> str:
            content = request.messages[-1]["content"]
            if "reward_value" in content:
                return next(advice, "I refuse to follow the format.")
            prompts.append(content)
            return _reply(answer="wrong")

        refine = Refine(Predict("question -> answer"), 3, lambda a, p: 0.0, 1.0)
        with context(lm=ScriptedLM(answer)):
            await refine(question="2+2?")
        assert ["Answer with a number." in prompt for prompt in prompts] == [False, True, True]

    async def test_reward_judge_does_not_see_hint(self) -> None:
        """An LM judge inside reward_fn never gets the feedback hint meant for the module."""
        judge = Predict("answer -> score: float")
        judge.lm = judge_lm = ScriptedLM([_reply(score=0.0), _reply(score=1.0)])

        async def reward(args: dict[str, Any], pred: Prediction) -> float:
            return float((await judge(answer=pred.answer)).score)

        lm = ScriptedLM(
            [
                _reply(answer="wrong"),
                _reply(discussion="wrong", advice='{"self": "Try 4."}'),
                _reply(answer="4"),
            ]
        )
        with context(lm=lm):
            pred = await Refine(Predict("question -> answer"), 3, reward, 1.0)(question="2+2?")
        assert pred.answer == "4"
        assert "hint_" in lm.requests[2].messages[-1]["content"]
        assert all("hint_" not in str(r.messages) for r in judge_lm.requests)


class TestMultiChainComparison:
    async def test_attempts_in_prompt(self) -> None:
        """Each attempt is shown to the LM; the result carries the rationale and answer."""
        lm = ScriptedLM([_reply(rationale="both agree", answer="4")])
        mcc = MultiChainComparison("question -> answer", M=2)
        completions = [{"reasoning": "add", "answer": "4"}, Example(reasoning="sum", answer="5")]
        with context(lm=lm):
            pred = await mcc(completions=completions, question="2+2?")
        user = lm.requests[0].messages[-1]["content"]
        assert (
            "[[ ## reasoning_attempt_1 ## ]]\n"
            "«I'm trying to add I'm not sure but my prediction is 4»" in user
        )
        assert "my prediction is 5»" in user
        assert lm.requests[0].params["temperature"] == 0.7
        assert pred.rationale == "both agree"

    async def test_wrong_count(self) -> None:
        """A number of completions other than M is a ValueError."""
        with pytest.raises(ValueError, match=r"^expected 3 completions, got 1$"):
            await MultiChainComparison("q -> a")(completions=[{"reasoning": "r", "a": "x"}], q="x")

    async def test_endless_completions(self) -> None:
        """An endless iterable of completions is refused after M + 1, never drained."""
        taken = itertools.count()

        def endless() -> Iterator[dict[str, str]]:
            while True:
                next(taken)
                yield {"reasoning": "r", "a": "x"}

        with pytest.raises(ValueError, match=r"^expected 3 completions, got more$"):
            await MultiChainComparison("q -> a")(completions=endless(), q="x")
        assert next(taken) == 4  # M + 1 read, no more

    async def test_completion_missing_reasoning(self) -> None:
        """A completion without a reasoning (a chain that failed to parse) is named."""
        completions = [{"reasoning": "r", "a": "x"}, {"a": "y"}, {"reasoning": "r", "a": "z"}]
        with pytest.raises(ValueError, match=r"^each completion needs a reasoning and 'a'$"):
            await MultiChainComparison("q -> a")(completions=completions, q="x")


class TestParallel:
    async def test_bounded_and_ordered(self) -> None:
        """Pairs run at most `concurrency` at once, results in order, failures recorded."""
        in_flight = peak = 0
        release = asyncio.Event()

        async def reply(request: LMRequest) -> str:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            if peak == 2:
                release.set()
            await release.wait()
            in_flight -= 1
            if "boom" in request.messages[-1]["content"]:
                raise RuntimeError("boom")
            return "[[ ## answer ## ]]\nok"

        predict = Predict("question -> answer")
        pairs = [(predict, {"question": str(i)}) for i in range(5)]
        pairs.append((predict, Example(question="boom").with_inputs("question")))
        with context(lm=ScriptedLM(reply)):
            result = await Parallel(concurrency=2)(pairs)
        assert peak == 2
        assert [r.answer for r in result.results[:5]] == ["ok"] * 5
        assert result.results[5] is None
        assert len(result.exceptions) == 1

    async def test_max_errors(self) -> None:
        """One failure more than max_errors cancels the rest and raises."""
        cot = ChainOfThought("question -> answer")
        with (
            context(lm=ScriptedLM([RuntimeError("down")] * 3)),
            pytest.raises(RuntimeError, match="down"),
        ):
            await Parallel(concurrency=1, max_errors=0)(
                [(cot, {"question": "1"}), (cot, {"question": "2"})]
            )

    def test_validation(self) -> None:
        """Bad concurrency or max_errors are rejected."""
        with pytest.raises(ValueError, match=r"^concurrency must be >= 1$"):
            Parallel(concurrency=0)
        with pytest.raises(ValueError, match=r"^max_errors must be >= 0$"):
            Parallel(max_errors=-1)


class TestReActNative:
    async def test_native_calls(self) -> None:
        """With native_tool_calls the tools go in the request and calls come back natively."""
        from lmvisor.programs.lm import LMResponse, ToolCall

        step = LMResponse(
            outputs=["[[ ## next_thought ## ]]\nlook both up\n\n[[ ## completed ## ]]"],
            tool_calls=(
                ToolCall(id="c1", name="lookup", arguments={"city": "Berlin"}),
                ToolCall(id="c2", name="lookup", arguments={"city": "Munich"}),
            ),
        )
        done = LMResponse(outputs=["[[ ## next_thought ## ]]\ndone\n\n[[ ## completed ## ]]"])
        lm = ScriptedLM([step, done, _reply(reasoning="both German", answer="Germany")])
        react = ReAct("question -> answer", tools=[lookup], native_tool_calls=True)
        with context(lm=lm):
            pred = await react(question="Where are Berlin and Munich?")
        assert pred.answer == "Germany"
        tools = lm.requests[0].params["tools"]
        assert [t["function"]["name"] for t in tools] == ["lookup", "finish"]
        assert "lookup" not in lm.requests[0].messages[0]["content"].split("objective is:")[1]
        assert pred.trajectory["observation_0_0"] == "Berlin is in Germany"
        assert pred.trajectory["observation_0_1"] == "Munich is in Germany"
        assert pred.trajectory["tool_name_1"] == "finish"


class TestRefineLikeDSPy:
    async def test_unblamed_predictor_gets_na(self) -> None:
        """A predictor the advice does not name is told "N/A"."""
        from lmvisor.programs.module import Module

        class Two(Module):
            def __init__(self) -> None:
                super().__init__()
                self.first = Predict("question -> draft")
                self.second = Predict("draft -> answer")

            async def forward(self, question: str) -> Any:
                draft = (await self.first(question=question)).draft
                return await self.second(draft=draft)

        lm = ScriptedLM(
            [
                _reply(draft="d1"),
                _reply(answer="wrong"),
                _reply(discussion="second erred", advice={"second": "Say 4."}),
                _reply(draft="d2"),
                _reply(answer="4"),
            ]
        )
        refine = Refine(Two(), 2, lambda a, p: float(p.answer == "4"), 1.0)
        with context(lm=lm):
            assert (await refine(question="2+2?")).answer == "4"
        feedback = lm.requests[2].messages[-1]["content"]
        assert '"module_name": "first"' in feedback and '"module_name": "second"' in feedback
        assert "[[ ## hint_ ## ]]\nN/A" in lm.requests[3].messages[-1]["content"]
        assert "[[ ## hint_ ## ]]\nSay 4." in lm.requests[4].messages[-1]["content"]

    async def test_no_advice_after_last_attempt(self) -> None:
        """The last attempt is not followed by an advice call."""
        lm = ScriptedLM([_reply(answer="x"), _reply(discussion="d", advice={}), _reply(answer="y")])
        refine = Refine(Predict("question -> answer"), 2, lambda a, p: 0.0, 1.0)
        with context(lm=lm):
            await refine(question="q")
        assert lm.calls == 3

    def test_state_is_the_modules_only(self) -> None:
        """Refine saves only its module's predictors (as DSPy), not a judge in reward_fn."""

        class Judge(ChainOfThought):
            async def __call__(self, args: Any, pred: Any) -> float:  # type: ignore[override]
                return 1.0

        refine = Refine(Predict("question -> answer"), 2, Judge("answer -> score: float"), 1.0)
        assert [name for name, _ in refine.named_predictors()] == ["module"]

    async def test_best_attempt_joins_outer_trace(self) -> None:
        """Under trace(), only the best attempt's predictor calls are recorded."""
        from lmvisor.programs.trace import trace

        lm = ScriptedLM([_reply(answer="bad"), _reply(answer="4")])
        with context(lm=lm), trace() as entries:
            await BestOfN(
                Predict("question -> answer"), 2, lambda a, p: float(p.answer == "4"), 1.0
            )(question="2+2?")
        assert [e.prediction.answer for e in entries] == ["4"]


class TestTwoStep:
    async def test_extraction_failure_is_named(self) -> None:
        """When the extraction model's answer does not parse, the error says so."""
        from lmvisor.programs.adapters import TwoStepAdapter
        from lmvisor.programs.errors import AdapterParseError

        extractor = ScriptedLM(["nothing useful", "still nothing"])
        with (
            context(lm=ScriptedLM(["free text"]), adapter=TwoStepAdapter(extractor)),
            pytest.raises(AdapterParseError, match=r"the extraction model's answer did not parse"),
        ):
            await Predict("question -> answer: int")(question="q")

    async def test_aparse(self) -> None:
        """aparse extracts from a completion with the extraction model alone."""
        from lmvisor.programs.adapters import TwoStepAdapter
        from lmvisor.programs.signature import Signature

        adapter = TwoStepAdapter(ScriptedLM([_reply(answer=7)]))
        assert await adapter.aparse(Signature("q -> answer: int"), "it is 7") == {"answer": 7}
        with pytest.raises(TypeError, match=r"TwoStepAdapter parses with an LM call"):
            adapter.parse(Signature("q -> answer: int"), "it is 7")


class TestRollouts:
    async def test_each_attempt_has_its_rollout_id(self) -> None:
        """Attempts count rollout ids up from the settings' one, so a cache samples anew."""
        lm = ScriptedLM([_reply(answer="a"), _reply(answer="b"), _reply(answer="c")])
        best = BestOfN(Predict("question -> answer"), 3, lambda a, p: 0.0, 1.0)
        with context(lm=lm, lm_params={"rollout_id": 5}):
            await best(question="q")
        assert [r.params["rollout_id"] for r in lm.requests] == [5, 6, 7]
        assert {r.params["temperature"] for r in lm.requests} == {1.0}


class _Unshowable:
    def __str__(self) -> str:
        raise RuntimeError("no text")

    __repr__ = __str__


class _Mute(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


def unshowable() -> Any:
    """Return an object that cannot be written."""
    return _Unshowable()


def mute() -> str:
    """Raise an error whose message cannot be written."""
    raise _Mute


async def stuck(city: str) -> str:
    """Never answer."""
    await asyncio.sleep(3600)
    return city


def _window_error() -> ContextWindowExceeded:
    return ContextWindowExceeded(provider="openai", status=400, detail="too many tokens")


class TestReActHostile:
    async def test_unshowable_results_and_errors_are_observations(self) -> None:
        """A result or error message whose str raises becomes an error observation."""
        lm = ScriptedLM(
            [
                _reply(next_thought="t", next_tool_name="unshowable", next_tool_args={}),
                _reply(next_thought="t", next_tool_name="mute", next_tool_args={}),
                _reply(next_thought="t", next_tool_name="finish", next_tool_args={}),
                _reply(reasoning="r", answer="a"),
            ]
        )
        with context(lm=lm):
            pred = await ReAct("question -> answer", tools=[unshowable, mute])(question="q")
        assert pred.trajectory["observation_0"] == (
            "Execution error in unshowable: its result cannot be shown: RuntimeError: no text"
        )
        assert pred.trajectory["observation_1"] == (
            "Execution error in mute: _Mute: <message cannot be shown>"
        )
        assert pred.answer == "a"

    async def test_hung_tool_ends_the_run_at_the_deadline(self) -> None:
        """A tool hung past the deadline ends the run with DeadlineExceeded; no LM call follows."""
        lm = ScriptedLM(
            [_reply(next_thought="t", next_tool_name="stuck", next_tool_args={"city": "x"})]
        )
        agent = ReAct("question -> answer", tools=[stuck])
        with context(lm=lm), deadline(0.01), pytest.raises(DeadlineExceeded):
            await agent(question="q")
        assert lm.calls == 1

    async def test_context_window_drops_the_oldest_call(self) -> None:
        """Over the window, the oldest tool call leaves the trajectory and the step is retried."""
        step = _reply(next_thought="t", next_tool_name="lookup", next_tool_args={"city": "Bonn"})

        def answer(request: LMRequest) -> Any:
            prompt = request.messages[-1]["content"]
            if "observation_0" in prompt and "observation_1" in prompt:
                return _window_error()
            if "reasoning" in request.messages[0]["content"]:
                return _reply(reasoning="r", answer="Germany")
            return step

        lm = ScriptedLM(answer)
        with context(lm=lm):
            pred = await ReAct("question -> answer", tools=[lookup], max_iters=3)(question="q")
        assert sorted(k for k in pred.trajectory if k.startswith("observation")) == [
            "observation_1",
            "observation_2",
        ]
        assert pred.answer == "Germany"

    async def test_every_failure_drops_a_call_the_third_too(self) -> None:
        """As DSPy: with four calls made and a step that never fits, each of its three tries
        drops the oldest call, the third's too, so the extraction sees one call (the last)."""
        step = _reply(next_thought="t", next_tool_name="lookup", next_tool_args={"city": "Bonn"})
        steps = iter(range(100))

        def answer(request: LMRequest) -> Any:
            if "reasoning" in request.messages[0]["content"]:
                return _reply(reasoning="r", answer="Germany")
            return step if next(steps) < 4 else _window_error()

        lm = ScriptedLM(answer)
        with context(lm=lm):
            pred = await ReAct("question -> answer", tools=[lookup], max_iters=6)(question="q")
        assert [k for k in pred.trajectory if k.startswith("observation")] == ["observation_3"]
        assert (lm.calls, pred.answer) == (8, "Germany")

    async def test_a_tools_own_deadline_is_an_observation(self) -> None:
        """A tool whose own tighter deadline passes (the caller's has time left) fails only
        that step, as any tool error; the run goes on."""

        async def impatient(city: str) -> str:
            with deadline(0.001):
                await asyncio.sleep(0.05)
                check_deadline("the tool's lookup")
            return city

        step = _reply(next_thought="t", next_tool_name="impatient", next_tool_args={"city": "x"})
        done = _reply(next_thought="t", next_tool_name="finish", next_tool_args={})
        lm = ScriptedLM([step, done, _reply(reasoning="r", answer="a")])
        with context(lm=lm):
            pred = await ReAct("question -> answer", tools=[impatient])(question="q")
        assert pred.trajectory["observation_0"].startswith(
            "Execution error in impatient: DeadlineExceeded: deadline exceeded during the tool's"
        )
        assert pred.answer == "a"

    async def test_context_window_with_one_call_ends_the_loop(self) -> None:
        """One tool call over the window ends the loop; the extraction's error stands."""
        step = _reply(next_thought="t", next_tool_name="lookup", next_tool_args={"city": "Bonn"})
        lm = ScriptedLM([step, _window_error(), _window_error()])
        with context(lm=lm), pytest.raises(ContextWindowExceeded):
            await ReAct("question -> answer", tools=[lookup])(question="q")
        assert lm.calls == 3

    async def test_max_iters_input_is_checked(self) -> None:
        """A per-call max_iters that is no count is refused by name; "0" is a count."""
        lm = ScriptedLM([_reply(reasoning="r", answer="a")])
        agent = ReAct("question -> answer", tools=[lookup])
        with pytest.raises(ValueError, match=r"^max_iters must be an int >= 0, got 'many'$"):
            await agent(question="q", max_iters="many")
        with context(lm=lm):
            pred = await agent(question="q", max_iters="0")
        assert (pred.trajectory, lm.calls) == ({}, 1)


class TestBestOfNRewards:
    async def test_nan_never_outranks_a_number(self) -> None:
        """A NaN reward loses to a later attempt with a real one (DSPy never picks NaN)."""
        rewards = iter([math.nan, 0.5, 0.2])
        lm = ScriptedLM([_reply(answer=f"a{i}") for i in range(3)])
        best = BestOfN(Predict("q -> answer"), 3, lambda i, p: next(rewards), 1.0)
        with context(lm=lm):
            assert (await best(q="x")).answer == "a1"

    async def test_non_number_reward_is_named(self) -> None:
        """A reward_fn returning None fails the attempt with a TypeError naming the type."""
        lm = ScriptedLM([_reply(answer="a")])
        best = BestOfN(Predict("q -> answer"), 1, lambda i, p: None, 1.0)
        with (
            context(lm=lm),
            pytest.raises(TypeError, match=r"^reward_fn returned NoneType, not a number$"),
        ):
            await best(q="x")
