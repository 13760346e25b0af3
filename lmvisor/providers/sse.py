"""Server-sent events: turn a byte stream into `SSEEvent`s, per the WHATWG rules.

Chunks may split lines (and a `\\r\\n` pair) anywhere; lines end in `\\n`,
`\\r\\n` or `\\r`; one leading byte order mark is skipped; `:` lines are
comments; an event is dispatched at a blank line when it has data; an
unterminated event at the end of the stream is dropped, as the specification says.
One event (or one line still waiting for its end) may hold at most `max_event_bytes`
(`MAX_EVENT_BYTES` by default): a peer that never ends a line, or sends data lines
without a blank one, raises `SSEEventTooLarge` instead of growing without bound.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass
from typing import final

__all__ = ["MAX_EVENT_BYTES", "SSEDecoder", "SSEEvent", "SSEEventTooLarge", "iter_sse"]

MAX_EVENT_BYTES = 16 * 1024 * 1024
"""The most one event may hold by default: vendors' events are deltas of a few bytes,
and a whole answer sent as one event still fits many times over."""

_BOM = b"\xef\xbb\xbf"
_MAX_DIGITS = 18


class SSEEventTooLarge(ValueError):
    """An event (or a line not yet ended) grew past the decoder's `max_event_bytes`."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        super().__init__(f"a server-sent event is larger than {limit} bytes")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its type ("message" unless named), data, and last id."""

    event: str
    data: str
    id: str | None = None
    retry: int | None = None


@final
class SSEDecoder:
    """Incremental decoder: `feed(chunk)` returns the events that chunk completed.

    Args:
        max_event_bytes: the most one event's data, or one unended line, may hold.

    Raises:
        ValueError: `max_event_bytes` is not a positive int.
    """

    __slots__ = (
        "_data",
        "_data_size",
        "_event",
        "_held",
        "_held_size",
        "_last_id",
        "_limit",
        "_retry",
        "_started",
    )

    def __init__(self, *, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        if type(max_event_bytes) is not int or max_event_bytes < 1:
            raise ValueError(f"max_event_bytes must be an int >= 1, got {max_event_bytes!r}")
        self._limit = max_event_bytes
        self._started = False  # past the point where a leading BOM could be
        # The unterminated tail, in the pieces it arrived in: a chunk that ends no line
        # is appended, not joined, so a line sent in many chunks costs linear time.
        self._held: list[bytes] = []
        self._held_size = 0
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode `chunk` (any split) and return the events it completed, in order.

        Raises:
            SSEEventTooLarge: an event or an unended line grew past `max_event_bytes`.
        """
        held = self._held
        if (
            self._started
            and b"\n" not in chunk
            and b"\r" not in chunk
            and not (held and held[-1].endswith(b"\r"))
        ):
            held.append(chunk)  # no line ends here: nothing to decode yet
            self._held_size += len(chunk)
            if self._held_size > self._limit:
                raise SSEEventTooLarge(limit=self._limit)
            return []
        buffer = b"".join((*held, chunk)) if held else chunk
        if not self._started:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._held = [buffer]  # maybe a BOM split across chunks: wait for more
                return []
            self._started = True
            if buffer.startswith(_BOM):
                buffer = buffer[len(_BOM) :]
        lines = buffer.splitlines(keepends=True)
        # The last piece is incomplete unless terminated; a trailing "\r" may be half
        # of a "\r\n" split across chunks, so it waits for the next chunk too.
        if lines and (not lines[-1].endswith((b"\n", b"\r")) or lines[-1].endswith(b"\r")):
            self._held = [tail := lines.pop()]
            self._held_size = len(tail)
            if self._held_size > self._limit:
                raise SSEEventTooLarge(limit=self._limit)
        else:
            self._held = []
            self._held_size = 0
        events: list[SSEEvent] = []
        for raw in lines:
            event = self._line(raw.rstrip(b"\r\n").decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: process a held-back final line; drop an undispatched event."""
        events: list[SSEEvent] = []
        tail = b"".join(self._held)
        if tail.endswith(b"\r"):
            event = self._line(tail.rstrip(b"\r").decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        self._held = []
        self._held_size = 0
        self._data.clear()
        self._data_size = 0
        self._event = ""
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data_size += len(value) + 1  # the line break that joins it to the next
            if self._data_size > self._limit:
                raise SSEEventTooLarge(limit=self._limit)
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS:
            # ASCII digits only, as the standard says ("²" is a digit int() refuses), and
            # few enough for int() to take.
            self._retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self._last_id,
            retry=self._retry,
        )
        self._data.clear()
        self._data_size = 0
        self._event = ""
        return event


async def iter_sse(
    chunks: AsyncIterable[bytes], *, max_event_bytes: int = MAX_EVENT_BYTES
) -> AsyncGenerator[SSEEvent, None]:
    """Yield the events of a byte stream as its chunks arrive.

    Raises:
        SSEEventTooLarge: an event or an unended line grew past `max_event_bytes`.
    """
    decoder = SSEDecoder(max_event_bytes=max_event_bytes)
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.flush():
        yield event
