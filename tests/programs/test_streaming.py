"""streamify and Module.stream: field chunks as tokens arrive, status messages, the final
Prediction, and cancellation that closes the LM stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmvisor.programs._stream_fields import cutter_for
from lmvisor.programs.adapters import ChatAdapter, JSONAdapter, XMLAdapter
from lmvisor.programs.chain_of_thought import ChainOfThought
from lmvisor.programs.example import Prediction
from lmvisor.programs.lm import LMCapabilities, LMDelta, LMDone, LMRequest, LMResponse
from lmvisor.programs.predict import Predict
from lmvisor.programs.react import ReAct
from lmvisor.programs.settings import context
from lmvisor.programs.streaming import (
    StatusMessage,
    StreamListener,
    StreamResponse,
    streamify,
)
from lmvisor.testing.scripted_lm import ScriptedLM

CHAT = (
    "[[ ## answer ## ]]\nParis is the [capital].\n\n[[ ## score ## ]]\n9\n\n[[ ## completed ## ]]"
)


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


def text_of(items: list[Any], field: str) -> str:
    return "".join(
        i.chunk for i in items if isinstance(i, StreamResponse) and i.signature_field_name == field
    )


class TestStreamify:
    async def test_chat_field_chunks_then_prediction(self) -> None:
        """A listened field arrives in chunks that join to the parsed value, then the result."""
        predict = Predict("question -> answer, score: int")
        program = streamify(predict, stream_listeners=[StreamListener("answer")])
        with context(lm=ScriptedLM([CHAT], chunk=3)):
            items = await collect(program(question="Capital of France?"))
        chunks = [i for i in items if isinstance(i, StreamResponse)]
        assert len(chunks) > 3
        assert text_of(items, "answer") == "Paris is the [capital]."
        assert [c.is_last_chunk for c in chunks] == [False] * (len(chunks) - 1) + [True]
        assert chunks[0].predict_name == "self"
        assert isinstance(items[-1], Prediction)
        assert items[-1].answer == "Paris is the [capital]."

    async def test_json_adapter_string_decoded(self) -> None:
        """With JSONAdapter the string value streams decoded (escapes resolved)."""
        reply = json.dumps({"answer": 'say "hi"\nthen \u00e9', "score": 3})
        program = streamify(
            Predict("q -> answer, score: int"), stream_listeners=[StreamListener("answer")]
        )
        with context(lm=ScriptedLM([reply], chunk=2), adapter=JSONAdapter()):
            items = await collect(program(q="x"))
        assert text_of(items, "answer") == 'say "hi"\nthen \u00e9'
        assert items[-1].score == 3

    async def test_xml_adapter(self) -> None:
        """With XMLAdapter the text between the tags streams, entities decoded."""
        reply = "<answer>\nsalt &amp; pepper\n</answer>\n<score>\n2\n</score>"
        program = streamify(
            Predict("q -> answer, score: int"), stream_listeners=[StreamListener("answer")]
        )
        with context(lm=ScriptedLM([reply], chunk=4), adapter=XMLAdapter()):
            items = await collect(program(q="x"))
        assert text_of(items, "answer") == "salt & pepper"

    async def test_raw_deltas_without_listeners(self) -> None:
        """Without listeners the LM's deltas pass through, then the prediction."""
        program = streamify(Predict("question -> answer, score: int"))
        with context(lm=ScriptedLM([CHAT], chunk=10)):
            items = await collect(program(question="q"))
        deltas = [i for i in items if isinstance(i, LMDelta)]
        assert "".join(d.text for d in deltas) == CHAT
        assert isinstance(items[-1], Prediction)

    async def test_final_prediction_can_be_left_out(self) -> None:
        """include_final_prediction_in_output_stream=False leaves it out once a field streamed."""
        program = streamify(
            Predict("question -> answer, score: int"),
            stream_listeners=[StreamListener("answer")],
            include_final_prediction_in_output_stream=False,
        )
        with context(lm=ScriptedLM([CHAT])):
            items = await collect(program(question="q"))
        assert not any(isinstance(i, Prediction) for i in items)

    async def test_status_messages_for_tools(self) -> None:
        """Tool calls of a ReAct program show as status messages; `finish` does not."""

        def lookup(city: str) -> str:
            """Find a city."""
            return f"{city} found"

        replies = [
            "[[ ## next_thought ## ]]\nlook\n\n[[ ## next_tool_name ## ]]\nlookup\n\n"
            '[[ ## next_tool_args ## ]]\n{"city": "Rome"}\n\n[[ ## completed ## ]]',
            "[[ ## next_thought ## ]]\ndone\n\n[[ ## next_tool_name ## ]]\nfinish\n\n"
            "[[ ## next_tool_args ## ]]\n{}\n\n[[ ## completed ## ]]",
            "[[ ## reasoning ## ]]\nok\n\n[[ ## answer ## ]]\nRome\n\n[[ ## completed ## ]]",
        ]
        program = streamify(
            ReAct("question -> answer", tools=[lookup]), stream_listeners=[StreamListener("answer")]
        )
        with context(lm=ScriptedLM(replies)):
            items = await collect(program(question="Where?"))
        statuses = [i.message for i in items if isinstance(i, StatusMessage)]
        assert statuses == [
            "Calling tool lookup...",
            "Tool calling finished! Querying the LLM with tool calling results...",
        ]
        assert text_of(items, "answer") == "Rome"

    async def test_errors_reach_the_consumer(self) -> None:
        """A failing program raises its error from the iterator."""
        program = streamify(Predict("q -> a"))
        with (
            context(lm=ScriptedLM([ValueError("boom")])),
            pytest.raises(ValueError, match=r"^boom$"),
        ):
            await collect(program(q="x"))

    def test_listener_field_must_be_known(self) -> None:
        """A listener for a field no predictor outputs is refused at once."""
        with pytest.raises(
            ValueError, match=r"no predictor of the program has an output field 'nope'"
        ):
            streamify(Predict("q -> a"), stream_listeners=[StreamListener("nope")])

    def test_listener_field_must_be_unique(self) -> None:
        """A field two predictors output needs the listener's predict."""
        from lmvisor.programs.module import Module

        class Two(Module):
            def __init__(self) -> None:
                super().__init__()
                self.one = Predict("q -> a")
                self.two = Predict("b -> a")

        with pytest.raises(ValueError, match=r"belongs to several predictors \(one, two\)"):
            streamify(Two(), stream_listeners=[StreamListener("a")])


class _SlowLM:
    """Streams forever, one chunk per event-loop turn; records whether it was closed."""

    def __init__(self) -> None:
        self.closed = False
        self.chunks = 0

    @property
    def model(self) -> str:
        return "slow/lm"

    @property
    def capabilities(self) -> LMCapabilities:
        return LMCapabilities()

    async def complete(self, request: LMRequest) -> LMResponse:
        raise AssertionError("a streamed program must call stream()")

    async def stream(self, request: LMRequest) -> AsyncIterator[LMDelta | LMDone]:
        try:
            yield LMDelta(text="[[ ## a ## ]]\n")
            while True:
                self.chunks += 1
                yield LMDelta(text="word ")
                await asyncio.sleep(0)
        finally:
            self.closed = True


class TestCancellation:
    async def test_closing_the_stream_closes_the_lm_stream(self) -> None:
        """Stopping early cancels the program, and the LM stream in flight is closed."""
        lm = _SlowLM()
        program = streamify(Predict("q -> a"), stream_listeners=[StreamListener("a")])
        with context(lm=lm):
            async with contextlib.aclosing(program(q="x")) as items:
                async for item in items:
                    assert isinstance(item, StreamResponse)
                    break
        assert lm.closed
        assert lm.chunks < 1000


class _SlowToCloseLM(_SlowLM):
    """Streams like `_SlowLM`, but closing its stream waits until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = asyncio.Event()
        self.release = asyncio.Event()

    async def stream(self, request: LMRequest) -> AsyncIterator[LMDelta | LMDone]:
        try:
            async for item in super().stream(request):
                yield item
        finally:
            self.closing.set()
            await self.release.wait()


class TestCancelledCaller:
    async def test_a_caller_cancelled_while_the_stream_closes_stays_cancelled(self) -> None:
        """Cancelling a caller that is closing a stream cancels it, once the program unwound."""
        lm = _SlowToCloseLM()
        program = streamify(Predict("q -> a"), stream_listeners=[StreamListener("a")])
        went_on = False

        async def caller() -> None:
            nonlocal went_on
            items = program(q="x")
            assert isinstance(await anext(items), StreamResponse)
            await items.aclose()  # type: ignore[attr-defined]
            went_on = True

        with context(lm=lm):
            task = asyncio.create_task(caller())
            await lm.closing.wait()
            task.cancel()
            await asyncio.sleep(0)
            assert not task.done()  # still waiting for the program to unwind
            lm.release.set()
            await asyncio.wait([task])
        assert task.cancelled()
        assert not went_on
        assert lm.closed

    async def test_a_timeout_around_a_closing_stream_fires(self) -> None:
        """`asyncio.timeout` expiring while a stream is being closed raises TimeoutError."""
        lm = _SlowToCloseLM()
        program = streamify(Predict("q -> a"), stream_listeners=[StreamListener("a")])
        me = asyncio.current_task()
        assert me is not None

        async def expire(deadline: asyncio.Timeout) -> None:
            await lm.closing.wait()
            deadline.reschedule(asyncio.get_running_loop().time())
            while not me.cancelling():  # noqa: ASYNC110 - no event marks a task's cancel
                await asyncio.sleep(0)
            lm.release.set()

        with context(lm=lm):
            items = program(q="x")
            assert isinstance(await anext(items), StreamResponse)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(None) as deadline:
                    helper = asyncio.create_task(expire(deadline))
                    await items.aclose()  # type: ignore[attr-defined]
            await helper
        assert lm.closed


class TestModuleStream:
    async def test_every_output_field(self) -> None:
        """`program.stream()` streams each output of each predictor, reasoning included."""
        reply = "[[ ## reasoning ## ]]\nadd them\n\n[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"
        with context(lm=ScriptedLM([reply], chunk=5)):
            items = await collect(ChainOfThought("question -> answer").stream(question="2+2?"))
        assert text_of(items, "reasoning") == "add them"
        assert text_of(items, "answer") == "4"
        assert {i.predict_name for i in items if isinstance(i, StreamResponse)} == {"predict"}
        assert items[-1].answer == "4"


class TestCutters:
    @settings(max_examples=60, deadline=None)
    @given(cuts=st.lists(st.integers(min_value=0, max_value=len(CHAT)), max_size=12))
    def test_chat_any_chunking(self, cuts: list[int]) -> None:
        """However the completion is cut into pieces, the field text is the parsed value."""
        self._check(ChatAdapter(), CHAT, cuts, "Paris is the [capital].")

    @settings(max_examples=60, deadline=None)
    @given(cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=12))
    def test_json_any_chunking(self, cuts: list[int]) -> None:
        """A JSON string value decodes the same whatever the pieces (escapes split too)."""
        text = json.dumps({"answer": 'a "b" \\ c\n\u00e9 d', "score": 3})
        self._check(JSONAdapter(), text, cuts, 'a "b" \\ c\n\u00e9 d')

    @settings(max_examples=60, deadline=None)
    @given(cuts=st.lists(st.integers(min_value=0, max_value=50), max_size=12))
    def test_xml_any_chunking(self, cuts: list[int]) -> None:
        """XML entities split across pieces still decode."""
        text = "<answer>\n a &lt; b &amp; c \n</answer><score>1</score>"
        self._check(XMLAdapter(), text, cuts, "a < b & c")

    @staticmethod
    def _check(adapter: Any, text: str, cuts: list[int], expected: str) -> None:
        cutter = cutter_for(adapter, "answer")
        points = sorted({0, *(min(c, len(text)) for c in cuts), len(text)})
        out: list[str] = []
        finished = False
        for start, end in itertools.pairwise(points):
            pieces, done = cutter.feed(text[start:end])
            out += pieces
            finished = finished or done
        if not finished:
            pieces, finished = cutter.close()
            out += pieces
        assert finished
        assert "".join(out) == expected


class TestCutterCost:
    """Cutters fed a completion one character at a time (the worst cutting a vendor can
    send) do work linear in its length: time at 4n over time at n stays near 4, where the
    quadratic cutters took ~16."""

    @staticmethod
    def _seconds(adapter: Any, text: str) -> float:
        best = float("inf")
        for _ in range(3):
            cutter = cutter_for(adapter, "answer")
            started = time.perf_counter()
            for ch in text:
                cutter.feed(ch)
            cutter.close()
            best = min(best, time.perf_counter() - started)
        return best

    @pytest.mark.parametrize(
        ("adapter", "prefix", "fill"),
        [
            (ChatAdapter(), "", "x"),
            (ChatAdapter(), "[[ ## answer ## ]]\n", "x"),
            (ChatAdapter(), "[[ ## answer ## ]]\nx", " "),
            (XMLAdapter(), "<answer>", "&"),
            (JSONAdapter(), '{"reasoning": "', "x"),
            (JSONAdapter(), '{"answer": "', "x"),
            (JSONAdapter(), '{"answer"', " "),
        ],
        ids=[
            "before-marker",
            "chat-value",
            "chat-blanks",
            "xml-ampersands",
            "json-before-key",
            "json-string",
            "json-blanks-after-key",
        ],
    )
    def test_one_character_pieces_cost_linear_time(
        self, adapter: Any, prefix: str, fill: str
    ) -> None:
        """Work grows ~4x when the completion grows 4x (a ratio, not a time)."""
        small = self._seconds(adapter, prefix + fill * 5_000)
        large = self._seconds(adapter, prefix + fill * 20_000)
        assert large / small < 9

    def test_a_broken_unicode_escape_stays_as_written(self) -> None:
        """A JSON string whose \\u escape is not four hex digits is released as written,
        not a ValueError out of the stream."""
        cutter = cutter_for(JSONAdapter(), "answer")
        assert cutter.feed('{"answer": "a\\uZZZZ b"}') == (["a\\uZZZZ b"], True)


class TestNoFallbackAfterOutput:
    async def test_streamed_text_is_not_followed_by_a_second_answer(self) -> None:
        """When streamed chat text fails to parse, the JSON fallback is not tried."""
        lm = ScriptedLM(["[[ ## answer ## ]]\nhalf an answer", '{"answer": "other", "n": 1}'])
        program = streamify(
            Predict("q -> answer, n: int"), stream_listeners=[StreamListener("answer")]
        )
        from lmvisor.programs.errors import AdapterParseError

        with context(lm=lm), pytest.raises(AdapterParseError):
            await collect(program(q="x"))
        assert lm.calls == 1
