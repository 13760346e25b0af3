"""Response side of the loopback LM: vendor JSON bodies, SSE events and error bodies.

Pure functions from `Ask` / `Choice` to what OpenAI's Chat Completions API and
Anthropic's Messages API put on the wire, checked against the official SDKs' types.
SSE events are returned as encoded bytes, one item per event, so the server can send
them all at once or cut the stream after any of them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from lmvisor.testing._lm_parts import reasoning_text
from lmvisor.testing._lm_requests import Ask, Choice

__all__ = [
    "OPENAI_DONE",
    "anthropic_error_body",
    "anthropic_error_event",
    "anthropic_events",
    "anthropic_message",
    "model_body",
    "models_body",
    "openai_chunks",
    "openai_completion",
    "openai_error_body",
    "openai_error_event",
]

OPENAI_DONE = b"data: [DONE]\n\n"
_PIECE = 24
_FINGERPRINT = "fp_lmvisor"
_FINGERPRINT_JSON = json.dumps(_FINGERPRINT)
_EPOCH = "2025-01-01T00:00:00Z"
_SIGNATURE = "c2lnbmF0dXJlLWxtdmlzb3I="

_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", None, "You are not allowed to use this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    408: ("timeout", None, "Request timed out."),
    409: ("conflict", None, "Conflicting request."),
    422: ("invalid_request_error", None, "Unprocessable request."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("timeout", None, "Gateway timeout."),
    529: ("server_error", "overloaded", "The engine is currently overloaded."),
}
_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low."),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found."),
    408: ("timeout_error", "Request timed out."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    504: ("timeout_error", "Gateway timeout"),
    529: ("overloaded_error", "Overloaded"),
}


def openai_error_body(
    status: int,
    *,
    message: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """`{"error": {message, type, param, code}}` as OpenAI sends it for `status`."""
    kind, default_code, default_message = _OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error.")
    )
    if code == "insufficient_quota":
        kind = "insufficient_quota"
    return {
        "error": {
            "message": message or default_message,
            "type": kind,
            "param": param,
            "code": code if code is not None else default_code,
        }
    }


def anthropic_error_body(
    status: int, *, message: str | None = None, code: str | None = None, request_id: str = ""
) -> dict[str, Any]:
    """`{"type": "error", "error": {type, message}}` as Anthropic sends it for `status`."""
    kind, default_message = _ANTHROPIC_ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", "Error.")
    )
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": code or kind, "message": message or default_message},
    }
    if request_id:
        body["request_id"] = request_id
    return body


def openai_completion(ask: Ask, choices: list[Choice], *, id: str, created: int) -> bytes:
    """A `chat.completion` body, encoded: every choice and the request's usage.

    Byte for byte what `json.dumps` writes for the object (default separators, ASCII
    escapes), but written as fixed text around the few values that vary, the strings
    escaped by json's own encoder: this body is built once per plain OpenAI request.
    """
    thought = reasoning_text(ask.user) if ask.reasoning else None
    parts = ", ".join(
        f'{{"index": {c.index}, "message": {_openai_message(c, thought)}, "logprobs": null, '
        f'"finish_reason": {_quote(c.finish)}}}'
        for c in choices
    )
    usage = _openai_usage_json(ask.prompt_tokens, sum(c.tokens for c in choices))
    return (
        f'{{"id": {_quote(id)}, "object": "chat.completion", "created": {created}, '
        f'"model": {_quote(ask.model)}, "choices": [{parts}], "usage": {usage}, '
        f'"service_tier": "default", "system_fingerprint": {_FINGERPRINT_JSON}}}'
    ).encode()


def openai_chunks(ask: Ask, choices: list[Choice], *, id: str, created: int) -> list[bytes]:
    """The `chat.completion.chunk` events of a stream, `[DONE]` last.

    Per choice: a role delta, content (or tool-call argument) deltas, then a chunk
    with `finish_reason`. With `stream_options.include_usage`, every chunk carries
    `"usage": null` and one last chunk has no choices and the usage.
    """
    base: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": ask.model,
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }
    if ask.include_usage:
        base["usage"] = None
    events: list[bytes] = []
    thought = reasoning_text(ask.user) if ask.reasoning else None
    for choice in choices:
        for delta, finish in _openai_deltas(choice, thought):
            entry = {
                "index": choice.index,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish,
            }
            events.append(_data({**base, "choices": [entry]}))
    if ask.include_usage:
        events.append(_data({**base, "choices": [], "usage": _openai_usage(ask, choices)}))
    events.append(OPENAI_DONE)
    return events


def openai_error_event(message: str | None, code: str | None) -> bytes:
    """A mid-stream error: a data line whose JSON has an `error` object."""
    return _data(openai_error_body(500, message=message, code=code))


def anthropic_message(ask: Ask, choice: Choice, *, id: str) -> dict[str, Any]:
    """A `message` object: one text or tool_use block, stop reason and usage."""
    stop_reason, stop_sequence = _anthropic_stop(choice)
    thinking = (
        [{"type": "thinking", "thinking": reasoning_text(ask.user), "signature": _SIGNATURE}]
        if ask.reasoning
        else []
    )
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": ask.model,
        "content": [*thinking, _anthropic_block(choice, full=True)],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _anthropic_usage(ask.prompt_tokens, choice.tokens),
    }


def anthropic_events(ask: Ask, choice: Choice, *, id: str) -> list[bytes]:
    """The Messages stream: message_start, content_block_start, ping, deltas,
    content_block_stop, message_delta (stop reason, output tokens), message_stop."""
    start = anthropic_message(ask, choice, id=id)
    start.update(content=[], stop_reason=None, stop_sequence=None)
    start["usage"] = _anthropic_usage(ask.prompt_tokens, 1)
    stop_reason, stop_sequence = _anthropic_stop(choice)
    events = [_event("message_start", {"type": "message_start", "message": start})]
    index = 0
    if ask.reasoning:
        events.extend(_thinking_events(reasoning_text(ask.user)))
        index = 1
    events += [
        _event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": _anthropic_block(choice),
            },
        ),
        _event("ping", {"type": "ping"}),
    ]
    if choice.text is not None:
        deltas = [{"type": "text_delta", "text": p} for p in _pieces(choice.text)]
    else:
        deltas = [
            {"type": "input_json_delta", "partial_json": p}
            for p in _pieces(choice.tool_arguments or "{}")
        ]
    events.extend(
        _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
        for d in deltas
    )
    events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
        "usage": {"output_tokens": choice.tokens},
    }
    events.append(_event("message_delta", message_delta))
    events.append(_event("message_stop", {"type": "message_stop"}))
    return events


def _thinking_events(thought: str) -> list[bytes]:
    """A thinking block streamed at index 0: start, thinking deltas, signature, stop."""
    block = {"type": "thinking", "thinking": "", "signature": ""}
    deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(thought)]
    deltas.append({"type": "signature_delta", "signature": _SIGNATURE})
    return [
        _event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        ),
        *(
            _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d})
            for d in deltas
        ),
        _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ]


def anthropic_error_event(status: int, message: str | None, code: str | None) -> bytes:
    """A mid-stream `event: error` (overloaded_error unless told otherwise)."""
    return _event("error", anthropic_error_body(status, message=message, code=code))


def model_body(name: str, *, anthropic: bool) -> dict[str, Any]:
    """One model object, in Anthropic's shape or OpenAI's."""
    if anthropic:
        return {"type": "model", "id": name, "display_name": name, "created_at": _EPOCH}
    return {"id": name, "object": "model", "created": 0, "owned_by": "lmvisor"}


def models_body(names: list[str], *, anthropic: bool) -> dict[str, Any]:
    """The model list, in Anthropic's paged shape or OpenAI's `{"object": "list"}`."""
    data = [model_body(name, anthropic=anthropic) for name in names]
    if not anthropic:
        return {"object": "list", "data": data}
    first, last = (names[0], names[-1]) if names else (None, None)
    return {"data": data, "has_more": False, "first_id": first, "last_id": last}


def _data(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _event(name: str, payload: Mapping[str, Any]) -> bytes:
    return f"event: {name}\n".encode() + _data(payload)


def _pieces(text: str) -> list[str]:
    return [text[i : i + _PIECE] for i in range(0, len(text), _PIECE)] or [""]


def _openai_message(choice: Choice, thought: str | None = None) -> str:
    """The assistant message of a completion choice, as `json.dumps` encodes it.

    A reasoning request gets `reasoning_content`, as OpenAI-compatible servers send it.
    """
    content = "null" if choice.text is None else _quote(choice.text)
    if thought is not None:
        content += f', "reasoning_content": {_quote(thought)}'
    calls = ""
    if choice.tool_name is not None:
        call = {
            "id": choice.tool_id,
            "type": "function",
            "function": {"name": choice.tool_name, "arguments": choice.tool_arguments},
        }
        calls = ', "tool_calls": ' + json.dumps([call])
    return (
        f'{{"role": "assistant", "content": {content}, "refusal": null, "annotations": []{calls}}}'
    )


def _openai_deltas(
    choice: Choice, thought: str | None = None
) -> list[tuple[dict[str, Any], str | None]]:
    if choice.tool_name is None:
        first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
        middle: list[dict[str, Any]] = [{"content": p} for p in _pieces(choice.text or "")]
    else:
        call = {
            "index": 0,
            "id": choice.tool_id,
            "type": "function",
            "function": {"name": choice.tool_name, "arguments": ""},
        }
        first = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
        middle = [
            {"tool_calls": [{"index": 0, "function": {"arguments": p}}]}
            for p in _pieces(choice.tool_arguments or "{}")
        ]
    if thought is not None:
        middle = [*({"reasoning_content": p} for p in _pieces(thought)), *middle]
    return [(first, None), *((d, None) for d in middle), ({}, choice.finish)]


def _openai_usage(ask: Ask, choices: list[Choice]) -> dict[str, Any]:
    return _openai_usage_counts(ask.prompt_tokens, sum(c.tokens for c in choices))


def _openai_usage_counts(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@functools.lru_cache(maxsize=1024)
def _openai_usage_json(prompt: int, completion: int) -> str:
    """The usage object as `json.dumps` encodes it (few distinct counts recur)."""
    return json.dumps(_openai_usage_counts(prompt, completion))


def _anthropic_usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    }


def _anthropic_block(choice: Choice, *, full: bool = False) -> dict[str, Any]:
    if choice.tool_name is None:
        return {"type": "text", "text": (choice.text or "") if full else ""}
    arguments = json.loads(choice.tool_arguments or "{}") if full else {}
    return {"type": "tool_use", "id": choice.tool_id, "name": choice.tool_name, "input": arguments}


def _anthropic_stop(choice: Choice) -> tuple[str, str | None]:
    if choice.tool_name is not None:
        return "tool_use", None
    if choice.finish == "length":
        return "max_tokens", None
    if choice.stop_sequence is not None:
        return "stop_sequence", choice.stop_sequence
    return "end_turn", None
