"""Tests for lmvisor.providers.sse: the incremental SSE decoder."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from lmvisor.providers.sse import SSEDecoder, SSEEvent, SSEEventTooLarge, iter_sse

STREAM = (
    b": keep-alive comment\n"
    b"event: message_start\n"
    b'data: {"type": "message_start"}\n'
    b"\n"
    b"id: 7\n"
    b"retry: 1500\n"
    b"data: line one\n"
    b"data:line two\n"
    b"\n"
    b"data: [DONE]\n"
    b"\n"
)
EXPECTED = [
    SSEEvent(event="message_start", data='{"type": "message_start"}'),
    SSEEvent(event="message", data="line one\nline two", id="7", retry=1500),
    SSEEvent(event="message", data="[DONE]", id="7", retry=1500),
]


def _decode_in_pieces(data: bytes, cut: int) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return decoder.feed(data[:cut]) + decoder.feed(data[cut:]) + decoder.flush()


class TestSSEDecoder:
    def test_whole_stream(self) -> None:
        """Fields, comments, multi-line data, ids and retry decode as the spec says."""
        decoder = SSEDecoder()
        assert decoder.feed(STREAM) + decoder.flush() == EXPECTED

    def test_any_split_gives_the_same_events(self) -> None:
        """Splitting the bytes at every position yields the same events."""
        for cut in range(len(STREAM) + 1):
            assert _decode_in_pieces(STREAM, cut) == EXPECTED, cut

    def test_crlf_split_between_chunks(self) -> None:
        """A \\r\\n pair split across chunks is one line end, not two."""
        data = b"data: a\r\n\r\ndata: b\r\n\r\n"
        for cut in range(len(data) + 1):
            events = _decode_in_pieces(data, cut)
            assert [e.data for e in events] == ["a", "b"], cut

    def test_bare_cr_line_ends(self) -> None:
        """Lines may end in a lone \\r."""
        decoder = SSEDecoder()
        events = decoder.feed(b"data: x\r\rdata: y\r") + decoder.feed(b"\r") + decoder.flush()
        assert [e.data for e in events] == ["x", "y"]

    def test_unterminated_event_is_dropped(self) -> None:
        """An event without its blank line at the end of the stream is not dispatched."""
        decoder = SSEDecoder()
        assert decoder.feed(b"data: complete\n\ndata: partial\n") == [
            SSEEvent(event="message", data="complete")
        ]
        assert decoder.flush() == []

    def test_event_without_data_is_not_dispatched(self) -> None:
        """A blank line after only an event name dispatches nothing and resets the name."""
        decoder = SSEDecoder()
        assert decoder.feed(b"event: ping\n\ndata: d\n\n") == [SSEEvent(event="message", data="d")]

    def test_leading_bom_is_skipped(self) -> None:
        """A byte order mark opening the stream, even split across chunks, is not data."""
        data = b"\xef\xbb\xbf" + STREAM
        for cut in range(5):
            assert _decode_in_pieces(data, cut) == EXPECTED, cut

    def test_invalid_utf8_is_replaced(self) -> None:
        """Undecodable bytes become U+FFFD rather than an exception."""
        decoder = SSEDecoder()
        assert decoder.feed(b"data: \xff\n\n")[0].data == "\ufffd"

    @pytest.mark.parametrize("value", ["\u00b2", "1" * 5_000])
    def test_retry_that_is_not_a_plain_number_is_ignored(self, value: str) -> None:
        """A retry of non-ASCII digits, or too many to convert, is ignored, never raised."""
        decoder = SSEDecoder()
        events = decoder.feed(b"retry: 7\n\nretry: " + value.encode() + b"\ndata: d\n\n")
        assert events == [SSEEvent(event="message", data="d", retry=7)]

    def test_a_long_line_in_many_chunks_costs_linear_time(self) -> None:
        """One 1 MB line sent in 1 kB chunks costs a bounded multiple of merely collecting and
        joining those chunks in C (~75 times: a Python call per chunk); rejoining the held
        tail per chunk was quadratic (~6,500 times here, and 32 MB took seconds). A ratio to a
        linear reference in the same process and memory state, not a time."""
        chunk, count = b"x" * 1024, 1024

        def decoding() -> float:
            decoder = SSEDecoder()
            start = time.perf_counter()
            for _ in range(count):
                decoder.feed(chunk)
            assert decoder.feed(b"\n\n") == []
            return time.perf_counter() - start

        def collecting() -> float:
            start = time.perf_counter()
            pieces = []
            for _ in range(count):
                pieces.append(chunk)
            assert len(b"".join(pieces)) == len(chunk) * count
            return time.perf_counter() - start

        reference = min(collecting() for _ in range(5))
        assert min(decoding() for _ in range(3)) < 600 * max(reference, 1e-5)


class TestEventBound:
    def test_a_line_that_never_ends_is_refused_at_the_bound(self) -> None:
        """Chunks of one unended line raise once they hold more than the bound."""
        decoder = SSEDecoder(max_event_bytes=100)
        decoder.feed(b"data: " + b"x" * 90)
        with pytest.raises(
            SSEEventTooLarge, match=r"^a server-sent event is larger than 100 bytes$"
        ):
            decoder.feed(b"x" * 10)

    def test_an_unended_tail_after_a_line_break_counts_too(self) -> None:
        """A long tail held after complete lines is bounded like one held chunk by chunk."""
        decoder = SSEDecoder(max_event_bytes=100)
        with pytest.raises(SSEEventTooLarge):
            decoder.feed(b"data: a\n\ndata: " + b"y" * 200)

    def test_many_data_lines_without_a_blank_one_are_refused(self) -> None:
        """Data lines that never dispatch an event cannot pile up past the bound."""
        decoder = SSEDecoder(max_event_bytes=100)
        decoder.feed(b"data: " + b"z" * 60 + b"\n")
        with pytest.raises(SSEEventTooLarge) as info:
            decoder.feed(b"data: " + b"z" * 60 + b"\n")
        assert info.value.limit == 100

    def test_events_up_to_the_bound_pass_and_the_count_starts_over(self) -> None:
        """Each dispatched event frees its share: many events just under the bound decode."""
        decoder = SSEDecoder(max_event_bytes=100)
        event = b"data: " + b"w" * 90 + b"\n\n"
        events = [e for _ in range(50) for e in decoder.feed(event[:40]) + decoder.feed(event[40:])]
        assert len(events) == 50 and all(e.data == "w" * 90 for e in events)

    @pytest.mark.parametrize("bound", [0, -1, 1.5, True])
    def test_the_bound_must_be_a_positive_int(self, bound: object) -> None:
        """A bound that is not a positive int is refused when the decoder is made."""
        with pytest.raises(ValueError, match=r"^max_event_bytes must be an int >= 1, got "):
            SSEDecoder(max_event_bytes=bound)  # type: ignore[arg-type]


class TestIterSSE:
    async def test_async_chunks(self) -> None:
        """iter_sse yields the events of an async byte stream as they complete."""

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(STREAM), 5):
                yield STREAM[i : i + 5]

        assert [event async for event in iter_sse(chunks())] == EXPECTED
