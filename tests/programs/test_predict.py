"""Predict and ChainOfThought against the scripted LM: requests, demos, config, usage."""

from __future__ import annotations

from typing import Any

import pytest

from lmvisor.programs.callbacks import Callback
from lmvisor.programs.chain_of_thought import ChainOfThought
from lmvisor.programs.errors import LMNotConfigured
from lmvisor.programs.example import Example
from lmvisor.programs.lm import LMCapabilities, LMResponse, Usage
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.testing.scripted_lm import ScriptedLM


def _reply(**values: Any) -> str:
    body = "\n\n".join(f"[[ ## {k} ## ]]\n{v}" for k, v in values.items())
    return body + "\n\n[[ ## completed ## ]]"


class TestPredictRequest:
    async def test_request_shape(self) -> None:
        """The request uses the LM's model, the adapter's messages and only the set params."""
        lm = ScriptedLM([_reply(answer="4")], model="openai/gpt-4o-mini")
        with context(lm=lm):
            pred = await Predict("question -> answer")(question="2+2?")
        request = lm.requests[0]
        assert request.model == "openai/gpt-4o-mini"
        assert dict(request.params) == {}
        assert request.messages[0]["role"] == "system"
        assert request.messages[-1]["content"].startswith("[[ ## question ## ]]\n2+2?")
        assert pred.answer == "4"

    async def test_params_layering(self) -> None:
        """Settings lm_params < predictor config < per-call config."""
        lm = ScriptedLM([_reply(answer="4")] * 2)
        predict = Predict("question -> answer", temperature=0.2, max_tokens=50)
        with context(lm=lm, lm_params={"temperature": 0.9, "top_p": 0.5}):
            await predict(question="q")
            await predict(question="q", config={"max_tokens": 10})
        assert dict(lm.requests[0].params) == {"temperature": 0.2, "max_tokens": 50, "top_p": 0.5}
        assert dict(lm.requests[1].params) == {"temperature": 0.2, "max_tokens": 10, "top_p": 0.5}

    async def test_lm_precedence(self) -> None:
        """A call's lm= beats the predictor's lm, which beats the settings' LM."""
        settings_lm, own_lm, call_lm = ScriptedLM(), ScriptedLM(), ScriptedLM()
        predict = Predict("question -> answer")
        with context(lm=settings_lm):
            await predict(question="q")
            predict.lm = own_lm
            await predict(question="q")
            await predict(question="q", lm=call_lm)
        assert (settings_lm.calls, own_lm.calls, call_lm.calls) == (1, 1, 1)

    async def test_parse_callback_outputs_stay_as_parsed(self) -> None:
        """Changing a prediction or its completions leaves the dict a parse callback got."""
        seen: list[dict[str, Any]] = []

        class Keep(Callback):
            def on_adapter_parse_end(
                self, call_id: str, outputs: Any, exception: BaseException | None
            ) -> None:
                seen.append(outputs)

        with context(lm=ScriptedLM([_reply(answer="4")]), callbacks=[Keep()]):
            pred = await Predict("question -> answer")(question="q")
        pred.answer = "5"
        pred.completions[0]["answer"] = "6"
        assert seen == [{"answer": "4"}]

    async def test_call_options_are_not_inputs(self) -> None:
        """demos=, config=, lm= and signature= configure the call and are not sent as inputs."""
        lm = ScriptedLM([_reply(answer="4")])
        with context(lm=ScriptedLM()):
            await Predict("question -> answer")(
                question="q",
                demos=[Example(question="d", answer="e")],
                config={"max_tokens": 5},
                lm=lm,
                signature="question -> answer",
            )
        assert dict(lm.requests[0].params) == {"max_tokens": 5}
        assert "[[ ## demos ## ]]" not in lm.requests[0].messages[-1]["content"]
        assert len(lm.requests[0].messages) == 4

    async def test_no_lm(self) -> None:
        """Without any LM the call fails with LMNotConfigured."""
        with pytest.raises(
            LMNotConfigured, match=r"^no LM configured for Predict\(question -> answer\)"
        ):
            await Predict("question -> answer")(question="q")

    async def test_missing_input(self) -> None:
        """A missing required input is a ValueError naming it; optional ones may be left out."""
        with context(lm=ScriptedLM()):
            with pytest.raises(ValueError, match=r"^missing input 'question' for signature"):
                await Predict("question -> answer")(other="x")
            pred = await Predict("question, hint: Optional[str] -> answer")(question="q")
        assert pred.answer

    async def test_n_completions(self) -> None:
        """With n=3 every completion is parsed into `completions`."""
        lm = ScriptedLM([[_reply(answer="a"), _reply(answer="b"), _reply(answer="c")]])
        with context(lm=lm):
            pred = await Predict("question -> answer", n=3)(question="q")
        assert lm.requests[0].params["n"] == 3
        assert pred.answer == "a"
        assert pred.completions.answer == ["a", "b", "c"]

    async def test_demos_are_sent(self) -> None:
        """Demos (Examples or dicts) become user/assistant turns before the request."""
        lm = ScriptedLM([_reply(answer="6")])
        predict = Predict("question -> answer")
        predict.demos = [Example(question="1+1?", answer="2"), {"question": "2+2?", "answer": "4"}]
        with context(lm=lm):
            await predict(question="3+3?")
        roles = [m["role"] for m in lm.requests[0].messages]
        assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
        assert (
            lm.requests[0].messages[2]["content"]
            == "[[ ## answer ## ]]\n2\n\n[[ ## completed ## ]]\n"
        )

    async def test_per_call_demos(self) -> None:
        """demos= on the call replaces the predictor's demos for that call."""
        lm = ScriptedLM([_reply(answer="x")])
        predict = Predict("question -> answer")
        with context(lm=lm):
            await predict(question="q", demos=[{"question": "d", "answer": "e"}])
        assert len(lm.requests[0].messages) == 4

    async def test_usage_on_prediction(self) -> None:
        """The LM's usage and cost end up on the prediction."""
        response = LMResponse(outputs=[_reply(answer="x")], usage=Usage(total_tokens=7), cost=0.01)
        with context(lm=ScriptedLM([response])):
            pred = await Predict("question -> answer")(question="q")
        assert pred.usage.total_tokens == 7
        assert pred.cost == 0.01

    async def test_subclass_forward_is_run(self) -> None:
        """A Predict subclass's own `forward` is what a call runs, usage accounted."""
        response = LMResponse(outputs=[_reply(answer="x")], usage=Usage(total_tokens=5))

        class Shouting(Predict):
            async def forward(self, **kwargs: Any) -> Any:
                pred = await super().forward(**kwargs)
                pred.answer = pred.answer.upper()
                return pred

        with context(lm=ScriptedLM([response])):
            pred = await Shouting("question -> answer")(question="q")
        assert pred.answer == "X"
        assert pred.usage.total_tokens == 5

    async def test_n_samples_at_a_sampling_temperature(self) -> None:
        """As in DSPy, n > 1 at a temperature unset or <= 0.15 is sent at 0.7; others stay."""
        lm = ScriptedLM()
        with context(lm=lm):
            await Predict("question -> answer", n=2)(question="q")
            await Predict("question -> answer", n=2, temperature=0.0)(question="q")
            await Predict("question -> answer", n=2, temperature=1.2)(question="q")
            await Predict("question -> answer", temperature=0.0)(question="q")
        temperatures = [r.params.get("temperature") for r in lm.requests]
        assert temperatures == [0.7, 0.7, 1.2, 0.0]

    async def test_cost_without_usage(self) -> None:
        """A reported cost is kept even when the LM reports no token usage."""
        response = LMResponse(outputs=[_reply(answer="x")], usage=Usage(), cost=0.25)
        with context(lm=ScriptedLM([response])):
            pred = await Predict("question -> answer")(question="q")
        assert pred.cost == 0.25

    async def test_lm_error_propagates(self) -> None:
        """An LM failure passes through unchanged (no adapter fallback)."""
        lm = ScriptedLM([TimeoutError("slow")])
        with context(lm=lm), pytest.raises(TimeoutError, match="slow"):
            await Predict("question -> answer")(question="q")
        assert lm.calls == 1

    async def test_json_adapter_capabilities(self) -> None:
        """The predictor's adapter asks json_object of an LM without schema support."""
        from lmvisor.programs.adapters import JSONAdapter

        lm = ScriptedLM(capabilities=LMCapabilities(json_schema=False))
        predict = Predict("question -> answer: int")
        predict.adapter = JSONAdapter()
        with context(lm=lm):
            pred = await predict(question="q")
        assert lm.requests[0].params["response_format"] == {"type": "json_object"}
        assert isinstance(pred.answer, int)

    def test_reset(self) -> None:
        """reset() forgets demos and the per-predictor LM."""
        predict = Predict("q -> a")
        predict.demos = [Example(q="1", a="2")]
        predict.lm = ScriptedLM()
        predict.reset()
        assert predict.demos == []
        assert predict.lm is None


class TestChainOfThought:
    async def test_reasoning_comes_first(self) -> None:
        """A reasoning output is asked for before the signature's outputs and returned."""
        lm = ScriptedLM([_reply(reasoning="add them", answer="4")])
        cot = ChainOfThought("question -> answer")
        with context(lm=lm):
            pred = await cot(question="2+2?")
        assert list(cot.predict.signature.output_fields) == ["reasoning", "answer"]
        assert pred.reasoning == "add them"
        assert pred.answer == "4"
        assert (
            "starting with the field `[[ ## reasoning ## ]]`"
            in lm.requests[0].messages[-1]["content"]
        )
        assert (
            cot.predict.signature.instructions
            == "Given the fields `question`, produce the fields `answer`."
        )

    async def test_usage_summed(self) -> None:
        """The ChainOfThought prediction carries the usage of its inner call."""
        lm = ScriptedLM()
        with context(lm=lm):
            pred = await ChainOfThought("question -> answer")(question="q")
        assert pred.usage == lm.total_usage()
        assert pred.usage.total_tokens > 0

    def test_config_and_named_predictors(self) -> None:
        """Config goes to the inner Predict, which is named `predict` as in DSPy."""
        cot = ChainOfThought("question -> answer", temperature=0.3)
        assert cot.predict.config == {"temperature": 0.3}
        assert [name for name, _ in cot.named_predictors()] == ["predict"]
