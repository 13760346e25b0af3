"""The OpenAI Chat Completions client: `OpenAIClient`, and the wire mapping it shares.

`LMRequest.params` already use OpenAI's names, so they pass through as given
(None values dropped), except `max_tokens`, sent as `max_completion_tokens`
(required by the o-series and accepted by every current model). Streams ask
for `stream_options.include_usage` so `LMDone` carries the real usage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, final

from lmvisor.programs.lm import LMDelta, LMRequest, LMResponse, ToolCall, Usage
from lmvisor.providers._base import (
    MAX_COUNT,
    MAX_INDEX,
    HttpVendorClient,
    StreamState,
    decode_arguments,
    decode_json,
    shape_error,
    wire_int,
)
from lmvisor.providers.client import ClientOptions
from lmvisor.providers.errors import error_from_body
from lmvisor.providers.reasoning import message_reasoning
from lmvisor.providers.sse import SSEEvent
from lmvisor.providers.transport import Transport

__all__ = ["OpenAIClient"]

# lmvisor's own control params (a cache's `rollout_id`, `cache`) never reach the vendor.
_RESERVED = frozenset({"model", "messages", "stream", "stream_options", "rollout_id", "cache"})
_DONE = "[DONE]"
_NO_USAGE = Usage()


def _openai_usage(raw: Any) -> Usage:
    """Usage from OpenAI's `usage` object (missing or partial counts are 0)."""
    # Decoded JSON objects are dicts: `type(...) is dict` spares the Mapping ABC check.
    if type(raw) is not dict:
        return _NO_USAGE
    # wire_int's rule inline (a non-negative int up to MAX_COUNT, else 0): this runs per answer.
    prompt = raw.get("prompt_tokens")
    prompt = prompt if type(prompt) is int and 0 <= prompt <= MAX_COUNT else 0
    completion = raw.get("completion_tokens")
    completion = completion if type(completion) is int and 0 <= completion <= MAX_COUNT else 0
    total = raw.get("total_tokens")
    total = total if type(total) is int and 0 < total <= MAX_COUNT else prompt + completion
    details = raw.get("prompt_tokens_details")
    cached = wire_int(details.get("cached_tokens")) if type(details) is dict else 0
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        cached_tokens=cached,
    )


class _OpenAIWire(HttpVendorClient):
    """Chat Completions over the transport; subclasses pick the token-limit name."""

    _max_tokens_key: ClassVar[str] = "max_completion_tokens"
    _other_max_key: ClassVar[str] = "max_tokens"
    _require_done: ClassVar[bool] = True

    def __init__(self, options: ClientOptions, *, transport: Transport | None = None) -> None:
        super().__init__(options, transport=transport)
        vendor = {"Content-Type": "application/json"}
        if self._api_key:
            vendor["Authorization"] = f"Bearer {self._api_key}"
        self._set_endpoint("/chat/completions", vendor, options.headers, accept="Accept")

    def _payload(self, request: LMRequest, model: str, *, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": model, "messages": request.messages}
        params = request.params
        for key, value in params.items():
            if value is None or key in _RESERVED:
                continue
            if key == self._other_max_key:
                if self._max_tokens_key in params:
                    continue
                key = self._max_tokens_key
            payload[key] = value
        if stream:
            payload["stream"] = True
            options = params.get("stream_options")
            if options is not None:
                payload["stream_options"] = options
            elif self._stream_usage:
                payload["stream_options"] = {"include_usage": True}
        return payload

    def _parse(self, data: dict[str, Any], model: str) -> LMResponse:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise shape_error(self._name, model, "choices", "expected a non-empty list")
        outputs: list[str] = []
        # Decoded JSON objects are dicts: `type(...) is dict` spares the Mapping ABC check.
        for i, choice in enumerate(choices):
            message = choice.get("message") if type(choice) is dict else None
            if type(message) is not dict:
                raise shape_error(self._name, model, f"choices[{i}].message", "expected an object")
            content = message.get("content")
            outputs.append(content if type(content) is str else self._text(content, model, i))
        first = choices[0]
        message = first["message"]
        usage = _openai_usage(data.get("usage"))
        reported = data.get("model")
        reported = reported if type(reported) is str else model
        finish = first.get("finish_reason")
        calls = message.get("tool_calls")
        return LMResponse(
            outputs=outputs,
            usage=usage,
            cost=self._cost(model, reported, usage),
            finish_reason=finish if type(finish) is str else None,
            model=reported,
            tool_calls=self._tool_calls(calls, model) if calls else (),
            reasoning=(
                message_reasoning(message)
                if "reasoning_content" in message or "reasoning" in message
                else None
            ),
        )

    def _text(self, content: Any, model: str, index: int) -> str:
        if isinstance(content, str):
            return content
        if content is None:
            return ""
        if isinstance(content, list):
            texts: list[str] = []
            for j, part in enumerate(content):
                text = part.get("text", "") if isinstance(part, Mapping) else ""
                if not isinstance(text, str):
                    where = f"choices[{index}].message.content[{j}].text"
                    raise shape_error(self._name, model, where, "expected a string")
                texts.append(text)
            return "".join(texts)
        raise shape_error(
            self._name, model, f"choices[{index}].message.content", "expected a string"
        )

    def _tool_calls(self, raw: Any, model: str) -> tuple[ToolCall, ...]:
        if not raw:
            return ()
        if not isinstance(raw, list):
            raise shape_error(self._name, model, "choices[0].message.tool_calls", "not a list")
        calls: list[ToolCall] = []
        for i, item in enumerate(raw):
            where = f"choices[0].message.tool_calls[{i}]"
            function = item.get("function") if isinstance(item, Mapping) else None
            if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
                raise shape_error(self._name, model, f"{where}.function", "missing name")
            arguments = decode_arguments(
                function.get("arguments"),
                provider=self._name,
                model=model,
                what=f"{where}.function.arguments",
            )
            calls.append(
                ToolCall(id=str(item.get("id") or ""), name=function["name"], arguments=arguments)
            )
        return tuple(calls)

    def _stream_state(self, request: LMRequest, model: str) -> StreamState:
        return _OpenAIStream(self, model)


class _OpenAIStream(StreamState):
    """Accumulates chat.completion.chunk events until `data: [DONE]`."""

    def __init__(self, wire: _OpenAIWire, model: str) -> None:
        self._wire = wire
        self._model = model
        self._texts: dict[int, list[str]] = {}
        self._finish: dict[int, str] = {}
        self._tools: dict[int, dict[str, Any]] = {}
        self._reasoning: list[str] = []
        self._usage: Any = None
        self._reported = ""

    def feed(self, event: SSEEvent) -> list[LMDelta]:
        wire = self._wire
        if event.data == _DONE:
            self.finished = True
            return []
        chunk = decode_json(event.data, provider=wire.name, model=self._model, what="stream chunk")
        if not isinstance(chunk, Mapping):
            raise shape_error(wire.name, self._model, "stream chunk", "expected a JSON object")
        if event.event == "error" or "error" in chunk:
            raise error_from_body(
                provider=wire.name, model=self._model, body=chunk, secret=wire._api_key
            )
        if isinstance(chunk.get("model"), str):
            self._reported = chunk["model"]
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        choices = chunk.get("choices") or ()
        if not isinstance(choices, list | tuple):
            raise shape_error(wire.name, self._model, "stream choices", "expected a list")
        deltas: list[LMDelta] = []
        for choice in choices:
            self._choice(choice, deltas)
        return deltas

    def _choice(self, choice: Any, deltas: list[LMDelta]) -> None:
        if not isinstance(choice, Mapping):
            raise shape_error(self._wire.name, self._model, "stream choices[]", "not an object")
        index = wire_int(choice.get("index"), MAX_INDEX)
        delta = choice.get("delta") or {}
        text = delta.get("content") if isinstance(delta, Mapping) else None
        self._texts.setdefault(index, [])
        if isinstance(text, str) and text:
            self._texts[index].append(text)
            deltas.append(LMDelta(text=text, index=index))
        if index == 0 and isinstance(delta, Mapping):
            thought = message_reasoning(delta)
            if thought:
                self._reasoning.append(thought)
                deltas.append(LMDelta(text=thought, reasoning=True))
            calls = delta.get("tool_calls") or ()
            if not isinstance(calls, list | tuple):
                where = "stream choices[0].delta.tool_calls"
                raise shape_error(self._wire.name, self._model, where, "expected a list")
            for call in calls:
                self._tool_part(call)
        finish = choice.get("finish_reason")
        if isinstance(finish, str):
            self._finish[index] = finish

    def _tool_part(self, call: Any) -> None:
        if not isinstance(call, Mapping):
            return
        slot = self._tools.setdefault(
            wire_int(call.get("index"), MAX_INDEX), {"id": "", "name": "", "args": []}
        )
        if call.get("id"):
            slot["id"] = call["id"]
        function = call.get("function")
        if isinstance(function, Mapping):
            if function.get("name"):
                slot["name"] = function["name"]
            if isinstance(function.get("arguments"), str):
                slot["args"].append(function["arguments"])

    def response(self) -> LMResponse:
        wire = self._wire
        all_finished = bool(self._finish) and self._finish.keys() >= self._texts.keys()
        if not self.finished and (wire._require_done or not all_finished):
            raise wire._incomplete(self._model, "data: [DONE]")
        count = max(self._texts, default=0) + 1
        usage = _openai_usage(self._usage)
        reported = self._reported or self._model
        calls = tuple(
            ToolCall(
                id=str(slot["id"]),
                name=str(slot["name"]),
                arguments=decode_arguments(
                    "".join(slot["args"]),
                    provider=wire.name,
                    model=self._model,
                    what=f"tool_calls[{i}].function.arguments",
                ),
            )
            for i, slot in sorted(self._tools.items())
        )
        return LMResponse(
            outputs=["".join(self._texts.get(i, ())) for i in range(count)],
            usage=usage,
            cost=wire._cost(self._model, reported, usage),
            finish_reason=self._finish.get(0),
            model=reported,
            tool_calls=calls,
            reasoning="".join(self._reasoning) or None,
        )


@final
class OpenAIClient(_OpenAIWire):
    """A client of OpenAI's Chat Completions API (or a gateway speaking it exactly).

    Built from `ClientOptions` (base URL default "https://api.openai.com/v1",
    name "openai", usage asked for in streams) and, optionally, a `Transport`
    to send through (left open by `aclose()`; None builds the options' kind).
    Models are accepted bare or prefixed "openai/" or "<name>/".

    Raises:
        TypeError: `options` is not a `ClientOptions`.
        ValueError: the transport cannot be built from the options.
    """

    _vendor = "openai"
    _default_base_url = "https://api.openai.com/v1"
    _default_stream_usage = True
