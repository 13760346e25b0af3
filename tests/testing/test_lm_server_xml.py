"""The loopback LM's XMLAdapter answers: recognised, typed, parsed back, run end to end."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from lmvisor.programs.adapters import ChatAdapter, JSONAdapter, XMLAdapter
from lmvisor.programs.fields import InputField, OutputField
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.programs.signature import Signature
from lmvisor.programs.streaming import StreamResponse
from lmvisor.services.app import App
from lmvisor.testing._lm_answers import dspy_output_fields
from lmvisor.testing._lm_requests import compose, parse_openai
from lmvisor.testing._lm_xml import is_xml_prompt
from lmvisor.testing.lm_server import LMServer


class Inner(BaseModel):
    x: int


class Item(BaseModel):
    name: str
    note: str | None = None
    inner: Inner


class Report(Signature):
    """Answer with care."""

    question: str = InputField()
    answer: str = OutputField()
    score: int = OutputField()
    ratio: float = OutputField()
    flag: bool = OutputField()
    kind: Literal["fact", "opinion"] = OutputField()
    items: list[str] = OutputField()
    counts: dict[str, int] = OutputField()
    item: Item = OutputField()
    batch: list[Item] = OutputField()


def _answer(adapter: Any, signature: type[Signature], **inputs: Any) -> str:
    """The loopback's completion for the request `adapter` formats."""
    messages = adapter.format(signature, [], inputs)
    (choice,) = compose(parse_openai({"model": "m", "messages": messages}), ids=["c"])
    assert choice.text is not None
    return choice.text


def _system(adapter: Any, signature: type[Signature]) -> str:
    return str(adapter.format(signature, [], {"question": "q"})[0]["content"])


class TestRecognition:
    def test_an_xml_adapter_prompt_is_recognised(self) -> None:
        """The XMLAdapter's system text is an XML prompt; ChatAdapter's and JSONAdapter's
        are not."""
        xml = _system(XMLAdapter(), Report)
        assert is_xml_prompt(xml, dspy_output_fields(xml))
        for other in (ChatAdapter(), JSONAdapter()):
            system = _system(other, Report)
            assert not is_xml_prompt(system, dspy_output_fields(system))

    def test_a_prompt_without_output_fields_is_not_xml(self) -> None:
        """Plain text with tags in it but no DSPy output fields is no XML prompt."""
        assert not is_xml_prompt("<answer>\n{answer}\n</answer>", ())


class TestAnswer:
    def test_every_field_parses_back_with_its_type(self) -> None:
        """The answer reads back through the XMLAdapter, each field typed as declared."""
        values = XMLAdapter().parse(Report, _answer(XMLAdapter(), Report, question="Why?"))
        assert values["answer"].endswith("re: Why?")
        assert isinstance(values["score"], int) and isinstance(values["ratio"], float)
        assert values["flag"] is True and values["kind"] == "fact"
        assert len(values["items"]) == 2 and all(i.endswith("re: Why?") for i in values["items"])
        assert list(values["counts"]) == ["key"] and isinstance(values["counts"]["key"], int)
        assert isinstance(values["item"], Item) and isinstance(values["item"].inner.x, int)
        assert len(values["batch"]) == 1 and isinstance(values["batch"][0], Item)

    def test_fields_come_between_their_tags_in_order(self) -> None:
        """Scalars sit on their own lines between tags, structures as nested XML."""
        text = _answer(XMLAdapter(), Report, question="Why?")
        blocks = text.split("\n\n")
        assert [b[1 : b.index(">")] for b in blocks] == list(Report.output_fields)
        assert blocks[1].startswith("<score>\n") and blocks[1].endswith("\n</score>")
        assert blocks[5].startswith("<items><item>items ")
        assert blocks[7].startswith("<item><name>") and "<inner><x>" in blocks[7]
        assert blocks[8].startswith("<batch><item><name>")

    def test_text_is_escaped(self) -> None:
        """An input holding `<` and `&` comes back intact inside the answer text."""
        values = XMLAdapter().parse(Report, _answer(XMLAdapter(), Report, question="a < b & c"))
        assert values["answer"].endswith("re: a < b & c")

    def test_the_same_request_gets_the_same_answer(self) -> None:
        """Answers are a function of the request alone."""
        first = _answer(XMLAdapter(), Report, question="Why?")
        assert _answer(XMLAdapter(), Report, question="Why?") == first
        assert _answer(XMLAdapter(), Report, question="Why not?") != first


class TestEndToEnd:
    async def test_predict_with_xml_adapter_through_open_app(
        self, app: App, lm_server: LMServer
    ) -> None:
        """A Predict with XMLAdapter runs through the app in one LM call, answered in XML
        (no JSON fallback), its outputs typed."""
        with context(lm=app.lm(), adapter=XMLAdapter()):
            prediction = await Predict(Report)(question="Why?")
        assert lm_server.stats().requests == 1
        assert prediction.answer.endswith("re: Why?")
        assert isinstance(prediction.item, Item) and isinstance(prediction.score, int)

    async def test_a_registered_xml_spec_runs(self, app: App, lm_server: LMServer) -> None:
        """A program registered with `adapter: "xml"` runs through the ModuleManager."""
        spec = {"module": "Predict", "signature": "question -> answer, tags: list[str]"}
        await app.register("qa", {**spec, "adapter": "xml"})
        done = await app.run("qa", {"question": "Why?"})
        assert done.prediction.answer.endswith("re: Why?")
        assert len(done.prediction.tags) == 2
        assert lm_server.stats().requests == 1

    async def test_an_xml_program_streams_its_fields(self, app: App) -> None:
        """Streamed over the loopback, the answer field's chunks add up to the answer."""
        with context(lm=app.lm(), adapter=XMLAdapter()):
            items = [i async for i in Predict("question -> answer").stream(question="Why?")]
        chunks = [i.chunk for i in items if isinstance(i, StreamResponse)]
        assert chunks and "".join(chunks) == items[-1].answer
