"""ToolCalls and Reasoning as values; field bounds checked at parse time; the content-part
splitting of user messages.
"""

from __future__ import annotations

from typing import Annotated

import annotated_types
import pydantic
import pytest

from lmvisor.programs.adapters import ChatAdapter, JSONAdapter, XMLAdapter
from lmvisor.programs.custom_types import custom_types_in, split_content_parts
from lmvisor.programs.errors import AdapterParseError, ConstraintError
from lmvisor.programs.fields import InputField, OutputField
from lmvisor.programs.media import Image
from lmvisor.programs.predict import Predict
from lmvisor.programs.reasoning import Reasoning
from lmvisor.programs.settings import context
from lmvisor.programs.signature import Signature
from lmvisor.programs.tool import Tool
from lmvisor.programs.tool_calls import ToolCallResults, ToolCalls
from lmvisor.testing.scripted_lm import ScriptedLM


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


class TestToolCalls:
    def test_shapes(self) -> None:
        """DSPy's {name, args}, OpenAI's {id, function: {...}} and JSON text read alike."""
        openai = {"id": "c1", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
        calls = ToolCalls.validate({"tool_calls": [{"name": "add", "args": {"a": 1, "b": 2}}]})
        assert ToolCalls.validate([openai]).tool_calls[0].args == calls.tool_calls[0].args
        assert ToolCalls.validate('{"name": "add", "args": {"a": 1, "b": 2}}') == calls
        assert calls.format() == {"tool_calls": [{"name": "add", "args": {"a": 1, "b": 2}}]}

    def test_invalid(self) -> None:
        """Anything else is a ValueError."""
        with pytest.raises(ValueError, match=r"^not a valid ToolCalls value: 3$"):
            ToolCalls.validate(3)

    def test_nested_too_deeply(self) -> None:
        """Calls, or a call's arguments, nested past any decoder's depth are a ValueError."""
        deep = "[" * 100_000
        with pytest.raises(ValueError, match=r"^tool call JSON is nested too deeply$"):
            ToolCalls.validate(deep)
        with pytest.raises(ValueError, match=r"^tool call JSON is nested too deeply$"):
            ToolCalls.validate([{"name": "add", "args": deep}])

    async def test_execute(self) -> None:
        """Calls run against Tools or plain functions by name; an unknown name is refused."""
        calls = ToolCalls.from_dict_list([{"name": "add", "args": {"a": 2, "b": 3}}])
        assert await calls.execute([Tool(add)]) == [5]
        assert await calls.execute({"add": add}) == [5]
        with pytest.raises(ValueError, match=r"^no tool named 'add'$"):
            await calls.execute({})

    def test_schema_is_dspys(self) -> None:
        """As a pydantic type its JSON schema is DSPy's ({"tool_calls": [{"name", "args"}]})."""
        schema = pydantic.TypeAdapter(ToolCalls).json_schema()
        assert schema["properties"]["tool_calls"]["items"] == {"$ref": "#/$defs/ToolCall"}
        assert schema["$defs"]["ToolCall"]["required"] == ["name", "args"]


class TestToolCallResults:
    def test_shapes_read_alike(self) -> None:
        """A list, {"tool_call_results": [...]}, one result, or an instance read the same."""
        one = {"call_id": "c1", "name": "add", "value": 3}
        expected = ToolCallResults(
            [ToolCallResults.ToolCallResult(name="add", value=3, call_id="c1")]
        )
        assert ToolCallResults.validate([one]) == expected
        assert ToolCallResults.validate({"tool_call_results": [one]}) == expected
        assert ToolCallResults.validate(one) == expected
        assert ToolCallResults.validate(expected) is expected

    def test_paired_with_calls_in_order(self) -> None:
        """from_tool_calls_and_values pairs ids and names; lengths must agree."""
        calls = ToolCalls([{"id": "a", "name": "add", "args": {}}, {"name": "sub", "args": {}}])
        results = ToolCallResults.from_tool_calls_and_values(calls, [1, "x"], [False, True])
        assert results.to_dict() == {
            "tool_call_results": [
                {"call_id": "a", "name": "add", "value": 1, "is_error": False},
                {"call_id": None, "name": "sub", "value": "x", "is_error": True},
            ]
        }
        with pytest.raises(ValueError, match=r"^`tool_calls` and `values` must have the same"):
            ToolCallResults.from_tool_calls_and_values(calls, [1])
        with pytest.raises(ValueError, match=r"^`is_errors` must have the same length"):
            ToolCallResults.from_tool_calls_and_values(calls, [1, 2], [True])

    def test_invalid_results_are_refused_when_attached(self) -> None:
        """ToolCalls checks its results at once; a malformed one is a ValueError."""
        with pytest.raises(ValueError, match=r"^not a valid ToolCallResults value: 5$"):
            ToolCalls([{"name": "add", "args": {}}], 5)
        with pytest.raises(ValueError, match=r"^a tool call result must be a mapping with"):
            ToolCallResults.validate([{"name": "add"}])

    def test_results_ride_along_in_the_json_form_only(self) -> None:
        """format() shows the calls; serialize()/to_dict() add the results as given."""
        raw = [{"call_id": "c1", "name": "add", "value": 3}]
        calls = ToolCalls.validate(
            {"tool_calls": [{"id": "c1", "name": "add", "args": {}}], "tool_call_results": raw}
        )
        assert calls.format() == {"tool_calls": [{"name": "add", "args": {}}]}
        assert calls.to_dict()["tool_call_results"] == raw
        assert calls.results() == ToolCallResults.validate(raw)
        assert calls.without_results().tool_call_results is None
        assert calls != calls.without_results()


class TestReasoning:
    def test_str_like(self) -> None:
        """Reasoning compares to and acts like its text."""
        reasoning = Reasoning("Think step by step")
        assert reasoning == "Think step by step"
        assert reasoning.lower() == "think step by step"
        assert "step" in reasoning and len(reasoning) == 18
        assert str(reasoning + "!") == "Think step by step!"

    async def test_native_off_with_effort_none(self) -> None:
        """`reasoning_effort=None` keeps the field in the prompt even for a reasoning model."""

        class Think(Signature):
            question: str = InputField()
            reasoning: Reasoning = OutputField()
            answer: str = OutputField()

        reply = "[[ ## reasoning ## ]]\nadd\n\n[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"
        from lmvisor.programs.lm import LMCapabilities

        lm = ScriptedLM([reply], capabilities=LMCapabilities(reasoning=True))
        with context(lm=lm):
            pred = await Predict(Think, reasoning_effort=None)(question="2+2?")
        assert "[[ ## reasoning ## ]]" in lm.requests[0].messages[0]["content"]
        assert pred.reasoning == "add"


class TestBounds:
    class Rated(Signature):
        text: str = InputField()
        score: int = OutputField(ge=0, le=10)
        tags: list[str] = OutputField(max_length=2)
        ratio: Annotated[float, annotated_types.Gt(0)] = OutputField()

    @pytest.mark.parametrize(
        ("adapter", "completion"),
        [
            (
                ChatAdapter(),
                "[[ ## score ## ]]\n11\n\n[[ ## tags ## ]]\n[]\n\n[[ ## ratio ## ]]\n1",
            ),
            (JSONAdapter(), '{"score": 11, "tags": [], "ratio": 1}'),
            (XMLAdapter(), "<score>11</score><tags></tags><ratio>1</ratio>"),
        ],
    )
    def test_breaking_a_bound_names_field_and_bound(
        self, adapter: ChatAdapter, completion: str
    ) -> None:
        """Every adapter enforces the bound, naming the field and the bound."""
        with pytest.raises(
            ConstraintError, match=r"field 'score' must be less than or equal to 10 \(le\), got 11$"
        ) as info:
            adapter.parse(self.Rated, completion)
        assert info.value.field == "score"
        assert isinstance(info.value, AdapterParseError)

    def test_length_and_annotated_bounds(self) -> None:
        """max_length counts items; an Annotated bound is enforced though not shown."""
        chat = ChatAdapter()
        with pytest.raises(ConstraintError, match=r"field 'tags' must be at most 2 long"):
            chat.parse(
                self.Rated,
                '[[ ## score ## ]]\n1\n\n[[ ## tags ## ]]\n["a","b","c"]\n\n[[ ## ratio ## ]]\n1',
            )
        with pytest.raises(ConstraintError, match=r"field 'ratio' must be greater than 0 \(gt\)"):
            chat.parse(
                self.Rated, "[[ ## score ## ]]\n1\n\n[[ ## tags ## ]]\n[]\n\n[[ ## ratio ## ]]\n0"
            )
        system = chat.format(self.Rated, [], {"text": "t"})[0]["content"]
        assert "Constraints: greater than or equal to: 0, less than or equal to: 10" in system
        assert "greater than: 0" not in system
        assert "(float)" in system

    def test_unknown_option(self) -> None:
        """A misspelt field option is a TypeError at declaration."""
        with pytest.raises(TypeError, match=r"^unknown field option 'maximum'$"):
            OutputField(maximum=3)


class TestContentParts:
    def test_types_in_annotations(self) -> None:
        """Custom types are found however deeply nested in an annotation."""
        assert custom_types_in(dict[str, list[Image]]) == [Image]
        assert custom_types_in(list[ToolCalls | None]) == [ToolCalls]
        assert custom_types_in(str) == []

    def test_plain_messages_unchanged(self) -> None:
        """Messages without marked values are returned as they are."""
        message = {"role": "user", "content": "hi"}
        assert split_content_parts(message) is message
