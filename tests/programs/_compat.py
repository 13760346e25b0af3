"""The lmvisor side of the DSPy 3.4.1 fixtures: the same signatures, types and tools that
compat_fixtures/capture.py defines in DSPy's terms, and helpers to read the fixtures.
"""

from __future__ import annotations

import enum
import json
import math
from pathlib import Path
from typing import Any, Literal, Optional, Union

import pydantic

from lmvisor.programs.custom_types import Type
from lmvisor.programs.fields import InputField, OutputField
from lmvisor.programs.history import History
from lmvisor.programs.media import Audio, File, Image
from lmvisor.programs.reasoning import Reasoning
from lmvisor.programs.signature import Signature, make_signature
from lmvisor.programs.tool import Tool
from lmvisor.programs.tool_calls import ToolCallResults, ToolCalls

FIXTURES = Path(__file__).parent / "compat_fixtures"
MODEL = "openai/gpt-4o-mini"


def load_cases(name: str) -> dict[str, dict[str, Any]]:
    """The cases of one fixture file, by name."""
    data = json.loads((FIXTURES / name).read_text())
    return {case["name"]: case for case in data["cases"]}


def encode(value: Any) -> list[Any]:
    """A value as [type name, JSON form], as the capture script records it."""
    return [type(value).__name__, jsonable(value)]


def jsonable(value: Any) -> Any:
    """The JSON form of a parsed value (models dumped, enums by value, types as DSPy's)."""
    if isinstance(value, Type):
        return jsonable(value.serialize())
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, type):
        return to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def chat_reply(**fields: Any) -> str:
    """A ChatAdapter completion with each field in its marker section."""
    parts = [f"[[ ## {k} ## ]]\n{v}" for k, v in fields.items()]
    return "\n\n".join([*parts, "[[ ## completed ## ]]"])


class Inner(pydantic.BaseModel):
    x: int


class Item(pydantic.BaseModel):
    name: str
    note: str | None = None
    inner: Inner = pydantic.Field(description="the inner part")


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


class Count(enum.Enum):
    ONE = 1
    TWO = 2


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class ItemSig(Signature):
    """Describe the item."""

    q: str = InputField()
    item: Item = OutputField()


class ManySig(Signature):
    q: str = InputField()
    items: list[Item] = OutputField(desc="the items")
    maybe: int | None = OutputField()
    unit: Unit = OutputField()
    kind: Literal["a", "b"] = OutputField()


class ChatSig(Signature):
    question: str = InputField()
    history: History = InputField()
    answer: str = OutputField()


HISTORY = [
    {"question": "What is 1+1?", "answer": "2"},
    {"answer": "I can also add bigger numbers."},
    {"question": "And 2+2?"},
]

TYPE_SIGNATURES: dict[str, Any] = {
    "pep604_optional": {"a": (str | None, "in"), "b": (int | None, "out")},
    "typing_optional": {"a": (Optional[str], "in"), "b": (Optional[int], "out")},  # noqa: UP045
    "union": {"a": (Union[int, str], "in"), "b": (list[str] | None, "out")},  # noqa: UP007
    "containers": {
        "a": (dict[str, int], "in"),
        "b": (tuple[int, str], "in"),
        "c": (list[dict[str, float]], "out"),
    },
    "literal_quotes": {"a": (str, "in"), "b": (Literal["it's", 'say "hi"', "plain"], "out")},
    "enum_out": {"a": (str, "in"), "b": (Color, "out"), "c": (bool, "out")},
}


def make_sig(spec: dict[str, Any], instructions: str | None = None) -> type[Signature]:
    """A signature from {name: (type, "in" | "out")}."""
    fields = {
        name: (t, InputField() if kind == "in" else OutputField())
        for name, (t, kind) in spec.items()
    }
    return make_signature(fields, instructions)


class Bounded(Signature):
    """Rate it."""

    text: str = InputField(min_length=1, max_length=50)
    score: int = OutputField(ge=0, le=10, desc="the score")
    ratio: float = OutputField(gt=0.0, lt=1.0, multiple_of=0.25)


NAN_INPUTS = {
    "x": float("nan"),
    "xs": [1.5, float("inf"), float("-inf")],
    "d": {"a": float("nan")},
}


class OptSig(Signature):
    q: str = InputField()
    answer: str = OutputField()
    note: str | None = OutputField()
    count: Optional[int] = OutputField()  # noqa: UP045


class EnumSig(Signature):
    q: str = InputField()
    color: Color = OutputField()
    count: Count = OutputField()


class CountSig(Signature):
    q: str = InputField()
    count: int = OutputField()
    label: str = OutputField()


PARSE_SIGNATURES: dict[str, type[Signature]] = {
    "OptSig": OptSig,
    "EnumSig": EnumSig,
    "CountSig": CountSig,
}


def get_weather(city: str, unit: Unit = Unit.C) -> str:
    """Look up the weather.

    Args:
        city: where.
    """
    return f"sunny in {city}"


class Query(pydantic.BaseModel):
    text: str
    limit: int = 3


def search(query: Query, strict: bool = False) -> list[str]:
    """Search the web."""
    return [query.text]


def one_word(args, pred):
    return 1.0 if len(pred.answer.split()) == 1 else 0.0


def assert_same_text(actual: str, expected: str) -> None:
    """Byte-for-byte equality, reporting where the texts first differ."""
    if actual == expected:
        return
    at = next(
        (i for i, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b),
        min(len(actual), len(expected)),
    )
    raise AssertionError(
        f"texts differ at {at}:\n  lmvisor: {actual[max(0, at - 60) : at + 80]!r}"
        f"\n  dspy:    {expected[max(0, at - 60) : at + 80]!r}"
    )


PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQ"
    "ABpfZFQAAAAABJRU5ErkJggg=="
)
WAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA="
PDF = "data:application/pdf;base64,JVBERi0xLjQK"


class Caption(Signature):
    """Describe the picture."""

    image: Image = InputField()
    question: str = InputField()
    caption: str = OutputField()


class Compare(Signature):
    images: list[Image] = InputField(desc="two pictures")
    same: bool = OutputField()


class Listen(Signature):
    audio: Audio = InputField()
    transcript: str = OutputField()


class Read(Signature):
    document: File = InputField()
    note: str = InputField()
    summary: str = OutputField()


class Gallery(Signature):
    named: dict[str, Image] = InputField()
    best: str = OutputField()


class XmlSig(Signature):
    """Answer with care."""

    question: str = InputField()
    tags: list[str] = InputField()
    answer: str = OutputField()
    score: int = OutputField()
    items: list[str] = OutputField()
    item: Item = OutputField()


def get_time(zone: str) -> str:
    """Tell the time in a zone."""
    return "noon"


class Agent(Signature):
    """Use the tools."""

    question: str = InputField()
    tools: list[Tool] = InputField()
    answer: str = OutputField()
    calls: ToolCalls = OutputField()


class ToolChat(Signature):
    """Use the tools."""

    question: str = InputField()
    history: History = InputField()
    tools: list[Tool] = InputField()
    answer: str = OutputField()
    calls: ToolCalls = OutputField()


def tool_history() -> list[dict[str, Any]]:
    """capture.py's `tool_history()`: tool calls and results in every shape DSPy accepts."""
    pair = ToolCalls.from_dict_list(
        [
            {"id": "call_2", "name": "get_time", "args": {"zone": "CET"}},
            {"id": "call_3", "name": "get_weather", "args": {"city": "Rome", "unit": "kelvin"}},
        ]
    )
    results = ToolCallResults.from_tool_calls_and_values(
        pair, [{"hour": 12, "note": "midi ✓"}, "tool failed: boom"], is_errors=[False, True]
    )
    return [
        {
            "question": "Weather in Paris?",
            "calls": {
                "tool_calls": [{"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}}],
                "tool_call_results": [
                    {"call_id": "call_1", "name": "get_weather", "value": "sunny"}
                ],
            },
        },
        {"answer": "Checking both.", "calls": ToolCalls(pair.tool_calls, results)},
        {
            "question": "And Rome?",
            "calls": {
                "tool_calls": [{"id": "call_4", "name": "get_weather", "args": {"city": "Rome"}}],
                "tool_call_results": [{"call_id": "other", "name": "get_weather", "value": "rain"}],
            },
        },
        {
            "calls": {
                "tool_calls": [{"name": "get_time", "args": {"zone": "UTC"}}],
                "tool_call_results": [{"name": "get_time", "value": 12.5}],
            }
        },
        {
            "question": "Thanks",
            "answer": "You're welcome.",
            "calls": [
                {
                    "id": "call_5",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"zone": "UTC"}'},
                }
            ],
        },
        {"question": "Plain turn", "answer": "No tools here."},
    ]


class Speak(Signature):
    """Say it aloud."""

    text: str = InputField()
    clip: Audio = OutputField()


class Attach(Signature):
    text: str = InputField()
    document: File = OutputField(desc="the file to attach")


class Think(Signature):
    question: str = InputField()
    reasoning: Reasoning = OutputField()
    answer: str = OutputField()
