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


def main() -> None:
    steps = [name for name in sys.argv[1:]] or [
        "schemas",
        "history",
        "prompts",
        "parses",
        "react",
        "refine",
        "saved",
    ]
    for step in steps:
        try:
            globals()[f"capture_{step}"]()
        except Exception:
            traceback.print_exc()
            raise


if __name__ == "__main__":
    main()
