"""Request side of the loopback LM: validate a vendor body and decide the answer.

`parse_openai` / `parse_anthropic` turn a decoded JSON body into a vendor-neutral `Ask`
(or raise `Rejected` with the status and error fields the vendor would send);
`compose` turns an `Ask` into the `Choice`s the wire layer encodes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lmvisor.testing._lm_answers import (
    chat_adapter_answer,
    dspy_output_fields,
    estimate_tokens,
    fields_json_answer,
    plain_answer,
    schema_value,
    snippet_of,
    stable_hash,
)
from lmvisor.testing._lm_xml import is_xml_prompt, xml_adapter_answer

__all__ = [
    "Ask",
    "Choice",
    "Rejected",
    "ToolSpec",
    "compose",
    "parse_anthropic",
    "parse_openai",
    "tool_call_id",
]

_RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})


class Rejected(Exception):
    """A request the vendor would refuse: becomes an HTTP error response, never escapes."""

    def __init__(
        self, *, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """The tool the answer calls: its name and its parameters' JSON schema."""

    name: str
    schema: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Ask:
    """What a request asks for, whichever vendor's wire format carried it."""

    api: str
    model: str
    stream: bool
    system: str
    user: str
    prompt_tokens: int
    n: int = 1
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    json_schema: Mapping[str, Any] | None = None
    json_mode: bool = False
    tool: ToolSpec | None = None
    include_usage: bool = False
    reasoning: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    """One answer: text (or a tool call with JSON arguments) and why it ended."""

    index: int
    text: str | None
    finish: str
    stop_sequence: str | None = None
    tool_name: str | None = None
    tool_arguments: str | None = None
    tool_id: str = ""

    @property
    def tokens(self) -> int:
        """Completion tokens of this choice."""
        return estimate_tokens(self.text if self.text is not None else self.tool_arguments or "")


def parse_openai(body: Any) -> Ask:
    """Validate an OpenAI Chat Completions body.

    Raises:
        Rejected: 400 naming the offending parameter, as OpenAI words it.
    """
    if not isinstance(body, dict):
        raise Rejected(status=400, message="Request body must be a JSON object.")
    model = _model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Rejected(
            status=400, message="'messages' must be a non-empty array.", param="messages"
        )
    texts = [(str(m.get("role", "")), _text_of(m.get("content"))) for m in _dicts(messages)]
    system = next(
        (t for r, t in texts if r in {"system", "developer"}), texts[0][1] if texts else ""
    )
    schema, json_mode = _openai_format(body.get("response_format"))
    last_is_tool = isinstance(messages[-1], dict) and messages[-1].get("role") == "tool"
    options = body.get("stream_options")
    return Ask(
        api="openai",
        model=model,
        stream=body.get("stream") is True,
        system=system,
        user=next((t for r, t in reversed(texts) if r == "user"), texts[-1][1] if texts else ""),
        prompt_tokens=_prompt_tokens(texts, body.get("tools")),
        n=_int_param(body, "n", 1, low=1, high=128) or 1,
        max_tokens=_int_param(body, "max_completion_tokens", None, low=1)
        or _int_param(body, "max_tokens", None, low=1),
        stop=_stops(body.get("stop"), "stop"),
        json_schema=schema,
        json_mode=json_mode,
        tool=None if last_is_tool else _openai_tool(body.get("tools"), body.get("tool_choice")),
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        reasoning=body.get("reasoning_effort") is not None,
    )


def parse_anthropic(body: Any) -> Ask:
    """Validate an Anthropic Messages body.

    Raises:
        Rejected: 400 invalid_request_error naming the field, as Anthropic words it.
    """
    if not isinstance(body, dict):
        raise Rejected(status=400, message="Request body must be a JSON object.")
    model = _model(body)
    if "max_tokens" not in body:
        raise Rejected(status=400, message="max_tokens: Field required", param="max_tokens")
    max_tokens = _int_param(body, "max_tokens", None, low=1)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Rejected(status=400, message="messages: at least one message is required")
    texts = [(str(m.get("role", "")), _text_of(m.get("content"))) for m in _dicts(messages)]
    system = _text_of(body.get("system")) or (texts[0][1] if texts else "")
    last = messages[-1]
    last_is_tool = isinstance(last, dict) and _has_tool_result(last.get("content"))
    return Ask(
        api="anthropic",
        model=model,
        stream=body.get("stream") is True,
        system=system,
        user=next((t for r, t in reversed(texts) if r == "user"), ""),
        prompt_tokens=_prompt_tokens(
            [("system", _text_of(body.get("system"))), *texts], body.get("tools")
        ),
        max_tokens=max_tokens,
        stop=_stops(body.get("stop_sequences"), "stop_sequences"),
        json_schema=_anthropic_schema(body),
        tool=None if last_is_tool else _anthropic_tool(body.get("tools"), body.get("tool_choice")),
        reasoning=isinstance(body.get("thinking"), dict)
        and body["thinking"].get("type") == "enabled",
    )


def compose(ask: Ask, *, ids: list[str]) -> list[Choice]:
    """The `ask.n` answers to `ask`; `ids` supplies one tool-call id per choice."""
    return [_choice(ask, index, ids[index]) for index in range(ask.n)]


def tool_call_id(prefix: str, seq: int) -> str:
    """A vendor-looking id (`call_...`, `toolu_...`) unique within one server."""
    return f"{prefix}{stable_hash(prefix, str(seq))}{seq:08d}"


def _choice(ask: Ask, index: int, tool_id: str) -> Choice:
    snippet = snippet_of(ask.user)
    if ask.tool is not None:
        args = schema_value(ask.tool.schema, seed=ask.user, snippet=snippet, choice=index)
        return Choice(
            index=index,
            text=None,
            finish="tool_calls",
            tool_name=ask.tool.name,
            tool_arguments=json.dumps(args if isinstance(args, dict) else {}),
            tool_id=tool_id,
        )
    text = _answer_text(ask, snippet, index)
    if ask.max_tokens is not None and estimate_tokens(text) > ask.max_tokens:
        return Choice(index=index, text=text[: ask.max_tokens * 4], finish="length")
    cuts = [(text.find(s), s) for s in ask.stop if s and s in text]
    if cuts:
        position, sequence = min(cuts)
        return Choice(index=index, text=text[:position], finish="stop", stop_sequence=sequence)
    return Choice(index=index, text=text, finish="stop")


def _answer_text(ask: Ask, snippet: str, index: int) -> str:
    fields = dspy_output_fields(ask.system)
    kw: dict[str, Any] = {"seed": ask.user, "snippet": snippet, "choice": index}
    if ask.json_schema:
        return json.dumps(schema_value(ask.json_schema, **kw))
    if fields and (ask.json_schema is not None or ask.json_mode):
        return fields_json_answer(fields, **kw)
    if ask.json_mode:
        return json.dumps({"answer": plain_answer(**kw)})
    if fields and "[[ ## completed ## ]]" in ask.system:
        return chat_adapter_answer(fields, **kw)
    if is_xml_prompt(ask.system, fields):
        return xml_adapter_answer(fields, system=ask.system, **kw)
    if fields:
        return fields_json_answer(fields, **kw)
    return plain_answer(**kw)


def _model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise Rejected(status=400, message="model: a non-empty string is required", param="model")
    return model


def _dicts(items: list[Any]) -> list[dict[str, Any]]:
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise Rejected(
                status=400,
                message=f"messages[{index}]: must be an object",
                param=f"messages[{index}]",
            )
    return items


def _text_of(content: Any) -> str:
    """The text of a message content: a string or a list of typed blocks/parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict):
            if isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif block.get("type") == "tool_result":
                parts.append(_text_of(block.get("content")))
            elif block.get("type") == "tool_use":
                parts.append(json.dumps(block.get("input", {})))
    return "\n".join(parts)


def _has_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def _prompt_tokens(texts: list[tuple[str, str]], tools: Any) -> int:
    total = sum(len(text) for _, text in texts)
    if isinstance(tools, list):
        total += len(json.dumps(tools))
    return max(1, total // 4)


def _int_param(
    body: Mapping[str, Any], name: str, default: int | None, *, low: int, high: int | None = None
) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise Rejected(status=400, message=f"{name}: must be an integer >= {low}", param=name)
    if high is not None and value > high:
        raise Rejected(status=400, message=f"{name}: must be <= {high}", param=name)
    return value


def _stops(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise Rejected(status=400, message=f"{name}: must be a string or a list of strings", param=name)


def _openai_format(value: Any) -> tuple[Mapping[str, Any] | None, bool]:
    """(json schema or None, json_object mode) from `response_format`."""
    if value is None:
        return None, False
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in _RESPONSE_FORMATS:
        raise Rejected(
            status=400,
            message=f"response_format.type: must be one of {sorted(_RESPONSE_FORMATS)}",
            param="response_format.type",
        )
    if kind == "json_object":
        return None, True
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise Rejected(
                status=400,
                message="response_format.json_schema.name: a string is required",
                param="response_format.json_schema",
            )
        schema = spec.get("schema")
        return (schema if isinstance(schema, dict) else {}), True
    return None, False


def _anthropic_schema(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The JSON schema of Anthropic structured outputs (`output_format` or `output_config`)."""
    fmt = body.get("output_format")
    config = body.get("output_config")
    if fmt is None and isinstance(config, dict):
        fmt = config.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema")
        return schema if isinstance(schema, dict) else {}
    return None


def _openai_tool(tools: Any, choice: Any) -> ToolSpec | None:
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    functions = [
        t["function"]
        for t in tools
        if isinstance(t, dict)
        and t.get("type") == "function"
        and isinstance(t.get("function"), dict)
    ]
    wanted = None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        wanted = choice["function"].get("name")
    return _pick_tool(functions, wanted, "parameters")


def _anthropic_tool(tools: Any, choice: Any) -> ToolSpec | None:
    if not isinstance(tools, list) or not tools:
        return None
    kind = choice.get("type") if isinstance(choice, dict) else "auto"
    if kind == "none":
        return None
    wanted = choice.get("name") if kind == "tool" and isinstance(choice, dict) else None
    return _pick_tool([t for t in tools if isinstance(t, dict)], wanted, "input_schema")


def _pick_tool(candidates: list[dict[str, Any]], wanted: Any, schema_key: str) -> ToolSpec | None:
    named = [c for c in candidates if isinstance(c.get("name"), str)]
    if wanted is not None:
        named = [c for c in named if c["name"] == wanted]
        if not named:
            raise Rejected(
                status=400, message=f"tool_choice: no tool named {wanted!r}", param="tool_choice"
            )
    if not named:
        return None
    schema = named[0].get(schema_key)
    return ToolSpec(named[0]["name"], schema if isinstance(schema, dict) else {})
