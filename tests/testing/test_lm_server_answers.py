"""The loopback LM's answer rules: DSPy ChatAdapter fields, JSON per schema, plain text."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmvisor.testing._lm_answers import (
    OutputField,
    chat_adapter_answer,
    dspy_output_fields,
    estimate_tokens,
    plain_answer,
    schema_value,
    snippet_of,
    stable_hash,
)
from lmvisor.testing._lm_requests import Rejected, compose, parse_anthropic, parse_openai

_MARKER = re.compile(r"\[\[ ## (\w+) ## \]\]")


_SYSTEM = (
    "Your input fields are:\n1. `context` (list[str]): facts that may help\n2. `question` (str):\n"
    "Your output fields are:\n1. `answer` (str): often between 1 and 5 words\n"
    "2. `confidence` (float): \n3. `kind` (Literal['fact', 'opinion']):\n"
    "All interactions will be structured in the following way, with the appropriate values "
    "filled in.\n\n[[ ## context ## ]]\n{context}\n\n[[ ## question ## ]]\n{question}\n\n"
    "[[ ## answer ## ]]\n{answer}\n\n[[ ## confidence ## ]]\n{confidence}        # note: the "
    "value you produce must be a single float value\n\n[[ ## kind ## ]]\n{kind}        # note: "
    "the value you produce must exactly match (no extra characters) one of: fact; opinion\n\n"
    "[[ ## completed ## ]]\nIn adhering to this structure, your objective is: \n        Answer."
)
_USER: Any = {
    "role": "user",
    "content": '[[ ## context ## ]]\n["Berlin is in Germany."]\n\n[[ ## question ## ]]\n'
    "Capital of Germany?\n\nRespond with the corresponding output fields.",
}


def _chat_fixture() -> dict[str, Any]:
    """The request DSPy 3.4.1's ChatAdapter sends for the compat QA signature."""
    return {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": _SYSTEM}, _USER]}


def parse_chat_adapter(text: str) -> dict[str, str]:
    """Split a completion on `[[ ## name ## ]]` markers, as DSPy's ChatAdapter does."""
    sections: dict[str, str] = {}
    matches = list(_MARKER.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        sections[match.group(1)] = text[match.end() : end].strip()
    return sections


def _system_with(fields: list[tuple[str, str, str]]) -> str:
    """A ChatAdapter system text declaring `fields` as (name, type, note)."""
    lines = [f"{i}. `{name}` ({kind}): " for i, (name, kind, _) in enumerate(fields, 1)]
    structure = [
        f"[[ ## {name} ## ]]\n{{{name}}}"
        + (f"        # note: the value you produce {note}" if note else "")
        for name, _, note in fields
    ]
    return (
        "Your input fields are:\n1. `question` (str):\nYour output fields are:\n"
        + "\n".join(lines)
        + "\nAll interactions will be structured in the following way.\n\n[[ ## question ## ]]\n"
        "{question}\n\n" + "\n\n".join(structure) + "\n\n[[ ## completed ## ]]\n"
    )


class TestDspyOutputFields:
    def test_reads_names_types_and_notes_of_the_compat_prompt(self) -> None:
        """The three output fields of the DSPy 3.4.1 fixture come back with their types."""
        system = _chat_fixture()["messages"][0]["content"]
        fields = dspy_output_fields(system)
        assert [(f.name, f.type) for f in fields] == [
            ("answer", "str"),
            ("confidence", "float"),
            ("kind", "Literal['fact', 'opinion']"),
        ]
        assert fields[2].note.endswith("one of: fact; opinion")

    def test_text_without_output_header_has_no_fields(self) -> None:
        """A system text that is not a DSPy prompt declares no fields."""
        assert dspy_output_fields("You are a helpful assistant.") == ()

    def test_nested_parentheses_in_types_are_kept(self) -> None:
        """A nested type such as `dict[str, list[int]]` is read whole, brackets included."""
        fields = dspy_output_fields(_system_with([("m", "dict[str, list[int]]", "")]))
        assert fields[0].type == "dict[str, list[int]]"


class TestChatAdapterAnswer:
    def test_compat_prompt_answer_parses_into_typed_fields(self) -> None:
        """Every output field appears in its marker with a value of its declared type."""
        ask = parse_openai(_chat_fixture())
        (choice,) = compose(ask, ids=["call_1"])
        assert choice.text is not None
        assert choice.text.endswith("[[ ## completed ## ]]")
        sections = parse_chat_adapter(choice.text)
        assert list(sections) == ["answer", "confidence", "kind", "completed"]
        assert sections["answer"].startswith("answer ")
        assert "Berlin is in Germany." in sections["answer"]
        assert 0.0 <= float(sections["confidence"]) <= 1.0
        assert sections["kind"] == "fact"

    @pytest.mark.parametrize(
        ("kind", "note", "check"),
        [
            ("int", "must be a single int value", lambda v: 1 <= int(v) <= 100),
            ("bool", "must be True or False", lambda v: v == "True"),
            ("list[int]", "", lambda v: all(isinstance(x, int) for x in json.loads(v))),
            ("list[str]", "", lambda v: all(isinstance(x, str) for x in json.loads(v))),
            ("dict[str, float]", "", lambda v: isinstance(json.loads(v)["key"], float)),
            ("Optional[int]", "", lambda v: int(v) >= 1),
            ("int | None", "", lambda v: int(v) >= 1),
            ("Color", "must be one of: red; green", lambda v: v == "red"),
            ("Literal['yes', 'no']", "", lambda v: v == "yes"),
        ],
    )
    def test_values_fit_the_declared_type(self, kind: str, note: str, check: Any) -> None:
        """A field's value is rendered so that its declared type parses it."""
        fields = dspy_output_fields(_system_with([("out", kind, note)]))
        sections = parse_chat_adapter(chat_adapter_answer(fields, seed="q", snippet="s"))
        assert check(sections["out"]), sections["out"]

    def test_json_schema_note_gives_a_matching_object(self) -> None:
        """A pydantic-typed field (its note carries a JSON schema) gets an object of that shape."""
        schema = {
            "properties": {"city": {"type": "string"}, "pop": {"type": "integer"}},
            "required": ["city", "pop"],
            "type": "object",
        }
        note = f"must adhere to the JSON schema: {json.dumps(schema)}"
        fields = dspy_output_fields(_system_with([("place", "Place", note)]))
        value = json.loads(
            parse_chat_adapter(chat_adapter_answer(fields, seed="q", snippet=""))["place"]
        )
        assert isinstance(value["city"], str)
        assert isinstance(value["pop"], int)

    def test_same_request_same_answer_other_request_other_answer(self) -> None:
        """Answers are a function of the request: equal inputs, equal text; new input, new text."""
        fields = (OutputField("answer", "str"),)
        first = chat_adapter_answer(fields, seed="question one", snippet="x")
        assert first == chat_adapter_answer(fields, seed="question one", snippet="x")
        assert first != chat_adapter_answer(fields, seed="question two", snippet="x")


class TestSchemaValue:
    def test_every_json_type_is_filled(self) -> None:
        """Strings, numbers, integers, booleans, nulls, arrays and nested objects all get values."""
        schema = {
            "type": "object",
            "properties": {
                "s": {"type": "string"},
                "n": {"type": "number", "minimum": 2, "maximum": 3},
                "i": {"type": "integer", "maximum": 0},
                "b": {"type": "boolean"},
                "z": {"type": "null"},
                "a": {"type": "array", "items": {"type": "integer"}, "minItems": 3},
                "o": {"type": "object", "properties": {"deep": {"type": "string"}}},
                "e": {"enum": ["first", "second"]},
                "c": {"const": 7},
            },
        }
        value = schema_value(schema, seed="x", snippet="")
        assert isinstance(value["s"], str)
        assert 2 <= value["n"] <= 3
        assert value["i"] == 0
        assert value["b"] is True
        assert value["z"] is None
        assert len(value["a"]) == 3
        assert all(isinstance(x, int) for x in value["a"])
        assert isinstance(value["o"]["deep"], str)
        assert value["e"] == "first"
        assert value["c"] == 7

    def test_refs_and_unions_resolve(self) -> None:
        """`$ref` into `$defs` and `anyOf` with null resolve to the referenced, non-null type."""
        schema = {
            "$defs": {"Item": {"type": "object", "properties": {"qty": {"type": "integer"}}}},
            "type": "object",
            "properties": {
                "item": {"$ref": "#/$defs/Item"},
                "maybe": {"anyOf": [{"type": "null"}, {"type": "string"}]},
                "multi": {"type": ["null", "boolean"]},
            },
        }
        value = schema_value(schema, seed="x", snippet="")
        assert isinstance(value["item"]["qty"], int)
        assert isinstance(value["maybe"], str)
        assert value["multi"] is True

    def test_recursive_schema_terminates(self) -> None:
        """A self-referencing schema stops at the depth limit instead of recursing forever."""
        schema = {
            "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
            "$ref": "#/$defs/Node",
        }
        value = schema_value(schema, seed="x", snippet="")
        depth = 0
        while isinstance(value, dict):
            value, depth = value.get("next"), depth + 1
        assert 1 <= depth <= 10

    def test_string_lengths_and_formats_are_respected(self) -> None:
        """maxLength, minLength and common formats shape the generated string."""
        schema = {
            "type": "object",
            "properties": {
                "short": {"type": "string", "maxLength": 3},
                "long": {"type": "string", "minLength": 80},
                "when": {"type": "string", "format": "date-time"},
            },
        }
        value = schema_value(schema, seed="x", snippet="")
        assert len(value["short"]) == 3
        assert len(value["long"]) >= 80
        assert value["when"] == "2026-01-01T00:00:00Z"


class TestHelpers:
    def test_stable_hash_is_eight_hex_digits(self) -> None:
        """The answer hash is short, hexadecimal and stable."""
        assert re.fullmatch(r"[0-9a-f]{8}", stable_hash("a", "b"))
        assert stable_hash("a", "b") == stable_hash("a", "b")
        assert stable_hash("a", "b") != stable_hash("ab")

    def test_tokens_are_a_quarter_of_the_characters_never_zero(self) -> None:
        """Usage counts about four characters per token and at least one."""
        assert estimate_tokens("x" * 400) == 100
        assert estimate_tokens("") == 1

    def test_snippet_is_the_first_dspy_input_value(self) -> None:
        """For a DSPy prompt the snippet is the first field's value; else the first line."""
        assert snippet_of(_USER["content"]) == '["Berlin is in Germany."]'
        assert snippet_of("hello\nworld") == "hello"

    def test_plain_answer_names_the_snippet(self) -> None:
        """A plain answer is one line that mentions what was asked."""
        text = plain_answer(seed="what", snippet="what")
        assert "\n" not in text
        assert text.endswith("re: what")


class TestParsing:
    def test_openai_body_must_name_a_model(self) -> None:
        """A body without `model` is rejected with 400 naming the parameter."""
        with pytest.raises(Rejected, match=r"^model: a non-empty string is required$") as info:
            parse_openai({"messages": [{"role": "user", "content": "x"}]})
        assert info.value.status == 400
        assert info.value.param == "model"

    def test_openai_n_out_of_range_is_rejected(self) -> None:
        """`n` must be an integer from 1 to 128."""
        with pytest.raises(Rejected, match=r"^n: must be an integer >= 1$"):
            parse_openai({"model": "m", "messages": [_USER], "n": 0})

    def test_anthropic_requires_max_tokens(self) -> None:
        """Anthropic's body without `max_tokens` is a 400 naming the field."""
        with pytest.raises(Rejected, match=r"^max_tokens: Field required$"):
            parse_anthropic({"model": "m", "messages": [_USER]})

    def test_unknown_response_format_is_rejected(self) -> None:
        """A response_format type OpenAI does not know is a 400 on that parameter."""
        with pytest.raises(Rejected, match=r"^response_format.type: must be one of") as info:
            parse_openai({"model": "m", "messages": [_USER], "response_format": {"type": "xml"}})
        assert info.value.param == "response_format.type"

    def test_json_object_with_dspy_prompt_names_every_field(self) -> None:
        """JSON mode on a DSPy prompt answers an object holding each output field."""
        body = {
            "model": "m",
            "messages": [{"role": "system", "content": _SYSTEM}, _USER],
            "response_format": {"type": "json_object"},
        }
        (choice,) = compose(parse_openai(body), ids=["c"])
        assert choice.text is not None
        value = json.loads(choice.text)
        assert list(value) == ["answer", "confidence", "kind"]
        assert value["kind"] == "fact"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool"]) | _JSON, "content": _JSON}
)
_SCHEMA_KEYS = st.sampled_from(
    ["type", "properties", "items", "enum", "anyOf", "$ref", "minItems", "maxLength", "minimum"]
)
_SCHEMA = st.recursive(
    _JSON, lambda inner: st.dictionaries(_SCHEMA_KEYS, inner, max_size=5), max_leaves=30
)
_BODY = st.fixed_dictionaries(
    {"model": st.just("gpt-4o-mini") | _JSON, "messages": st.lists(_MESSAGE, max_size=3) | _JSON},
    optional={
        "n": st.integers(-1, 4) | _JSON,
        "max_tokens": st.integers(-1, 50) | _JSON,
        "stop": _JSON,
        "tools": _JSON,
        "tool_choice": _JSON,
        "response_format": st.fixed_dictionaries(
            {"type": st.sampled_from(["json_schema", "json_object", "text"])},
            optional={
                "json_schema": st.fixed_dictionaries({"name": st.just("S"), "schema": _SCHEMA})
            },
        )
        | _JSON,
        "system": _JSON,
        "stream": st.booleans() | _JSON,
    },
)


class TestRobustness:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=_BODY | _JSON)
    def test_any_body_is_answered_or_rejected(self, body: Any) -> None:
        """Whatever JSON arrives, each API either answers it or rejects it with a 400."""
        for parse in (parse_openai, parse_anthropic):
            try:
                ask = parse(body)
            except Rejected as exc:
                assert exc.status == 400
                continue
            choices = compose(ask, ids=[f"id{i}" for i in range(ask.n)])
            assert len(choices) == ask.n
            for choice in choices:
                json.dumps(choice.text if choice.text is not None else choice.tool_arguments)

    @settings(max_examples=300, deadline=None)
    @given(schema=_SCHEMA)
    def test_any_schema_gives_a_json_value(self, schema: Any) -> None:
        """schema_value never fails and always returns a JSON-encodable value."""
        if isinstance(schema, dict):
            json.dumps(schema_value(schema, seed="s", snippet="x"))
