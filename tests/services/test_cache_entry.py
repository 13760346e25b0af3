"""Tests for lmvisor.services.cache_entry: the response codec every tier shares."""

from __future__ import annotations

import dataclasses

import pytest

from lmvisor.programs.lm import LMResponse, ToolCall, Usage
from lmvisor.services.cache_entry import (
    CacheEntry,
    CorruptEntry,
    decode_entry,
    decode_response,
    encode_entry,
    encode_response,
)

RESPONSE = LMResponse(
    outputs=["Paris", "Lyon"],
    usage=Usage(prompt_tokens=10, completion_tokens=2, total_tokens=12),
    cost=0.5,
    finish_reason="stop",
    model="gpt-4o-mini",
    tool_calls=(ToolCall(id="c1", name="search", arguments={"q": "x"}),),
)


class TestCodec:
    def test_round_trip_marks_the_answer_cached_and_free(self) -> None:
        """A decoded hit keeps the answer, costs nothing and counts its tokens as cached."""
        decoded = decode_response(encode_response(RESPONSE))
        assert decoded.outputs == ["Paris", "Lyon"]
        assert decoded.finish_reason == "stop"
        assert decoded.model == "gpt-4o-mini"
        assert decoded.tool_calls[0].arguments == {"q": "x"}
        assert decoded.cached is True
        assert decoded.cost == 0.0
        assert decoded.usage == Usage(cached_tokens=12)

    def test_every_response_field_survives_the_round_trip(self) -> None:
        """Each LMResponse field but those a hit rebuilds (usage, cost, cached) is stored and
        read back: a field added to LMResponse and not to the codec fails here."""
        kept = {
            "outputs": ["a"],
            "finish_reason": "length",
            "model": "m",
            "tool_calls": (ToolCall(id="c", name="t", arguments={"x": 1}),),
            "reasoning": "because",
        }
        assert {f.name for f in dataclasses.fields(LMResponse)} - {"usage", "cost", "cached"} == (
            set(kept)
        )
        decoded = decode_response(encode_response(LMResponse(**kept)))
        assert {name: getattr(decoded, name) for name in kept} == kept

    def test_each_decode_is_a_fresh_copy(self) -> None:
        """Mutating one hit's outputs cannot change the next hit."""
        payload = encode_response(RESPONSE)
        first = decode_response(payload)
        first.outputs.append("mutated")
        assert decode_response(payload).outputs == ["Paris", "Lyon"]

    @pytest.mark.parametrize(
        ("payload", "problem"),
        [
            (b"\x00garbage", "^corrupt cache entry: not JSON"),
            (b'{"v": 2}', "^corrupt cache entry: not a version-1 response object$"),
            (b'{"v": true, "outputs": []}', "^corrupt cache entry: not a version-1 response"),
            (b'{"v": 1.0, "outputs": []}', "^corrupt cache entry: not a version-1 response"),
            (b'{"v": 1, "outputs": [1]}', "^corrupt cache entry: outputs must be a list"),
            (b'{"v": 1, "outputs": [], "usage": 3}', "^corrupt cache entry: usage must be"),
        ],
    )
    def test_undecodable_payloads_raise_corrupt_entry(self, payload: bytes, problem: str) -> None:
        """Garbage is reported as CorruptEntry, never another exception."""
        with pytest.raises(CorruptEntry, match=problem):
            decode_response(payload)


class TestEntryBytes:
    def test_entry_round_trip(self) -> None:
        """The expiry header and payload come back as written."""
        entry = CacheEntry(b"payload", 123.5)
        assert decode_entry(encode_entry(entry)) == entry
        assert entry.fresh(100.0) and not entry.fresh(123.5)

    def test_short_bytes_are_corrupt(self) -> None:
        """Fewer bytes than the header is a corrupt entry."""
        with pytest.raises(CorruptEntry, match=r"^corrupt cache entry: shorter than its header$"):
            decode_entry(b"abc")
