"""Capture what DSPy 3.4.1 sends and parses into the JSON fixtures beside this file.

Run it under a Python that has `dspy==3.4.1` installed (never lmvisor's venv):

    /path/to/.venv-dspy/bin/python tests/programs/compat_fixtures/capture.py

Every request goes to a recording OpenAI-compatible server on 127.0.0.1 started here,
which answers with the completion each case scripts. Each fixture file holds a list of
cases: the exact request bodies DSPy sent, the completions it got back, and what it
parsed (each value as `[type name, JSON form]`) or the error it raised. The tests in
tests/programs read these files only; they never import this script or DSPy.
"""

from __future__ import annotations

import enum
import inspect
import json
import math
import os
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Optional, Union

# Stay on loopback: DSPy would otherwise fetch a model price list from the internet.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "true"

import dspy
import pydantic

HERE = Path(__file__).parent
MODEL = "openai/gpt-4o-mini"


# --- the recording server ------------------------------------------------------------


class Recorder:
    """A loopback Chat Completions server that records bodies and plays scripted replies."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.loads(raw)
                recorder.requests.append({"path": self.path, "body": body})
                reply = recorder.replies.pop(0) if recorder.replies else {"content": ""}
                data = json.dumps(recorder.render(body, reply)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @staticmethod
    def render(body: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        if "embedding" in reply:
            return {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": v}
                    for i, v in enumerate(reply["embedding"])
                ],
                "model": body.get("model"),
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        choices = reply.get("choices") or [reply]
        return {
            "id": "chatcmpl-capture",
            "object": "chat.completion",
            "created": 1,
            "model": body.get("model"),
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", **choice},
                    "finish_reason": "tool_calls" if choice.get("tool_calls") else "stop",
                }
                for i, choice in enumerate(choices)
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    def take(self) -> list[dict[str, Any]]:
        taken, self.requests = self.requests, []
        return [r["body"] for r in taken]


REC = Recorder()


def lm(model: str = MODEL, **kwargs: Any) -> dspy.LM:
    return dspy.LM(model, api_base=REC.url, api_key="sk-capture", cache=False, **kwargs)


# --- value encoding -----------------------------------------------------------------


def encode(value: Any) -> Any:
    """A value as [type name, JSON form] so tests can compare types too."""
    return [type(value).__name__, jsonable(value)]


def jsonable(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def outcome(run: Callable[[], Any]) -> dict[str, Any]:
    """Run a parse or a program; record its values or the error it raised."""
    try:
        result = run()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    items = result.items() if hasattr(result, "items") else dict(result).items()
    return {"parsed": {k: encode(v) for k, v in items}}


def program_case(
    name: str,
    run: Callable[[], Any],
    replies: list[Any],
    *,
    adapter: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    """Run `run()` under `adapter` with scripted replies; record requests and outcome."""
    REC.replies = [r if isinstance(r, dict) else {"content": r} for r in replies]
    with dspy.context(lm=lm(), adapter=adapter or dspy.ChatAdapter()):
        result = outcome(run)
    return {"name": name, "requests": REC.take(), "replies": replies, **result, **extra}


def parse_case(name: str, adapter: Any, signature: Any, completion: str) -> dict[str, Any]:
    return {
        "name": name,
        "adapter": type(adapter).__name__,
        "signature": signature.__name__,
        "completion": completion,
        **outcome(lambda: adapter.parse(signature, completion)),
    }


def write(name: str, cases: list[dict[str, Any]]) -> None:
    path = HERE / name
    path.write_text(json.dumps({"cases": cases}, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path.name}: {len(cases)} cases")


# --- shared definitions (mirrored in tests/programs/compat_cases.py) ------------------


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


def chat_reply(**fields: Any) -> str:
    parts = [f"[[ ## {k} ## ]]\n{v}" for k, v in fields.items()]
    return "\n\n".join([*parts, "[[ ## completed ## ]]"])


# --- 1. strict JSON schemas ----------------------------------------------------------


class ItemSig(dspy.Signature):
    """Describe the item."""

    q: str = dspy.InputField()
    item: Item = dspy.OutputField()


class ManySig(dspy.Signature):
    q: str = dspy.InputField()
    items: list[Item] = dspy.OutputField(desc="the items")
    maybe: int | None = dspy.OutputField()
    unit: Unit = dspy.OutputField()
    kind: Literal["a", "b"] = dspy.OutputField()


def capture_schemas() -> None:
    json_adapter = dspy.JSONAdapter()
    cases = [
        program_case(
            "item",
            lambda: dspy.Predict(ItemSig)(q="hi"),
            ['{"item": {"name": "a", "note": null, "inner": {"x": 1}}}'],
            adapter=json_adapter,
        ),
        program_case(
            "many",
            lambda: dspy.Predict(ManySig)(q="hi"),
            [
                '{"items": [{"name": "a", "note": "n", "inner": {"x": 2}}], "maybe": null,'
                ' "unit": "celsius", "kind": "b"}'
            ],
            adapter=json_adapter,
        ),
    ]
    write("schemas.json", cases)


# --- 1. history turns ----------------------------------------------------------------


class ChatSig(dspy.Signature):
    question: str = dspy.InputField()
    history: dspy.History = dspy.InputField()
    answer: str = dspy.OutputField()


HISTORY = [
    {"question": "What is 1+1?", "answer": "2"},
    {"answer": "I can also add bigger numbers."},
    {"question": "And 2+2?"},
]


def capture_history() -> None:
    cases = []
    for adapter in (dspy.ChatAdapter(), dspy.JSONAdapter()):
        reply = (
            chat_reply(answer="6")
            if isinstance(adapter, dspy.JSONAdapter) is False
            else ('{"answer": "6"}')
        )
        cases.append(
            program_case(
                f"history_{type(adapter).__name__}",
                lambda: dspy.Predict(ChatSig)(
                    question="And 3+3?", history=dspy.History(messages=HISTORY)
                ),
                [reply],
                adapter=adapter,
            )
        )
    write("history.json", cases)


# --- 1. type names, instructions, constraints, NaN -------------------------------------


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


def make_sig(spec: dict[str, Any], instructions: str | None = None) -> Any:
    fields = {
        name: (t, dspy.InputField() if kind == "in" else dspy.OutputField())
        for name, (t, kind) in spec.items()
    }
    return dspy.Signature(fields, instructions)


def system_of(adapter: Any, signature: Any, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    return adapter.format(signature, [], inputs)


def capture_prompts() -> None:
    cases = []
    for name, spec in TYPE_SIGNATURES.items():
        sig = make_sig(spec)
        inputs = {"a": "x"}
        for adapter in (dspy.ChatAdapter(), dspy.JSONAdapter()):
            cases.append(
                {
                    "name": f"types_{name}_{type(adapter).__name__}",
                    "messages": system_of(adapter, sig, inputs),
                }
            )
    indented = "\n        Answer briefly.\n          Cite a source.\n        Be kind.\n    "
    for text in (indented, "  Leading spaces only.", "Tabs\n\tinside\n\tlines"):
        sig = dspy.Signature("question -> answer", text)
        cases.append(
            {
                "name": f"instructions_{len(cases)}",
                "instructions": text,
                "messages": system_of(dspy.ChatAdapter(), sig, {"question": "q"}),
            }
        )

    class Bounded(dspy.Signature):
        """Rate it."""

        text: str = dspy.InputField(min_length=1, max_length=50)
        score: int = dspy.OutputField(ge=0, le=10, desc="the score")
        ratio: float = dspy.OutputField(gt=0.0, lt=1.0, multiple_of=0.25)

    for adapter in (dspy.ChatAdapter(), dspy.JSONAdapter()):
        cases.append(
            {
                "name": f"constraints_{type(adapter).__name__}",
                "messages": system_of(adapter, Bounded, {"text": "good"}),
            }
        )
    nan_sig = dspy.Signature("x: float, xs: list[float], d: dict[str, float] -> y")
    nan_inputs = {
        "x": float("nan"),
        "xs": [1.5, float("inf"), float("-inf")],
        "d": {"a": float("nan")},
    }
    for adapter in (dspy.ChatAdapter(), dspy.JSONAdapter()):
        cases.append(
            {
                "name": f"nan_{type(adapter).__name__}",
                "messages": system_of(adapter, nan_sig, nan_inputs),
            }
        )
    write("prompts.json", cases)


# --- 1. parsing: optional outputs, enums, headers, JSON with prose ----------------------


class OptSig(dspy.Signature):
    q: str = dspy.InputField()
    answer: str = dspy.OutputField()
    note: str | None = dspy.OutputField()
    count: Optional[int] = dspy.OutputField()  # noqa: UP045


class EnumSig(dspy.Signature):
    q: str = dspy.InputField()
    color: Color = dspy.OutputField()
    count: Count = dspy.OutputField()


class CountSig(dspy.Signature):
    q: str = dspy.InputField()
    count: int = dspy.OutputField()
    label: str = dspy.OutputField()


CHAT_PARSES: list[tuple[str, Any, str]] = [
    ("optional_missing", OptSig, chat_reply(answer="yes")),
    ("optional_present", OptSig, chat_reply(answer="yes", note="n", count="3")),
    ("optional_none_text", OptSig, chat_reply(answer="yes", note="None", count="None")),
    ("required_missing", OptSig, chat_reply(note="n")),
    ("enum_value", EnumSig, chat_reply(color="red", count="2")),
    ("enum_name", EnumSig, chat_reply(color="GREEN", count="ONE")),
    ("enum_quoted", EnumSig, chat_reply(color="'red'", count="1")),
    ("enum_bad", EnumSig, chat_reply(color="blue", count="1")),
    ("enum_case", EnumSig, chat_reply(color="Red", count="1")),
    ("header_indented", CountSig, "  [[ ## count ## ]] 3\n\n[[ ## label ## ]]\nok"),
    ("header_inline", CountSig, "[[ ## count ## ]] 3\n[[ ## label ## ]] ok\n[[ ## completed ## ]]"),
    ("header_repeated", CountSig, chat_reply(count="3", label="a") + "\n[[ ## count ## ]]\n4"),
    ("header_unknown", CountSig, "[[ ## extra ## ]]\nz\n" + chat_reply(count="5", label="b")),
    ("header_prose_before", CountSig, "Sure!\n" + chat_reply(count=" 7 ", label=" spaced ")),
    ("int_bad", CountSig, chat_reply(count="three", label="x")),
    ("int_float", CountSig, chat_reply(count="3.0", label="x")),
]

JSON_PARSES: list[tuple[str, Any, str]] = [
    ("optional_missing", OptSig, '{"answer": "yes"}'),
    ("optional_null", OptSig, '{"answer": "yes", "note": null, "count": null}'),
    ("prose_braces", CountSig, '{"count": 2, "label": "x"}\nNote: {this} is {not json}.'),
    ("prose_before", CountSig, 'Here you go: {"count": 4, "label": "y"} and {"count": 9}'),
    ("fenced", CountSig, '```json\n{"count": 5, "label": "z"}\n```'),
    ("nested_braces", CountSig, 'x {"count": 6, "label": "{a}"} y {z}'),
    ("enum_value", EnumSig, '{"color": "green", "count": 2}'),
    ("enum_name", EnumSig, '{"color": "RED", "count": "TWO"}'),
    ("enum_str_number", EnumSig, '{"color": "red", "count": "1"}'),
    ("not_json", CountSig, "no json here"),
    ("wrong_type", CountSig, '{"count": "many", "label": "x"}'),
]


def capture_parses() -> None:
    cases = []
    for name, sig, completion in CHAT_PARSES:
        cases.append(parse_case(f"chat_{name}", dspy.ChatAdapter(), sig, completion))
    for name, sig, completion in JSON_PARSES:
        cases.append(parse_case(f"json_{name}", dspy.JSONAdapter(), sig, completion))
    write("parses.json", cases)


# --- 1. ReAct tool rendering -----------------------------------------------------------


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


def capture_react() -> None:
    react = dspy.ReAct("question -> answer", tools=[get_weather, search], max_iters=2)
    replies = [
        chat_reply(
            next_thought="check",
            next_tool_name="get_weather",
            next_tool_args='{"city": "Paris"}',
        ),
        chat_reply(next_thought="done", next_tool_name="finish", next_tool_args="{}"),
        chat_reply(reasoning="it is sunny", answer="sunny"),
    ]
    case = program_case("react", lambda: react(question="Weather in Paris?"), replies)
    case["parsed"].pop("trajectory", None)
    write("react.json", [case])


# --- 1. Refine's feedback request ------------------------------------------------------


def one_word(args, pred):
    return 1.0 if len(pred.answer.split()) == 1 else 0.0


class Answerer(dspy.Module):
    def __init__(self):
        super().__init__()
        self.qa = dspy.Predict("question -> answer")

    def forward(self, question):
        return self.qa(question=question)


def capture_refine() -> None:
    program = Answerer()
    refine = dspy.Refine(module=program, N=2, reward_fn=one_word, threshold=1.0)
    feedback = json.dumps({"discussion": "too long", "advice": {"qa": "Answer in one word."}})
    replies = [
        chat_reply(answer="It is Paris"),
        chat_reply(discussion="too long", advice=json.dumps({"qa": "Answer in one word."})),
        chat_reply(answer="Paris"),
    ]
    case = program_case("refine", lambda: refine(question="Capital of France?"), replies)
    case["program_code"] = inspect.getsource(Answerer)
    case["feedback_json"] = feedback
    write("refine.json", [case])


# --- 1. saved programs with an lm block -------------------------------------------------


def capture_saved() -> None:
    program = dspy.ChainOfThought("question -> answer")
    program.predict.lm = dspy.LM(
        MODEL,
        temperature=0.3,
        max_tokens=321,
        top_p=0.9,
        api_key="sk-secret-never-saved",
        api_base="http://10.0.0.1/v1",
        cache=False,
    )
    program.predict.demos = [dspy.Example(question="2+2?", reasoning="add", answer="4")]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "program.json"
        program.save(str(path))
        saved = json.loads(path.read_text())
    (HERE / "saved_with_lm.json").write_text(json.dumps(saved, indent=2) + "\n")
    print("wrote saved_with_lm.json")


# --- 2. images, audio, files -------------------------------------------------------

PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQ"
    "ABpfZFQAAAAABJRU5ErkJggg=="
)
WAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA="
PDF = "data:application/pdf;base64,JVBERi0xLjQK"


class Caption(dspy.Signature):
    """Describe the picture."""

    image: dspy.Image = dspy.InputField()
    question: str = dspy.InputField()
    caption: str = dspy.OutputField()


class Compare(dspy.Signature):
    images: list[dspy.Image] = dspy.InputField(desc="two pictures")
    same: bool = dspy.OutputField()


class Listen(dspy.Signature):
    audio: dspy.Audio = dspy.InputField()
    transcript: str = dspy.OutputField()


class Read(dspy.Signature):
    document: dspy.File = dspy.InputField()
    note: str = dspy.InputField()
    summary: str = dspy.OutputField()


class Gallery(dspy.Signature):
    named: dict[str, dspy.Image] = dspy.InputField()
    best: str = dspy.OutputField()


def capture_media() -> None:
    cases = []
    image_url = dspy.Image("https://example.com/cat.png")
    for adapter in (dspy.ChatAdapter(), dspy.JSONAdapter()):
        tag = type(adapter).__name__
        json_mode = isinstance(adapter, dspy.JSONAdapter)

        def reply(json_mode: bool = json_mode, **fields: Any) -> str:
            return json.dumps(fields) if json_mode else chat_reply(**fields)

        predict = dspy.Predict(Caption)
        predict.demos = [
            dspy.Example(image=dspy.Image(PNG), question="What is it?", caption="a dot")
        ]
        cases.append(
            program_case(
                f"image_{tag}",
                lambda p=predict: p(image=image_url, question="What animal?"),
                [reply(caption="a cat")],
                adapter=adapter,
            )
        )
        cases.append(
            program_case(
                f"image_list_{tag}",
                lambda: dspy.Predict(Compare)(images=[image_url, dspy.Image(PNG)]),
                [reply(same=False)],
                adapter=adapter,
            )
        )
        cases.append(
            program_case(
                f"audio_{tag}",
                lambda: dspy.Predict(Listen)(audio=dspy.Audio(data=WAV, audio_format="wav")),
                [reply(transcript="hello")],
                adapter=adapter,
            )
        )
        for name, document in (
            ("file_data", dspy.File(file_data=PDF, filename="a.pdf")),
            ("file_id", dspy.File.from_file_id("file-abc123")),
        ):
            cases.append(
                program_case(
                    f"{name}_{tag}",
                    lambda d=document: dspy.Predict(Read)(document=d, note="short"),
                    [reply(summary="empty")],
                    adapter=adapter,
                )
            )
        cases.append(
            program_case(
                f"image_dict_{tag}",
                lambda: dspy.Predict(Gallery)(named={"a": image_url}),
                [reply(best="a")],
                adapter=adapter,
            )
        )
    write("media.json", cases)


# --- 2. XMLAdapter and TwoStepAdapter --------------------------------------------------


class XmlSig(dspy.Signature):
    """Answer with care."""

    question: str = dspy.InputField()
    tags: list[str] = dspy.InputField()
    answer: str = dspy.OutputField()
    score: int = dspy.OutputField()
    items: list[str] = dspy.OutputField()
    item: Item = dspy.OutputField()


XML_PARSES: list[tuple[str, str]] = [
    (
        "plain",
        "<answer>\nyes & no\n</answer>\n<score>\n3\n</score>\n<items><item>a</item>"
        "<item>b</item></items>\n<item><name>n</name><inner><x>1</x></inner></item>",
    ),
    (
        "json_list",
        '<answer>a</answer><score>1</score><items>["x", "y"]</items>'
        '<item>{"name": "n", "inner": {"x": 2}}</item>',
    ),
    ("missing", "<answer>a</answer><score>1</score>"),
    ("bad_xml", "<answer>a</score>"),
    (
        "bad_int",
        "<answer>a</answer><score>many</score><items></items>"
        "<item><name>n</name><inner><x>1</x></inner></item>",
    ),
]


def capture_xml() -> None:
    adapter = dspy.XMLAdapter()
    predict = dspy.Predict(XmlSig)
    predict.demos = [
        dspy.Example(
            question="q1",
            tags=["t"],
            answer="a < b",
            score=1,
            items=["x"],
            item=Item(name="n", inner=Inner(x=1)),
        )
    ]
    completion = (
        "<answer>\nfine\n</answer>\n\n<score>\n2\n</score>\n\n<items><item>a</item></items>"
        "\n\n<item><name>m</name><note /><inner><x>3</x></inner></item>"
    )
    cases = [
        program_case(
            "program",
            lambda: predict(question="Why?", tags=["a", "b"]),
            [completion],
            adapter=adapter,
        )
    ]
    for name, text in XML_PARSES:
        cases.append(parse_case(f"parse_{name}", adapter, XmlSig, text))
    write("xml.json", cases)


def capture_two_step() -> None:
    extractor = lm()
    adapter = dspy.TwoStepAdapter(extractor)
    sig = dspy.Signature("question, context: list[str] -> answer, confidence: float", "Be brief.")
    replies = [
        "The answer is Paris, and I am fairly sure (0.8).",
        chat_reply(answer="Paris", confidence="0.8"),
    ]
    case = program_case(
        "two_step",
        lambda: dspy.Predict(sig)(question="Capital of France?", context=["France is in Europe."]),
        replies,
        adapter=adapter,
    )
    write("two_step.json", [case])


# --- 2. native tool calls and reasoning -------------------------------------------------


def get_time(zone: str) -> str:
    """Tell the time in a zone."""
    return "noon"


class Agent(dspy.Signature):
    """Use the tools."""

    question: str = dspy.InputField()
    tools: list[dspy.Tool] = dspy.InputField()
    answer: str = dspy.OutputField()
    calls: dspy.ToolCalls = dspy.OutputField()


def capture_tool_calls() -> None:
    tools = [dspy.Tool(get_weather), dspy.Tool(get_time)]
    native = {
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_time", "arguments": '{"zone": "CET"}'},
            },
        ],
    }
    text_calls = json.dumps({"tool_calls": [{"name": "get_time", "args": {"zone": "UTC"}}]})
    cases = [
        program_case(
            "json_native",
            lambda: dspy.Predict(Agent)(question="Weather and time in Paris?", tools=tools),
            [native],
            adapter=dspy.JSONAdapter(),
        ),
        program_case(
            "chat_native",
            lambda: dspy.Predict(Agent)(question="Weather and time in Paris?", tools=tools),
            [native],
            adapter=dspy.ChatAdapter(use_native_function_calling=True),
        ),
        program_case(
            "chat_text",
            lambda: dspy.Predict(Agent)(question="Time in London?", tools=tools),
            [chat_reply(answer="checking", calls=text_calls)],
            adapter=dspy.ChatAdapter(),
        ),
        program_case(
            "json_parallel",
            lambda: dspy.Predict(Agent)(question="Weather?", tools=tools[:1]),
            [native],
            adapter=dspy.JSONAdapter(parallel_tool_calls=False),
        ),
    ]
    write("tool_calls.json", cases)


class ToolChat(dspy.Signature):
    """Use the tools."""

    question: str = dspy.InputField()
    history: dspy.History = dspy.InputField()
    tools: list[dspy.Tool] = dspy.InputField()
    answer: str = dspy.OutputField()
    calls: dspy.ToolCalls = dspy.OutputField()


def tool_history() -> list[dict[str, Any]]:
    """Earlier turns holding tool calls and their results, in every shape DSPy accepts."""
    pair = dspy.ToolCalls.from_dict_list(
        [
            {"id": "call_2", "name": "get_time", "args": {"zone": "CET"}},
            {"id": "call_3", "name": "get_weather", "args": {"city": "Rome", "unit": "kelvin"}},
        ]
    )
    results = dspy.ToolCallResults.from_tool_calls_and_values(
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
        {
            "answer": "Checking both.",
            "calls": pair.model_copy(update={"tool_call_results": results}),
        },
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


def capture_history_tools() -> None:
    tools = [dspy.Tool(get_weather), dspy.Tool(get_time)]
    native = {
        "content": None,
        "tool_calls": [
            {
                "id": "call_9",
                "type": "function",
                "function": {"name": "get_time", "arguments": '{"zone": "JST"}'},
            }
        ],
    }
    text_calls = json.dumps({"tool_calls": [{"name": "get_time", "args": {"zone": "JST"}}]})
    replies = {
        "chat_text": chat_reply(answer="checking", calls=text_calls),
        "chat_native": native,
        "json_native": native,
        "json_text": json.dumps({"answer": "checking", "calls": json.loads(text_calls)}),
        "xml_text": f"<answer>checking</answer>\n<calls>{text_calls}</calls>",
    }
    adapters = {
        "chat_text": dspy.ChatAdapter(),
        "chat_native": dspy.ChatAdapter(use_native_function_calling=True),
        "json_native": dspy.JSONAdapter(),
        "json_text": dspy.JSONAdapter(use_native_function_calling=False),
        "xml_text": dspy.XMLAdapter(),
    }
    cases = [
        program_case(
            name,
            lambda: dspy.Predict(ToolChat)(
                question="And the time in Tokyo?",
                history=dspy.History(messages=tool_history()),
                tools=tools,
            ),
            [replies[name]],
            adapter=adapter,
        )
        for name, adapter in adapters.items()
    ]
    write("history_tools.json", cases)


class Think(dspy.Signature):
    question: str = dspy.InputField()
    reasoning: dspy.Reasoning = dspy.OutputField()
    answer: str = dspy.OutputField()


def capture_reasoning() -> None:
    cases = [
        program_case(
            "text_model",
            lambda: dspy.Predict(Think)(question="2+2?"),
            [chat_reply(reasoning="add them", answer="4")],
        )
    ]
    REC.replies = [{"content": chat_reply(answer="4"), "reasoning_content": "2 and 2 make 4"}]
    with dspy.context(lm=lm("openai/o3-mini"), adapter=dspy.ChatAdapter()):
        result = outcome(lambda: dspy.Predict(Think)(question="2+2?"))
    cases.append({"name": "reasoning_model", "requests": REC.take(), **result})
    write("reasoning.json", cases)


class Speak(dspy.Signature):
    """Say it aloud."""

    text: str = dspy.InputField()
    clip: dspy.Audio = dspy.OutputField()


class Attach(dspy.Signature):
    text: str = dspy.InputField()
    document: dspy.File = dspy.OutputField(desc="the file to attach")


def capture_output_types() -> None:
    """Audio, File and Reasoning as outputs: their JSON schemas carry DSPy's descriptions."""
    clip = {"data": "UklGRg==", "audio_format": "wav"}
    document = {"file_data": "data:text/plain;base64,aGk=", "file_id": None, "filename": "hi.txt"}
    cases = []
    for adapter in (dspy.ChatAdapter(), dspy.JSONAdapter()):
        chat = isinstance(adapter, dspy.JSONAdapter) is False
        name = type(adapter).__name__

        def reply(chat: bool = chat, **fields: Any) -> str:
            if chat:
                return chat_reply(**{k: json.dumps(v) for k, v in fields.items()})
            return json.dumps(fields)

        cases.append(
            program_case(
                f"audio_{name}",
                lambda: dspy.Predict(Speak)(text="hello"),
                [reply(clip=clip)],
                adapter=adapter,
            )
        )
        cases.append(
            program_case(
                f"file_{name}",
                lambda: dspy.Predict(Attach)(text="hello"),
                [reply(document=document)],
                adapter=adapter,
            )
        )
    cases.append(
        program_case(
            "reasoning_JSONAdapter",
            lambda: dspy.Predict(Think)(question="2+2?"),
            [json.dumps({"reasoning": "add them", "answer": "4"})],
            adapter=dspy.JSONAdapter(),
        )
    )
    write("output_types.json", cases)


def main() -> None:
    steps = [name for name in sys.argv[1:]] or [
        "schemas",
        "history",
        "prompts",
        "parses",
        "react",
        "refine",
        "saved",
        "media",
        "xml",
        "two_step",
        "tool_calls",
        "reasoning",
        "history_tools",
        "output_types",
    ]
    for step in steps:
        try:
            globals()[f"capture_{step}"]()
        except Exception:
            traceback.print_exc()
            raise


if __name__ == "__main__":
    main()
