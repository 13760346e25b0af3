"""Tests for lmvisor.server.sse: framing, heartbeats, and how a stream ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from lmvisor.providers.sse import SSEDecoder
from lmvisor.runtime.deadline import deadline
from lmvisor.server.sse import SSEMessage, _frames, sse_frame


class TestFrame:
    def test_frame_round_trips_through_a_decoder(self) -> None:
        """A frame decodes to the same event name, id and JSON data."""
        frame = sse_frame(SSEMessage("event", {"text": "a\nb", "n": 1}, id="e-1"))
        (event,) = SSEDecoder().feed(frame)
        assert (event.event, event.id, event.data) == ("event", "e-1", '{"text":"a\\nb","n":1}')

    def test_line_breaks_in_fields_cannot_inject_frames(self) -> None:
        """An event name or id with line breaks stays one field."""
        frame = sse_frame(SSEMessage("a\nevent: evil", {}, id="1\n\ndata: x"))
        events = SSEDecoder().feed(frame)
        assert len(events) == 1
        assert events[0].event == "a event: evil"

    def test_values_that_are_not_json_become_repr(self) -> None:
        """A value json cannot encode is sent as its repr."""
        (event,) = SSEDecoder().feed(sse_frame(SSEMessage("event", {"x": object})))
        assert event.data == '{"x":"<class \'object\'>"}'


async def _collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in stream]


async def _items(*messages: SSEMessage, pause: float = 0.0) -> AsyncIterator[SSEMessage]:
    for message in messages:
        if pause:
            await asyncio.sleep(pause)
        yield message


class TestFrames:
    async def test_exhausted_source_ends_with_done(self) -> None:
        """A finite source's frames are followed by `end` / `done`."""
        chunks = await _collect(_frames(_items(SSEMessage("event", {"n": 1})), asyncio.Event(), 5))
        decoded = SSEDecoder().feed(b"".join(chunks))
        assert [e.event for e in decoded] == ["event", "end"]
        assert decoded[-1].data == '{"reason":"done"}'

    async def test_idle_source_gets_heartbeats_and_keeps_its_place(self) -> None:
        """An idle source gets keep-alive comments, and its next item still arrives."""
        source = _items(SSEMessage("event", {"n": 1}), pause=0.05)
        chunks = await _collect(_frames(source, asyncio.Event(), 0.01))
        assert b": keep-alive\n\n" in chunks
        assert [e.event for e in SSEDecoder().feed(b"".join(chunks))] == ["event", "end"]

    async def test_drain_ends_an_endless_source(self) -> None:
        """Setting the draining event ends the stream with `end` / `shutdown`."""

        async def endless() -> AsyncIterator[SSEMessage]:
            while True:
                await asyncio.sleep(3600)
                yield SSEMessage("event", {})

        draining = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, draining.set)
        chunks = await _collect(_frames(endless(), draining, 5))
        assert chunks[-1] == sse_frame(SSEMessage("end", {"reason": "shutdown"}))

    async def test_deadline_ends_the_stream(self) -> None:
        """A stream under a deadline ends with `end` / `deadline` when it passes."""

        async def endless() -> AsyncIterator[SSEMessage]:
            while True:
                await asyncio.sleep(3600)
                yield SSEMessage("event", {})

        with deadline(0.01):
            chunks = await _collect(_frames(endless(), asyncio.Event(), 5))
        assert chunks == [sse_frame(SSEMessage("end", {"reason": "deadline"}))]
