"""Anthropic request mapping: OpenAI-shaped messages and params to `/v1/messages` pieces.

`AnthropicClient` (whose module docstring lists the whole mapping) builds its
payload from these; each raises ValueError naming the message or param it
cannot map.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lmvisor.providers._media import anthropic_document, anthropic_image, unsupported_by_anthropic
from lmvisor.providers.reasoning import anthropic_thinking

__all__ = [
    "DROPPED_PARAMS",
    "json_instruction",
    "json_schema",
    "map_options",
    "to_anthropic_messages",
]

# Params mapped by name here, or OpenAI-only; any other param is sent as given.
DROPPED_PARAMS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "n",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "user",
        "reasoning_effort",
        "rollout_id",
        "cache",
    }
)
_JSON_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose, no code fences."
)


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    if content is None:
        return ""
    raise ValueError(f"{where}.content must be a string or a list of parts")


def _blocks(content: Any, where: str) -> str | list[dict[str, Any]]:
    """User or assistant content: a string as is, OpenAI parts as Anthropic blocks."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ValueError(f"{where}.content must be a string or a list of parts")
    blocks: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, Mapping):
            raise ValueError(f"{where}.content parts must be objects")
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            blocks.append(anthropic_image(part))
        elif part.get("type") == "file":
            blocks.append(anthropic_document(part))
        elif part.get("type") == "input_audio":
            raise unsupported_by_anthropic(part)
        else:
            blocks.append(dict(part))
    return blocks


def _assistant(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    calls = message.get("tool_calls")
    content = message.get("content")
    if not calls:
        return {"role": "assistant", "content": _blocks(content or "", where)}
    if not isinstance(calls, list):
        raise ValueError(f"{where}.tool_calls must be a list")
    blocks: list[dict[str, Any]] = []
    text = _text_of(content, where)
    if text:
        blocks.append({"type": "text", "text": text})
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            raise ValueError(f"{where}.tool_calls[{j}].function must be an object")
        arguments = function.get("arguments") or "{}"
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except (ValueError, RecursionError):
                raise ValueError(
                    f"{where}.tool_calls[{j}].function.arguments is not valid JSON"
                ) from None
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": arguments,
            }
        )
    return {"role": "assistant", "content": blocks}


def _tool_result(message: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
    block = {
        "type": "tool_result",
        "tool_use_id": message.get("tool_call_id", ""),
        "content": _text_of(message.get("content"), "tool message"),
    }
    previous = out[-1] if out else None
    if (
        previous is not None
        and previous["role"] == "user"
        and isinstance(previous["content"], list)
        and all(b.get("type") == "tool_result" for b in previous["content"])
    ):
        previous["content"].append(block)
    else:
        out.append({"role": "user", "content": [block]})


def to_anthropic_messages(
    messages: list[dict[str, Any]],
) -> tuple[list[str], list[dict[str, Any]]]:
    """Split OpenAI-shaped messages into (system texts, Anthropic messages).

    Raises:
        ValueError: a message lacks a role, has an unknown role or bad content;
            the message names its index.
    """
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, Mapping) else None
        if role in ("system", "developer"):
            system.append(_text_of(message.get("content"), where))
        elif role == "user":
            out.append({"role": "user", "content": _blocks(message.get("content", ""), where)})
        elif role == "assistant":
            out.append(_assistant(message, where))
        elif role == "tool":
            _tool_result(message, out)
        else:
            raise ValueError(f"{where}.role must be system, user, assistant or tool, got {role!r}")
    return system, out


def _tools(tools: Any) -> list[dict[str, Any]]:
    mapped: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise ValueError(f"params.tools[{i}] must be an object")
        if "input_schema" in tool:
            mapped.append(dict(tool))
            continue
        function = tool.get("function", tool)
        if not isinstance(function.get("name"), str):
            raise ValueError(f"params.tools[{i}] must name a function")
        entry: dict[str, Any] = {
            "name": function["name"],
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            entry["description"] = function["description"]
        mapped.append(entry)
    return mapped


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    mapped: dict[str, Any] | None
    if choice is None:
        mapped = None
    elif choice in ("auto", "required", "any", "none"):
        mapped = {"type": {"required": "any"}.get(choice, choice)}
    elif isinstance(choice, Mapping) and choice.get("type") in ("auto", "any", "none", "tool"):
        mapped = dict(choice)
    elif isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        mapped = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise ValueError(f"params.tool_choice is not a known form: {choice!r}")
    if parallel is False:
        mapped = mapped or {"type": "auto"}
        mapped["disable_parallel_tool_use"] = True
    return mapped


def json_schema(response_format: Mapping[str, Any]) -> Any:
    spec = response_format.get("json_schema") or {}
    return spec.get("schema", spec) if isinstance(spec, Mapping) else spec


def json_instruction(response_format: Any) -> str | None:
    if not isinstance(response_format, Mapping):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return _JSON_INSTRUCTION
    if kind == "json_schema":
        schema = json.dumps(json_schema(response_format))
        return f"{_JSON_INSTRUCTION} It must conform to this JSON schema:\n{schema}"
    return None


def map_options(params: Mapping[str, Any], payload: dict[str, Any]) -> None:
    """Add the mapped stop, tools, tool_choice and user params to `payload`."""
    stop = params.get("stop")
    if stop:
        payload["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if params.get("tools"):
        payload["tools"] = _tools(params["tools"])
    choice = _tool_choice(params.get("tool_choice"), params.get("parallel_tool_calls"))
    if choice is not None:
        payload["tool_choice"] = choice
    if params.get("user"):
        payload["metadata"] = {"user_id": str(params["user"])}
    if "thinking" not in params:
        thinking = anthropic_thinking(params.get("reasoning_effort"), int(payload["max_tokens"]))
        if thinking is not None:
            payload["thinking"] = thinking
