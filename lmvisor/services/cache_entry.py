"""Cache entries: an encoded LM response with its expiry, and the codec every tier shares.

A payload is the response as orjson bytes (outputs, usage, cost, finish
reason, model, tool calls, and any other JSON-ready field `LMResponse` has).
Decoding builds a fresh `LMResponse` each time, so a hit can never alias
another caller's copy; it is marked `cached=True`, costs nothing, and its
usage moves to `cached_tokens` (no token was spent on this call).

Payloads that are not JSON, or do not have the shape of a response, raise
`CorruptEntry`: the cache drops such an entry and counts it, and the call
goes on as a miss.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Mapping
from typing import Any, Final, NamedTuple, final

import orjson

from lmvisor.programs.lm import LMResponse, ToolCall, Usage

__all__ = [
    "CacheEntry",
    "CorruptEntry",
    "decode_entry",
    "decode_response",
    "encode_entry",
    "encode_response",
]

_VERSION: Final = 1
_KNOWN: Final = frozenset({"v", "outputs", "usage", "cost", "tool_calls"})
_HEADER: Final = struct.Struct("<d")
_HEADER_SIZE: Final = _HEADER.size


class CorruptEntry(ValueError):
    """A stored entry cannot be decoded; `problem` says why."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"corrupt cache entry: {problem}")
        self.problem = problem


@final
class CacheEntry(NamedTuple):
    """One stored answer: its payload and when it stops being fresh (epoch seconds).

    A named tuple, not a frozen dataclass: every miss and every lower-tier hit builds one,
    and a tuple builds in a fraction of the time (and, holding only bytes and a float,
    leaves the garbage collector's lists once it has been looked at).
    """

    payload: bytes
    expires_at: float

    def fresh(self, now: float) -> bool:
        """Whether the answer may still be served as fresh at `now`."""
        return now < self.expires_at

    @property
    def size(self) -> int:
        """Bytes the entry occupies (payload plus its expiry)."""
        return len(self.payload) + _HEADER_SIZE


def encode_response(response: LMResponse) -> bytes:
    """The payload for `response` (its own usage and cost, as the vendor reported them).

    Raises:
        TypeError: a field holds data JSON cannot carry.
    """
    calls = response.tool_calls
    # One literal naming every field: built key by key, the dict would grow and be resized
    # on every miss. A field added to LMResponse fails test_cache_entry until added here.
    return orjson.dumps(
        {
            "v": _VERSION,
            "outputs": response.outputs,
            "usage": response.usage.to_dict(),
            "cost": response.cost,
            "tool_calls": [
                {"id": c.id, "name": c.name, "arguments": dict(c.arguments)} for c in calls
            ]
            if calls
            else [],
            "finish_reason": response.finish_reason,
            "model": response.model,
            "reasoning": response.reasoning,
        }
    )


def decode_response(payload: bytes) -> LMResponse:
    """A fresh response from `payload`, marked as served from cache (zero cost).

    Raises:
        CorruptEntry: the payload is not a response this codec wrote.
    """
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CorruptEntry(f"not JSON ({exc})") from None
    # `type(...) is int`: JSON's true equals 1 in Python, and 1.0 too; neither is this codec's.
    if type(data) is not dict or type(data.get("v")) is not int or data["v"] != _VERSION:
        raise CorruptEntry("not a version-1 response object")
    outputs = data.get("outputs")
    if type(outputs) is not list or not all(type(o) is str for o in outputs):
        raise CorruptEntry("outputs must be a list of strings")
    total = _total_tokens(data.get("usage"))
    # Over the few fields kept as stored, not over every key the payload has.
    extra = {k: data[k] for k in _FIELDS if k in data}
    calls = data.get("tool_calls")
    try:
        return LMResponse(
            outputs=outputs,
            usage=Usage(cached_tokens=total),
            cost=0.0,
            cached=True,
            tool_calls=_tool_calls(calls) if calls else (),
            **extra,
        )
    except TypeError as exc:
        raise CorruptEntry(str(exc)) from None


def encode_entry(entry: CacheEntry) -> bytes:
    """The entry as one byte string (expiry header, then payload), for stores of bytes."""
    return _HEADER.pack(entry.expires_at) + entry.payload


def decode_entry(data: bytes) -> CacheEntry:
    """The entry `encode_entry` wrote.

    Raises:
        CorruptEntry: too short for the header, or the expiry is not a number.
    """
    if len(data) < _HEADER.size:
        raise CorruptEntry("shorter than its header")
    (expires_at,) = _HEADER.unpack_from(data)
    if math.isnan(expires_at):
        raise CorruptEntry("expiry is not a number")
    return CacheEntry(data[_HEADER.size :], expires_at)


# Fields decoded as stored; the others are rebuilt (usage, cost, tool calls) or set (cached).
_FIELDS: Final = tuple(
    f.name for f in dataclasses.fields(LMResponse) if f.name not in _KNOWN and f.name != "cached"
)


def _total_tokens(value: Any) -> int:
    if type(value) is not dict:
        raise CorruptEntry("usage must be an object")
    total = value.get("total_tokens", 0)
    if type(total) is not int:
        raise CorruptEntry("usage counts must be integers")
    return total


def _tool_calls(value: Any) -> tuple[ToolCall, ...]:
    if not isinstance(value, list):
        raise CorruptEntry("tool_calls must be a list")
    calls = []
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("arguments"), Mapping):
            raise CorruptEntry("each tool call must be an object with arguments")
        if not isinstance(item.get("id"), str) or not isinstance(item.get("name"), str):
            raise CorruptEntry("each tool call needs a string id and name")
        calls.append(ToolCall(id=item["id"], name=item["name"], arguments=item["arguments"]))
    return tuple(calls)
