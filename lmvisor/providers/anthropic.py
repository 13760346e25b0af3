"""The Anthropic Messages client: `AnthropicClient`, mapping OpenAI-shaped requests.

Request mapping from `LMRequest` (OpenAI's names) to `/v1/messages`:

- system (and developer) messages -> the top-level `system` text, joined by
  blank lines; assistant `tool_calls` -> `tool_use` blocks; `tool` messages
  -> `tool_result` blocks in one user turn; `image_url` parts -> image blocks.
- `max_tokens` / `max_completion_tokens` -> `max_tokens`, which Anthropic
  requires: `default_max_tokens` (1024) when the request gives none.
- `stop` -> `stop_sequences`; `tools` -> `{name, description, input_schema}`;
  `tool_choice` "auto"/"required"/"none"/{function} -> auto/any/none/tool;
  `parallel_tool_calls=False` -> `disable_parallel_tool_use`; `user` ->
  `metadata.user_id`.
- `response_format` json_object / json_schema: by default the provider
  appends an instruction (with the schema) to the system text. It is chosen
  over a forced tool because the answer stays text, streams as text deltas,
  works on every model and combines with the request's own tools;
  `capabilities.json_schema` is then False to tell adapters it is not
  enforced. With `native_json_schema=True` a json_schema is sent as
  Anthropic's structured-outputs `output_format` (with its beta header) on
  models that support it, and `capabilities.json_schema` is True.
- `n` > 1: `complete()` sends n requests concurrently and returns n outputs
  with summed usage and cost (a failure cancels the others and raises);
  `stream()` rejects it with ValueError.
- `temperature`, `top_p` and the like are sent as given (Anthropic accepts a
  temperature in 0..1; a larger value is the vendor's own 400).
- OpenAI-only options with no Anthropic equivalent are dropped: seed,
  frequency_penalty, presence_penalty, logprobs, top_logprobs, logit_bias.
  Any other param (top_k, metadata, thinking, ...) is sent as given.

Usage: `prompt_tokens` counts every input token (uncached, cache reads and
cache writes), `cached_tokens` the cache reads; stop reasons become OpenAI's
("end_turn" -> "stop", "max_tokens" -> "length", "tool_use" -> "tool_calls").
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any, final

from lmvisor.programs.lm import LMCapabilities, LMDelta, LMRequest, LMResponse, ToolCall, Usage
from lmvisor.providers._anthropic_request import (
    DROPPED_PARAMS,
    json_instruction,
    json_schema,
    map_options,
    to_anthropic_messages,
)
from lmvisor.providers._base import (
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
from lmvisor.providers.sse import SSEEvent
from lmvisor.providers.transport import Transport

__all__ = ["AnthropicClient"]

_API_VERSION = "2023-06-01"
_STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}
_NATIVE_CAPABILITIES = LMCapabilities(json_schema=True, tools=True, streaming=True)


def _usage(raw: Mapping[str, Any]) -> Usage:
    fresh = wire_int(raw.get("input_tokens"))
    read = wire_int(raw.get("cache_read_input_tokens"))
    written = wire_int(raw.get("cache_creation_input_tokens"))
    output = wire_int(raw.get("output_tokens"))
    prompt = fresh + read + written
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=output,
        total_tokens=prompt + output,
        cached_tokens=read,
    )


@final
class AnthropicClient(HttpVendorClient):
    """A client of Anthropic's Messages API; requests use OpenAI's shape (see the module).

    Args:
        options: base URL default "https://api.anthropic.com" (without "/v1"),
            name "anthropic"; the API key is sent as `x-api-key`.
        transport: a `Transport` to send through (left open by `aclose()`);
            None builds the options' kind.
        default_max_tokens: `max_tokens` when the request gives none (Anthropic
            requires it).
        anthropic_version: the `anthropic-version` header.
        native_json_schema: send a json_schema `response_format` as Anthropic's
            structured outputs instead of a system instruction (see the module).

    Raises:
        TypeError: `options` is not a `ClientOptions`.
        ValueError: `default_max_tokens` < 1, or the transport cannot be built.
    """

    _vendor = "anthropic"
    _default_base_url = "https://api.anthropic.com"
    _capabilities_default = LMCapabilities(json_schema=False, tools=True, streaming=True)

    def __init__(
        self,
        options: ClientOptions,
        *,
        transport: Transport | None = None,
        default_max_tokens: int = 1024,
        anthropic_version: str = _API_VERSION,
        native_json_schema: bool = False,
    ) -> None:
        if default_max_tokens < 1:
            raise ValueError(f"default_max_tokens must be >= 1, got {default_max_tokens!r}")
        if native_json_schema and options.capabilities is None:
            options = dataclasses.replace(options, capabilities=_NATIVE_CAPABILITIES)
        super().__init__(options, transport=transport)
        self._max_tokens = default_max_tokens
        self._native_json_schema = native_json_schema
        vendor = {"content-type": "application/json", "anthropic-version": anthropic_version}
        if self._api_key:
            vendor["x-api-key"] = self._api_key
        if native_json_schema:
            vendor["anthropic-beta"] = _STRUCTURED_OUTPUTS_BETA
        self._set_endpoint("/v1/messages", vendor, options.headers, accept="accept")

    def _payload(self, request: LMRequest, model: str, *, stream: bool) -> dict[str, Any]:
        params = request.params
        if stream and wire_int(params.get("n")) > 1:
            raise ValueError("AnthropicClient.stream does not support n > 1; use complete()")
        system, messages = to_anthropic_messages(request.messages)
        response_format = params.get("response_format")
        native = (
            self._native_json_schema
            and isinstance(response_format, Mapping)
            and response_format.get("type") == "json_schema"
        )
        instruction = None if native else json_instruction(response_format)
        if instruction:
            system.append(instruction)
        max_tokens = params.get("max_tokens") or params.get("max_completion_tokens")
        payload: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens or self._max_tokens,
        }
        if system:
            payload["system"] = "\n\n".join(system)
        if native and isinstance(response_format, Mapping):
            payload["output_format"] = {
                "type": "json_schema",
                "schema": json_schema(response_format),
            }
        map_options(params, payload)
        for key, value in params.items():
            if value is not None and key not in DROPPED_PARAMS:
                payload[key] = value
        if stream:
            payload["stream"] = True
        return payload

    async def _complete(
        self,
        request: LMRequest,
        model: str,
        timeout: float,  # noqa: ASYNC109 - passed down to the transport
    ) -> LMResponse:
        body = self._encode(self._payload(request, model, stream=False))
        n = wire_int(request.params.get("n"), MAX_INDEX)
        if n <= 1:
            return await self._send(body, model, timeout)
        tasks = [asyncio.ensure_future(self._send(body, model, timeout)) for _ in range(n)]
        try:
            answers = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        usage = sum((a.usage for a in answers[1:]), answers[0].usage)
        costs = [a.cost for a in answers]
        first = answers[0]
        return LMResponse(
            outputs=[a.outputs[0] for a in answers],
            usage=usage,
            cost=None if None in costs else sum(c for c in costs if c is not None),
            finish_reason=first.finish_reason,
            model=first.model,
            tool_calls=first.tool_calls,
            reasoning=first.reasoning,
        )

    def _parse(self, data: dict[str, Any], model: str) -> LMResponse:
        content = data.get("content")
        if not isinstance(content, list):
            raise shape_error(self._name, model, "content", "expected a list of blocks")
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[ToolCall] = []
        for i, block in enumerate(content):
            kind = block.get("type") if isinstance(block, Mapping) else None
            if kind == "text":
                texts.append(str(block.get("text", "")))
            elif kind == "thinking":
                thoughts.append(str(block.get("thinking", "")))
            elif kind == "tool_use":
                calls.append(self._tool_call(block, model, f"content[{i}]"))
        raw_usage = data.get("usage")
        usage = _usage(raw_usage) if isinstance(raw_usage, Mapping) else Usage()
        reported = data.get("model")
        reported = reported if isinstance(reported, str) else model
        stop = data.get("stop_reason")
        return LMResponse(
            outputs=["".join(texts)],
            usage=usage,
            cost=self._cost(model, reported, usage),
            finish_reason=_STOP_REASONS.get(stop, stop) if isinstance(stop, str) else None,
            model=reported,
            tool_calls=tuple(calls),
            reasoning="".join(thoughts) or None,
        )

    def _tool_call(self, block: Mapping[str, Any], model: str, where: str) -> ToolCall:
        if not isinstance(block.get("name"), str):
            raise shape_error(self._name, model, f"{where}.name", "missing")
        arguments = decode_arguments(
            block.get("input", {}), provider=self._name, model=model, what=f"{where}.input"
        )
        return ToolCall(id=str(block.get("id", "")), name=block["name"], arguments=arguments)

    def _stream_state(self, request: LMRequest, model: str) -> StreamState:
        return _AnthropicStream(self, model)


class _AnthropicStream(StreamState):
    """Accumulates Messages stream events until `message_stop`."""

    def __init__(self, client: AnthropicClient, model: str) -> None:
        self._client = client
        self._model = model
        self._texts: list[str] = []
        self._thoughts: list[str] = []
        self._tools: dict[int, dict[str, Any]] = {}
        self._usage: dict[str, Any] = {}
        self._reported = ""
        self._stop: str | None = None

    def feed(self, event: SSEEvent) -> list[LMDelta]:
        client = self._client
        data = decode_json(event.data, provider=client.name, model=self._model, what="event")
        if not isinstance(data, Mapping):
            raise shape_error(client.name, self._model, "event", "expected a JSON object")
        kind = data.get("type", event.event)
        if kind == "content_block_delta":
            return self._delta(
                self._object(data, "delta", kind), wire_int(data.get("index"), MAX_INDEX)
            )
        if kind == "message_start":
            message = self._object(data, "message", kind)
            model = message.get("model")
            self._reported = model if isinstance(model, str) else ""
            self._usage.update(self._object(message, "usage", "message_start.message"))
        elif kind == "content_block_start":
            block = self._object(data, "content_block", kind)
            if block.get("type") == "tool_use":
                self._tools[wire_int(data.get("index"), MAX_INDEX)] = {"block": block, "args": []}
        elif kind == "message_delta":
            stop = self._object(data, "delta", kind).get("stop_reason")
            if isinstance(stop, str) and stop:  # as `_parse` reads it: anything else is no reason
                self._stop = stop
            usage = self._object(data, "usage", kind)
            self._usage.update({k: v for k, v in usage.items() if v})
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            raise error_from_body(
                provider=client.name, model=self._model, body=data, secret=client._api_key
            )
        return []

    def _object(self, data: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
        """`data[name]` when an object, {} when absent or null; else `ResponseFormatError`."""
        value = data.get(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise shape_error(self._client.name, self._model, f"{where}.{name}", "not an object")
        return value

    def _delta(self, delta: Mapping[str, Any], index: int) -> list[LMDelta]:
        kind = delta.get("type")
        if kind == "text_delta":
            text = str(delta.get("text", ""))
            if text:
                self._texts.append(text)
                return [LMDelta(text=text, index=0)]
        elif kind == "thinking_delta":
            thought = str(delta.get("thinking", ""))
            if thought:
                self._thoughts.append(thought)
                return [LMDelta(text=thought, reasoning=True)]
        elif kind == "input_json_delta":
            slot = self._tools.get(index)
            if slot is not None:
                slot["args"].append(str(delta.get("partial_json", "")))
        return []

    def response(self) -> LMResponse:
        client = self._client
        if not self.finished:
            raise client._incomplete(self._model, "message_stop")
        calls = tuple(
            client._tool_call(
                {**slot["block"], "input": "".join(slot["args"]) or slot["block"].get("input")},
                self._model,
                f"content[{index}]",
            )
            for index, slot in sorted(self._tools.items())
        )
        usage = _usage(self._usage)
        reported = self._reported or self._model
        return LMResponse(
            outputs=["".join(self._texts)],
            usage=usage,
            cost=client._cost(self._model, reported, usage),
            finish_reason=_STOP_REASONS.get(self._stop, self._stop) if self._stop else None,
            model=reported,
            tool_calls=calls,
            reasoning="".join(self._thoughts) or None,
        )
