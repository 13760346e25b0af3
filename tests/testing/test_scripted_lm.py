"""ScriptedLM: scripts, generated replies in the requested format, records and usage."""

from __future__ import annotations

import json
from typing import Literal

import pytest

from lmvisor.programs.adapters import JSONAdapter
from lmvisor.programs.fields import InputField, OutputField
from lmvisor.programs.lm import LM, LMDelta, LMDone, LMRequest, LMResponse
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.programs.signature import Signature
from lmvisor.testing.scripted_lm import ScriptedLM, ScriptExhausted


class QA(Signature):
    """Answer."""

    context: list[str] = InputField()
    question: str = InputField()
    answer: str = OutputField()
    confidence: float = OutputField()
    kind: Literal["fact", "opinion"] = OutputField()
    count: int = OutputField()
    ok: bool = OutputField()


def _request(content: str = "hi", **params: object) -> LMRequest:
    return LMRequest(model="x", messages=[{"role": "user", "content": content}], params=params)


class TestScript:
    def test_is_an_lm(self) -> None:
        """ScriptedLM satisfies the LM protocol."""
        assert isinstance(ScriptedLM(), LM)

    async def test_list_in_order(self) -> None:
        """A list is answered in order; exhausting it raises ScriptExhausted."""
        lm = ScriptedLM(["one", ["two", "three"], LMResponse(outputs=["four"], cached=True)])
        assert (await lm.complete(_request())).outputs == ["one"]
        assert (await lm.complete(_request())).outputs == ["two", "three"]
        assert (await lm.complete(_request())).cached
        with pytest.raises(ScriptExhausted, match=r"^ScriptedLM script exhausted after 3 replies$"):
            await lm.complete(_request())
        assert lm.calls == 4

    async def test_exception_raised(self) -> None:
        """A scripted exception is raised for that call."""
        lm = ScriptedLM([ValueError("bad")])
        with pytest.raises(ValueError, match="bad"):
            await lm.complete(_request())

    async def test_callable(self) -> None:
        """A sync or async callable answers from the request."""
        sync_lm = ScriptedLM(lambda r: r.messages[0]["content"].upper())

        async def reply(request: LMRequest) -> str:
            return "async"

        assert (await sync_lm.complete(_request("abc"))).outputs == ["ABC"]
        assert (await ScriptedLM(reply).complete(_request())).outputs == ["async"]

    async def test_usage(self) -> None:
        """Each call reports usage; total_usage sums them."""
        lm = ScriptedLM(["x" * 40, "y"])
        first = await lm.complete(_request("a" * 80))
        await lm.complete(_request())
        assert first.usage.prompt_tokens == 21
        assert first.usage.completion_tokens == 11
        assert first.usage.total_tokens == 32
        assert (
            lm.total_usage().total_tokens
            == first.usage.total_tokens + lm.responses[1].usage.total_tokens
        )

    async def test_stream(self) -> None:
        """stream yields deltas then exactly one LMDone."""
        lm = ScriptedLM(["abcdefghijklmnopqrstuvwxyz"])
        items = [item async for item in lm.stream(_request())]
        assert isinstance(items[-1], LMDone)
        text = "".join(i.text for i in items if isinstance(i, LMDelta))
        assert text == "abcdefghijklmnopqrstuvwxyz"


class TestGenerated:
    async def test_chat_format(self) -> None:
        """Without a script, replies fill every output field with a value of its type."""
        lm = ScriptedLM()
        with context(lm=lm):
            pred = await Predict(QA)(context=["Berlin is in Germany."], question="Capital?")
        assert pred.answer.startswith("answer ") and pred.answer.endswith(
            ' re: ["Berlin is in Germany."]'
        )
        assert isinstance(pred.confidence, float)
        assert pred.kind == "fact"
        assert isinstance(pred.count, int)
        assert isinstance(pred.ok, bool)

    async def test_json_format(self) -> None:
        """With response_format set, the reply is a JSON object."""
        lm = ScriptedLM()
        predict = Predict(QA)
        predict.adapter = JSONAdapter()
        with context(lm=lm):
            pred = await predict(context=["c"], question="q")
        assert set(json.loads(lm.responses[0].outputs[0])) == set(QA.output_fields)
        assert pred.kind == "fact"

    async def test_deterministic_and_n(self) -> None:
        """Same request, same reply; n gives n different replies."""
        with context(lm=ScriptedLM()):
            a = await Predict("question -> answer")(question="q")
            b = await Predict("question -> answer")(question="q")
            many = await Predict("question -> answer", n=3)(question="q")
        assert a.answer == b.answer
        assert len(set(many.completions.answer)) == 3
