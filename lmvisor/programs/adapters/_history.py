"""Conversation-history turns, as DSPy 3.4.1 renders a `History` input, tool calls included.

Each history entry (a dict of field values) becomes a user turn with its inputs (ending
with the output reminder when it has any input) and an assistant turn with its outputs.
An entry whose value is a `ToolCalls` (or a dict with `tool_calls`) carrying results:

- with native function calling, is an assistant message with the entry's other outputs
  as content (or null) and the calls as OpenAI `tool_calls`, then one `tool` message per
  result; results whose call ids do not match the calls one for one are dropped, and
  with them the `tool_calls` (an entry left with nothing to say adds no message);
- otherwise, is the assistant turn with the calls (results removed), then a user turn
  holding the results under a `tool_call_results` field.

Messages come out as the OpenAI wire carries them (DSPy's engine re-serializes what its
adapter builds): call arguments as compact JSON, `tool` messages without the tool name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lmvisor.programs.adapters._values import serialize_for_json
from lmvisor.programs.fields import InputField, OutputField
from lmvisor.programs.history import History
from lmvisor.programs.signature import Signature, make_signature
from lmvisor.programs.tool_calls import ToolCallResults, ToolCalls

if TYPE_CHECKING:
    from lmvisor.programs.adapters.chat import ChatAdapter

__all__ = ["history_turns"]


def history_turns(
    adapter: ChatAdapter, signature: type[Signature], history: History
) -> list[dict[str, Any]]:
    """The turns of `history` for `signature` (the request's, without the history field).

    Raises:
        ValueError: an entry's tool calls or their results cannot be read.
    """
    turns: list[dict[str, Any]] = []
    for message in history.messages:
        name, calls = _tool_calls_in(message)
        results = calls.results() if calls is not None else None
        has_inputs = any(field in message for field in signature._inputs)
        user = adapter.format_user_message_content(signature, message, main_request=has_inputs)
        if user:
            turns.append({"role": "user", "content": user})
        if adapter.use_native_function_calling and calls is not None:
            turns.extend(_native_turns(adapter, signature, message, calls, results))
        else:
            turns.extend(_text_turns(adapter, signature, message, name, calls, results))
    return turns


def _tool_calls_in(message: Mapping[str, Any]) -> tuple[str | None, ToolCalls | None]:
    """The first value holding tool calls (a ToolCalls, or a dict with `tool_calls`)."""
    for name, value in message.items():
        if isinstance(value, ToolCalls) or (isinstance(value, Mapping) and "tool_calls" in value):
            return name, ToolCalls.validate(value)
    return None, None


def _native_turns(
    adapter: ChatAdapter,
    signature: type[Signature],
    message: Mapping[str, Any],
    calls: ToolCalls,
    results: ToolCallResults | None,
) -> list[dict[str, Any]]:
    shown = signature
    for name, field in signature._outputs.items():
        if field.annotation is ToolCalls or message.get(name) is None:
            shown = shown.delete(name)
    content = adapter.format_assistant_message_content(shown, message) if shown._outputs else ""
    if results is not None:
        ids = [call.id for call in calls.tool_calls]
        if ids != [r.call_id for r in results.tool_call_results] or not all(ids):
            results = None
    turns: list[dict[str, Any]] = []
    if content or results is not None:
        turn: dict[str, Any] = {"role": "assistant", "content": content or None}
        if results is not None:
            turn["tool_calls"] = [_wire_call(call) for call in calls.tool_calls]
        turns.append(turn)
    if results is not None:
        turns.extend(
            {"role": "tool", "tool_call_id": r.call_id, "content": _result_text(r.value)}
            for r in results.tool_call_results
        )
    return turns


def _text_turns(
    adapter: ChatAdapter,
    signature: type[Signature],
    message: Mapping[str, Any],
    name: str | None,
    calls: ToolCalls | None,
    results: ToolCallResults | None,
) -> list[dict[str, Any]]:
    values = message
    if name is not None and calls is not None and results is not None:
        values = {**message, name: calls.without_results()}
    turns: list[dict[str, Any]] = []
    reply = adapter.format_assistant_message_content(signature, values)
    if reply:
        turns.append({"role": "assistant", "content": reply})
    if results is not None:
        shown = adapter.format_user_message_content(
            _results_signature(), {"tool_call_results": results}
        )
        turns.append({"role": "user", "content": shown})
    return turns


def _results_signature() -> type[Signature]:
    """DSPy renders results as the one input of a signature of their own. lmvisor's
    signatures need an output too; only inputs are rendered here, so it never shows."""
    fields = {
        "tool_call_results": (ToolCallResults, InputField()),
        "unused": (str, OutputField()),
    }
    return make_signature(fields, "", name="ToolCallResultsSignature")


def _wire_call(call: ToolCalls.ToolCall) -> dict[str, Any]:
    arguments = json.dumps(serialize_for_json(call.args), separators=(",", ":"))
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def _result_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(serialize_for_json(value), ensure_ascii=False)
