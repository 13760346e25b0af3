"""ChatAdapter and JSONAdapter: DSPy 3.4.1 byte-identical requests, typed parsing, fallback."""

from __future__ import annotations

import enum
import json
import re
import time
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmvisor.programs.adapters import ChatAdapter, JSONAdapter
from lmvisor.programs.errors import AdapterParseError
from lmvisor.programs.fields import InputField, OutputField
from lmvisor.programs.history import History
from lmvisor.programs.lm import LMCapabilities
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.programs.signature import Signature
from lmvisor.testing.scripted_lm import ScriptedLM

FIXTURES = Path(__file__).parent / "compat_fixtures"
INPUTS = {"context": ["Berlin is in Germany."], "question": "Capital of Germany?"}


class QA(Signature):
    """Answer the question with a short factoid."""

    context: list[str] = InputField(desc="facts that may help")
    question: str = InputField()
    answer: str = OutputField(desc="often between 1 and 5 words")
    confidence: float = OutputField()
    kind: Literal["fact", "opinion"] = OutputField()


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


class Person(pydantic.BaseModel):
    name: str
    age: int


def _fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


class TestCompatFixtures:
    @pytest.mark.parametrize(
        ("name", "adapter"),
        [("chat_predict.json", ChatAdapter()), ("json_predict.json", JSONAdapter())],
    )
    async def test_request_is_byte_identical(self, name: str, adapter: Any) -> None:
        """Predict(QA) sends the exact messages (and response_format) DSPy 3.4.1 sent."""
        fixture = _fixture(name)
        expected = fixture["requests"][0]
        lm = ScriptedLM(fixture["completion"], model="openai/gpt-4o-mini")
        with context(lm=lm, adapter=adapter):
            pred = await Predict(QA)(**INPUTS)
        request = lm.requests[0]
        assert request.model == "openai/" + expected["model"]
        assert json.dumps(request.messages) == json.dumps(expected["messages"])
        sent = {k: v for k, v in expected.items() if k not in ("model", "messages")}
        assert json.dumps(dict(request.params), sort_keys=True) == json.dumps(sent, sort_keys=True)
        assert dict(pred.items()) == fixture["parsed"]

    @pytest.mark.parametrize(
        ("name", "adapter"),
        [("chat_predict.json", ChatAdapter()), ("json_predict.json", JSONAdapter())],
    )
    def test_completion_parses_to_fixture(self, name: str, adapter: Any) -> None:
        """The fixture completion parses to the fixture's `parsed` values with their types."""
        fixture = _fixture(name)
        parsed = adapter.parse(QA, fixture["completion"][0])
        assert parsed == fixture["parsed"]
        assert isinstance(parsed["confidence"], float)


class TestChatFormat:
    def test_a_same_named_subclass_has_its_own_cached_prompt_parts(self) -> None:
        """A user's subclass named ChatAdapter that words the structure its own way is not
        served the built-in adapter's cached system message or output requirements."""
        sig = Signature("question -> answer")

        class Mine(ChatAdapter):
            def format_field_structure(self, signature: type[Signature]) -> str:
                return "my structure"

            def _output_requirements(self, signature: type[Signature]) -> str:
                return "my requirements"

        Mine.__name__ = Mine.__qualname__ = "ChatAdapter"
        builtin = ChatAdapter().format(sig, [], {"question": "q"})
        mine = Mine().format(sig, [], {"question": "q"})
        assert "my structure" not in builtin[0]["content"]
        assert "my structure" in mine[0]["content"]
        assert mine[-1]["content"].endswith("my requirements")

    def test_complete_and_incomplete_demos(self) -> None:
        """Incomplete demos come first with DSPy's note; complete ones follow; empty ones drop."""
        sig = Signature("question -> answer")
        demos = [
            {"question": "1+1?", "answer": "2"},
            {"question": "2+2?"},
            {"question": "3+3?", "answer": None},
            {"other": "x"},
        ]
        messages = ChatAdapter().format(sig, demos, {"question": "5+5?"})
        roles = [m["role"] for m in messages]
        assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
        assert messages[1]["content"].endswith("[[ ## question ## ]]\n3+3?")
        assert messages[3]["content"] == "[[ ## question ## ]]\n1+1?"
        messages = ChatAdapter().format(
            Signature("question, hint -> answer"),
            [{"question": "3+3?", "answer": "6"}, {"question": "1+1?", "hint": "h", "answer": "2"}],
            {"question": "5+5?", "hint": "none"},
        )
        assert messages[1]["content"] == (
            "This is an example of the task, though some input or output fields are not "
            "supplied.\n\n[[ ## question ## ]]\n3+3?"
        )
        assert messages[2]["content"] == "[[ ## answer ## ]]\n6\n\n[[ ## completed ## ]]\n"
        assert messages[3]["content"] == "[[ ## question ## ]]\n1+1?\n\n[[ ## hint ## ]]\nh"
        assert messages[5]["content"].startswith("[[ ## question ## ]]\n5+5?")

    def test_missing_demo_output_is_marked(self) -> None:
        """A missing output in an incomplete demo is shown as "Not supplied..."."""
        sig = Signature("q -> a, b")
        messages = ChatAdapter().format(sig, [{"q": "x", "a": "1"}], {"q": "y"})
        assert messages[2]["content"] == (
            "[[ ## a ## ]]\n1\n\n[[ ## b ## ]]\nNot supplied for this particular example."
            "\n\n[[ ## completed ## ]]\n"
        )

    def test_type_notes(self) -> None:
        """Outputs of bool, int, Enum and pydantic types get DSPy's notes."""
        sig = Signature("q -> flag: bool, n: int").append("mood", OutputField(), Mood)
        sig = sig.append("who", OutputField(), Person)
        system = ChatAdapter().format(sig, [], {"q": "x"})[0]["content"]
        assert "{flag}        # note: the value you produce must be True or False" in system
        assert "{n}        # note: the value you produce must be a single int value" in system
        assert "{mood}        # note: the value you produce must be one of: happy; sad" in system
        assert (
            '{who}        # note: the value you produce must adhere to the JSON schema: {"type": '
            '"object", "properties": {"age": {"type": "integer", "title": "Age"}, "name": '
            '{"type": "string", "title": "Name"}}, "required": ["name", "age"], "title": "Person"}'
        ) in system

    def test_list_input_of_str_field_is_numbered(self) -> None:
        """A list given to a str input is rendered as DSPy's «numbered» list."""
        messages = ChatAdapter().format(Signature("docs -> a"), [], {"docs": ["x", "y\nz"]})
        assert messages[-1]["content"].startswith(
            "[[ ## docs ## ]]\n[1] «x»\n[2] «««\n    y\n    z\n»»»"
        )

    def test_history_turns(self) -> None:
        """A History input becomes user/assistant turns before the request."""
        sig = (
            Signature("question, history: History -> answer", custom_types=None)
            if False
            else (Signature("question -> answer").append("history", InputField(), History))
        )
        history = History([{"question": "hi", "answer": "hello"}])
        messages = ChatAdapter().format(sig, [], {"question": "how are you?", "history": history})
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
        assert messages[1]["content"] == (
            "[[ ## question ## ]]\nhi\n\nRespond with the corresponding output fields, "
            "starting with the field `[[ ## answer ## ]]`, and then ending with the marker "
            "for `[[ ## completed ## ]]`."
        )
        assert messages[2]["content"] == "[[ ## answer ## ]]\nhello\n\n[[ ## completed ## ]]\n"
        assert "history" not in messages[3]["content"]


class TestChatParse:
    def test_typed_coercion(self) -> None:
        """Values are coerced to int, bool, list, dict, Literal, Enum and pydantic types."""
        sig = (
            Signature(
                "q -> n: int, ok: bool, tags: list[str], meta: dict[str, int], k: Literal['a', 'b']"
            )
            .append("mood", OutputField(), Mood)
            .append("who", OutputField(), Person)
        )
        completion = (
            "[[ ## n ## ]]\n42\n\n[[ ## ok ## ]]\nTrue\n\n[[ ## tags ## ]]\n['x', 'y']\n\n"
            "[[ ## meta ## ]]\n{\"a\": 1}\n\n[[ ## k ## ]]\n'b'\n\n[[ ## mood ## ]]\nsad\n\n"
            '[[ ## who ## ]]\n{"name": "Ada", "age": "36"}\n\n[[ ## completed ## ]]'
        )
        values = ChatAdapter().parse(sig, completion)
        assert values == {
            "n": 42,
            "ok": True,
            "tags": ["x", "y"],
            "meta": {"a": 1},
            "k": "b",
            "mood": Mood.SAD,
            "who": Person(name="Ada", age=36),
        }

    def test_optional_text_keeps_raw_text(self) -> None:
        """An `str | None` output keeps the text as written ("42", "[1, 2]"), as DSPy does."""
        sig = Signature("q -> a: Optional[str], b: str | None")
        values = ChatAdapter().parse(sig, "[[ ## a ## ]]\n42\n\n[[ ## b ## ]]\n[1, 2]")
        assert values == {"a": "42", "b": "[1, 2]"}

    def test_enum_with_int_values(self) -> None:
        """An Enum with int values parses from its value as text ("2") or JSON (2), or its name."""

        class Level(enum.Enum):
            LOW = 1
            HIGH = 2

        sig = Signature("q -> a").append("level", OutputField(), Level).delete("a")
        assert ChatAdapter().parse(sig, "[[ ## level ## ]]\n2") == {"level": Level.HIGH}
        assert JSONAdapter().parse(sig, '{"level": 2}') == {"level": Level.HIGH}
        assert JSONAdapter().parse(sig, '{"level": "LOW"}') == {"level": Level.LOW}
        with pytest.raises(AdapterParseError, match=r"field 'level' \(Level\) cannot be read"):
            ChatAdapter().parse(sig, "[[ ## level ## ]]\n3")

    def test_literal_wrapped_in_echoed_type(self) -> None:
        """A Literal value written as "Literal['b']" (the type note echoed) parses to 'b'."""
        sig = Signature("q -> k: Literal['a', 'b']")
        assert ChatAdapter().parse(sig, "[[ ## k ## ]]\nLiteral['b']") == {"k": "b"}

    def test_content_on_header_line(self) -> None:
        """Text after a marker on the same line belongs to that field."""
        values = ChatAdapter().parse(
            Signature("q -> a"), "[[ ## a ## ]] inline\n[[ ## completed ## ]]"
        )
        assert values == {"a": "inline"}

    def test_missing_field(self) -> None:
        """A missing output raises AdapterParseError carrying the raw completion."""
        with pytest.raises(AdapterParseError, match=r"missing output fields \['b'\]") as info:
            ChatAdapter().parse(Signature("q -> a, b"), "[[ ## a ## ]]\nx")
        assert info.value.completion == "[[ ## a ## ]]\nx"
        assert info.value.parsed == {"a": "x"}
        assert info.value.retryable

    def test_bad_value(self) -> None:
        """A value that does not fit its type names the field."""
        with pytest.raises(
            AdapterParseError,
            match=r"field 'n' \(int\) cannot be read from 'many': Input should be a valid integer",
        ):
            ChatAdapter().parse(Signature("q -> n: int"), "[[ ## n ## ]]\nmany")


_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")


def _sections_line_by_line(completion: str, names: tuple[str, ...]) -> dict[str, str]:
    """The reference reading of a reply, line by line (`splitlines`, `strip`): lmvisor's
    earlier reading, DSPy's but for indented headers (see tests/programs/test_parity.py)."""
    lines = completion.splitlines()
    heads = []
    for index, line in enumerate(lines):
        match = _HEADER.match(line.strip())
        if match:
            heads.append((index, match.group(1), line.strip()[match.end() :].strip()))
    found: dict[str, str] = {}
    for k, (index, name, rest) in enumerate(heads):
        if name in found or name not in names:
            continue
        end = heads[k + 1][0] if k + 1 < len(heads) else len(lines)
        found[name] = "\n".join(([rest] if rest else []) + lines[index + 1 : end]).strip()
    return found


_ODD_REPLY_PIECES = st.sampled_from(
    [
        "[[ ## a ## ]]",
        "[[ ## b ## ]]",
        "[[ ## completed ## ]]",
        "[[ ## a ##]]",
        "\n",
        "\r\n",
        "\r",
        "\u2028",
        "\x1c",
        "\x85",
        "\x1f",
        "\xa0",
        " ",
        "\t",
        "x",
        "ü 1",
    ]
)


class TestChatParseSections:
    SIG = Signature("q -> a: str | None, b: str | None")

    @pytest.mark.parametrize(
        "completion",
        [
            "[[ ## a ## ]]\r\nx\r\ny\r\n[[ ## b ## ]]\r\nz",
            "  [[ ## a ## ]]  first \n second\n\t[[ ## b ## ]]\xa0z\xa0\n",
            "[[ ## a ## ]]\u2028x\x1cy\x85[[ ## b ## ]] \x1f z \x1f",
            "text [[ ## a ## ]]\nx\n[[ ## a ## ]]\ny\n[[ ## b ## ]]",
            "[[ ## b ## ]]",
            "[[ ## a ## ]]x[[ ## b ## ]]y\n[[ ## completed ## ]]\n",
        ],
    )
    def test_odd_replies_read_as_line_by_line(self, completion: str) -> None:
        """Blanks, CRLF and Unicode line breaks around headers read as DSPy's line reading."""
        expected = _sections_line_by_line(completion, ("a", "b"))
        got = ChatAdapter().parse(self.SIG, completion)
        assert {k: v for k, v in got.items() if k in expected} == expected
        assert all(got[k] is None for k in got if k not in expected)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(_ODD_REPLY_PIECES, max_size=24).map("".join))
    def test_any_reply_reads_as_line_by_line(self, completion: str) -> None:
        """Every reply made of headers, blanks and line breaks of all kinds: same sections."""
        expected = _sections_line_by_line(completion, ("a", "b"))
        got = ChatAdapter().parse(self.SIG, completion)
        assert {k: v for k, v in got.items() if k in expected} == expected

    def test_long_blank_runs_in_a_header_line_read_in_linear_time(self) -> None:
        """Blank runs inside a header line: 4x the blanks cost ~4x (a backtracking pattern
        costs 16x; it took 8 s at 32,000 blanks), and the sections read as line by line."""
        adapter = ChatAdapter()

        def cost(blanks: int) -> float:
            completion = f"[[ ## a ## ]]x{' ' * blanks}y\n[[ ## b ## ]] {' ' * blanks}"
            assert adapter.parse(self.SIG, completion) == _sections_line_by_line(
                completion, ("a", "b")
            )
            best = float("inf")
            for _ in range(7):
                start = time.perf_counter()
                adapter.parse(self.SIG, completion)
                best = min(best, time.perf_counter() - start)
            return best

        assert cost(20_000) / cost(5_000) < 8


class TestFallback:
    async def test_falls_back_to_json_once(self) -> None:
        """An unparseable chat completion is retried once with the JSONAdapter."""
        lm = ScriptedLM(["no markers here", '{"answer": "4"}'])
        with context(lm=lm):
            pred = await Predict("question -> answer")(question="2+2?")
        assert pred.answer == "4"
        assert lm.calls == 2
        assert "response_format" not in lm.requests[0].params
        assert lm.requests[1].params["response_format"]["type"] == "json_schema"

    async def test_both_fail(self) -> None:
        """When the JSON attempt fails too, the error names both problems, the field first."""
        lm = ScriptedLM(["[[ ## answer ## ]]\nmany", "still nothing"])
        sig = Signature("question -> answer: int")
        with context(lm=lm), pytest.raises(AdapterParseError) as info:
            await Predict(sig)(question="2+2?")
        assert info.value.adapter == "ChatAdapter"
        assert info.value.completion == "[[ ## answer ## ]]\nmany"
        assert info.value.problem == (
            "field 'answer' (int) cannot be read from 'many': Input should be a valid integer, "
            "unable to parse string as an integer; the JSONAdapter fallback failed too: "
            "no JSON object in the completion"
        )
        assert isinstance(info.value.__cause__, AdapterParseError)
        assert info.value.__cause__.completion == "still nothing"

    async def test_no_output(self) -> None:
        """A response without any completion is an AdapterParseError, not a crash."""
        from lmvisor.programs.lm import LMResponse

        lm = ScriptedLM([LMResponse(outputs=[]), LMResponse(outputs=[])])
        with (
            context(lm=lm),
            pytest.raises(AdapterParseError, match=r"the LM returned no completion"),
        ):
            await Predict("question -> answer")(question="q")

    async def test_fallback_disabled(self) -> None:
        """With the fallback off, the first parse failure is raised at once."""
        lm = ScriptedLM(["no markers"])
        adapter = ChatAdapter(use_json_adapter_fallback=False)
        with context(lm=lm, adapter=adapter), pytest.raises(AdapterParseError) as info:
            await Predict("question -> answer")(question="2+2?")
        assert info.value.adapter == "ChatAdapter"
        assert lm.calls == 1


class TestJSONAdapter:
    @pytest.mark.parametrize(
        "completion",
        [
            '```json\n{"answer": "4", "n": 2}\n```',
            'Sure! Here it is: {"answer": "4", "n": "2"} Hope that helps.',
            "{'answer': '4', 'n': 2,}",
            '{"answer": "4", "n": 2',
        ],
    )
    def test_tolerant_parsing(self, completion: str) -> None:
        """Code fences, prose, single quotes, trailing commas and a missing brace are tolerated."""
        assert JSONAdapter().parse(Signature("q -> answer, n: int"), completion) == {
            "answer": "4",
            "n": 2,
        }

    def test_not_json(self) -> None:
        """A completion with no JSON object raises AdapterParseError."""
        with pytest.raises(AdapterParseError, match=r"no JSON object in the completion"):
            JSONAdapter().parse(Signature("q -> answer"), "just words")

    def test_json_object_without_schema_support(self) -> None:
        """An LM without json_schema support gets response_format json_object."""
        params = JSONAdapter().request_params(QA, LMCapabilities(json_schema=False))
        assert params == {"response_format": {"type": "json_object"}}

    def test_open_ended_dict_uses_json_object(self) -> None:
        """An open-ended dict output cannot be strict, so json_object is used."""
        params = JSONAdapter().request_params(Signature("q -> m: dict[str, int]"), LMCapabilities())
        assert params == {"response_format": {"type": "json_object"}}

    def test_nested_model_schema_is_strict(self) -> None:
        """Nested objects get every property required and additionalProperties false."""
        sig = Signature("q -> a").append("who", OutputField(), Person)
        schema = JSONAdapter().request_params(sig, LMCapabilities())["response_format"]
        person = schema["json_schema"]["schema"]["$defs"]["Person"]
        assert person["additionalProperties"] is False
        assert person["required"] == ["name", "age"]

    def test_demo_is_json(self) -> None:
        """A demo's assistant turn is the outputs as indented JSON."""
        messages = JSONAdapter().format(Signature("q -> a"), [{"q": "x", "a": "y"}], {"q": "z"})
        assert messages[2]["content"] == '{\n  "a": "y"\n}'


class TestDeepNesting:
    def test_deep_xml_is_a_parse_error(self) -> None:
        """XML nested thousands deep raises AdapterParseError naming the field."""
        from lmvisor.programs.adapters import XMLAdapter

        deep = "<item>" * 5000 + "x" + "</item>" * 5000
        with pytest.raises(AdapterParseError, match=r"field 'items' cannot be read: nested too"):
            XMLAdapter().parse(Signature("q -> items: list[str]"), f"<items>{deep}</items>")

    @pytest.mark.parametrize("adapter", [ChatAdapter(), JSONAdapter()])
    def test_deep_completion_is_a_parse_error(self, adapter: Any) -> None:
        """A completion nested thousands deep raises AdapterParseError, never RecursionError."""
        deep = "[" * 50_000 + "]" * 50_000
        sig = Signature("q -> items: list[int]")
        completion = (
            f"[[ ## items ## ]]\n{deep}"
            if isinstance(adapter, ChatAdapter) and not isinstance(adapter, JSONAdapter)
            else '{"items": ' + deep + "}"
        )
        with pytest.raises(AdapterParseError):
            adapter.parse(sig, completion)

    def test_lone_surrogate_is_a_parse_error(self) -> None:
        """A completion holding a lone surrogate (text no UTF-8 can carry) is not XML."""
        from lmvisor.programs.adapters import XMLAdapter

        with pytest.raises(AdapterParseError, match=r": not XML: surrogates not allowed$"):
            XMLAdapter().parse(Signature("q -> a"), "<a>\ud800</a>")

    @pytest.mark.parametrize("adapter", [ChatAdapter(), JSONAdapter()])
    def test_deep_list_for_a_text_input_is_a_value_error(self, adapter: Any) -> None:
        """A list nested thousands deep given for a str input is a ValueError saying so
        (its repr recursed past the limit: a RecursionError and, in the daemon, a 500)."""
        value: Any = 1
        for _ in range(5_000):
            value = [value]
        with pytest.raises(ValueError, match=r"^value nested too deeply to write into the prompt$"):
            adapter.format(Signature("a -> b"), [], {"a": value})
