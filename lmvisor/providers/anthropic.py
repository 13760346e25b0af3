"""The Anthropic Messages client: `AnthropicProvider`, mapping OpenAI-shaped requests.

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
import json
from collections.abc import Mapping
from typing import Any, final

from lmvisor.programs.lm import LMCapabilities, LMDelta, LMRequest, LMResponse, ToolCall, Usage
from lmvisor.providers._base import (
    ProviderBase,
    StreamState,
    decode_arguments,
    decode_json,
    shape_error,
)
from lmvisor.providers.errors import error_from_body
from lmvisor.providers.pricing import ModelPrice
from lmvisor.providers.sse import SSEEvent
from lmvisor.providers.transport import Transport

__all__ = ["AnthropicProvider"]

_API_VERSION = "2023-06-01"
_STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"
_DROPPED = frozenset(
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
    }
)
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}
_NATIVE_CAPABILITIES = LMCapabilities(json_schema=True, tools=True, streaming=True)
_JSON_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose, no code fences."
)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage(raw: Mapping[str, Any]) -> Usage:
    fresh = _int(raw.get("input_tokens"))
    read = _int(raw.get("cache_read_input_tokens"))
    written = _int(raw.get("cache_creation_input_tokens"))
    output = _int(raw.get("output_tokens"))
    prompt = fresh + read + written
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=output,
        total_tokens=prompt + output,
        cached_tokens=read,
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


def _image_block(part: Mapping[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str):
        raise ValueError("image_url part must carry a url")
    if url.startswith("data:") and ";base64," in url:
        media, _, data = url[5:].partition(";base64,")
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


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
            blocks.append(_image_block(part))
        else:
            blocks.append(dict(part))
    return blocks


def _assistant(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    calls = message.get("tool_calls")
    content = message.get("content")
    if not calls:
        return {"role": "assistant", "content": _blocks(content or "", where)}
    blocks: list[dict[str, Any]] = []
    text = _text_of(content, where)
    if text:
        blocks.append({"type": "text", "text": text})
    for j, call in enumerate(calls):
        function = call.get("function", {})
        arguments = function.get("arguments") or "{}"
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
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


def _to_anthropic_messages(
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


def _json_schema(response_format: Mapping[str, Any]) -> Any:
    spec = response_format.get("json_schema") or {}
    return spec.get("schema", spec) if isinstance(spec, Mapping) else spec


def _json_instruction(response_format: Any) -> str | None:
    if not isinstance(response_format, Mapping):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return _JSON_INSTRUCTION
    if kind == "json_schema":
        schema = json.dumps(_json_schema(response_format))
        return f"{_JSON_INSTRUCTION} It must conform to this JSON schema:\n{schema}"
    return None


@final
class AnthropicProvider(ProviderBase):
    """A client of Anthropic's Messages API; requests use OpenAI's shape (see the module).

    Args:
        api_key: sent as `x-api-key`; never logged or shown in errors.
        base_url: the API root without "/v1" ("https://api.anthropic.com").
        default_model: used when a request's model is empty.
        default_max_tokens: `max_tokens` when the request gives none (Anthropic
            requires it).
        anthropic_version: the `anthropic-version` header.
        native_json_schema: send a json_schema `response_format` as Anthropic's
            structured outputs instead of a system instruction (see the module).
        timeout, transport, headers, max_connections, keepalive_timeout, prices,
            capabilities, logger: as for `OpenAIProvider`.
        name: the provider's name, also accepted as a model prefix beside "anthropic/".

    Raises:
        ValueError: an option is out of range (the message names it).
    """

    _vendor = "anthropic"
    _capabilities_default = LMCapabilities(json_schema=False, tools=True, streaming=True)

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str = "https://api.anthropic.com",
        default_model: str | None = None,
        timeout: float = 60.0,
        transport: Transport | None = None,
        headers: Mapping[str, str] | None = None,
        name: str = "anthropic",
        default_max_tokens: int = 1024,
        anthropic_version: str = _API_VERSION,
        native_json_schema: bool = False,
        max_connections: int | None = None,
        keepalive_timeout: float | None = None,
        prices: Mapping[str, ModelPrice] | None = None,
        capabilities: LMCapabilities | None = None,
        logger: Any = None,
    ) -> None:
        if default_max_tokens < 1:
            raise ValueError(f"default_max_tokens must be >= 1, got {default_max_tokens!r}")
        super().__init__(
            name=name,
            api_key=api_key,
            base_url=base_url,
            default_model=default_model,
            timeout=timeout,
            transport=transport,
            max_connections=max_connections,
            keepalive_timeout=keepalive_timeout,
            prices=prices,
            capabilities=capabilities or (_NATIVE_CAPABILITIES if native_json_schema else None),
            logger=logger,
        )
        self._max_tokens = default_max_tokens
        self._native_json_schema = native_json_schema
        self._endpoint = f"{self._base_url}/v1/messages"
        common = {"content-type": "application/json", "anthropic-version": anthropic_version}
        if self._api_key:
            common["x-api-key"] = self._api_key
        if native_json_schema:
            common["anthropic-beta"] = _STRUCTURED_OUTPUTS_BETA
        common.update(headers or {})
        self._plain_headers = {**common, "accept": "application/json"}
        self._sse_headers = {**common, "accept": "text/event-stream"}

    def _url(self) -> str:
        return self._endpoint

    def _headers(self, *, stream: bool) -> Mapping[str, str]:
        return self._sse_headers if stream else self._plain_headers

    def _payload(self, request: LMRequest, model: str, *, stream: bool) -> dict[str, Any]:
        params = request.params
        if stream and _int(params.get("n")) > 1:
            raise ValueError("AnthropicProvider.stream does not support n > 1; use complete()")
        system, messages = _to_anthropic_messages(request.messages)
        response_format = params.get("response_format")
        native = (
            self._native_json_schema
            and isinstance(response_format, Mapping)
            and response_format.get("type") == "json_schema"
        )
        instruction = None if native else _json_instruction(response_format)
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
                "schema": _json_schema(response_format),
            }
        self._map_options(params, payload)
        for key, value in params.items():
            if value is not None and key not in _DROPPED:
                payload[key] = value
        if stream:
            payload["stream"] = True
        return payload

    @staticmethod
    def _map_options(params: Mapping[str, Any], payload: dict[str, Any]) -> None:
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

    async def _complete(self, request: LMRequest, model: str) -> LMResponse:
        payload = self._payload(request, model, stream=False)
        n = _int(request.params.get("n"))
        if n <= 1:
            return await self._send(payload, model)
        tasks = [asyncio.ensure_future(self._send(payload, model)) for _ in range(n)]
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
        )

    def _parse(self, data: dict[str, Any], model: str) -> LMResponse:
        content = data.get("content")
        if not isinstance(content, list):
            raise shape_error(self._name, model, "content", "expected a list of blocks")
        texts: list[str] = []
        calls: list[ToolCall] = []
        for i, block in enumerate(content):
            kind = block.get("type") if isinstance(block, Mapping) else None
            if kind == "text":
                texts.append(str(block.get("text", "")))
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

    def __init__(self, provider: AnthropicProvider, model: str) -> None:
        self._provider = provider
        self._model = model
        self._texts: list[str] = []
        self._tools: dict[int, dict[str, Any]] = {}
        self._usage: dict[str, Any] = {}
        self._reported = ""
        self._stop: str | None = None

    def feed(self, event: SSEEvent) -> list[LMDelta]:
        provider = self._provider
        data = decode_json(event.data, provider=provider.name, model=self._model, what="event")
        if not isinstance(data, Mapping):
            raise shape_error(provider.name, self._model, "event", "expected a JSON object")
        kind = data.get("type", event.event)
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "message_start":
            message = data.get("message") or {}
            self._reported = str(message.get("model") or "")
            self._usage.update(message.get("usage") or {})
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                self._tools[_int(data.get("index"))] = {"block": block, "args": []}
        elif kind == "message_delta":
            self._stop = (data.get("delta") or {}).get("stop_reason") or self._stop
            self._usage.update({k: v for k, v in (data.get("usage") or {}).items() if v})
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            raise error_from_body(
                provider=provider.name, model=self._model, body=data, secret=provider._api_key
            )
        return []

    def _delta(self, data: Mapping[str, Any]) -> list[LMDelta]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = str(delta.get("text", ""))
            if text:
                self._texts.append(text)
                return [LMDelta(text=text, index=0)]
        elif kind == "input_json_delta":
            slot = self._tools.get(_int(data.get("index")))
            if slot is not None:
                slot["args"].append(str(delta.get("partial_json", "")))
        return []

    def response(self) -> LMResponse:
        provider = self._provider
        if not self.finished:
            raise provider._incomplete(self._model, "message_stop")
        calls = tuple(
            provider._tool_call(
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
            cost=provider._cost(self._model, reported, usage),
            finish_reason=_STOP_REASONS.get(self._stop, self._stop) if self._stop else None,
            model=reported,
            tool_calls=calls,
        )
