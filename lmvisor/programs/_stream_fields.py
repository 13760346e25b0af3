"""Cutting one output field's text out of a streaming completion, per adapter format.

A cutter is fed the completion piece by piece and releases the field's text as soon as
it cannot be part of the next field's marker; like the adapters' parsers, it drops the
whitespace around the value. `feed` and `close` return (pieces, finished): `finished`
once the field's value has ended (at the next marker, or when the stream closes after
the value began).
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

__all__ = ["FieldCutter", "cutter_for"]


class FieldCutter(Protocol):
    """Releases one field's text from a completion fed in pieces."""

    def feed(self, text: str) -> tuple[list[str], bool]:
        """Add completion text; the field text it releases, and whether the field ended."""
        ...

    def close(self) -> tuple[list[str], bool]:
        """The completion ended; release what is held (finished if the value had begun)."""
        ...


def cutter_for(adapter: Any, field: str) -> FieldCutter:
    """The cutter for `field` in completions formatted by `adapter`.

    Raises:
        ValueError: the adapter's format cannot be streamed by field.
    """
    from lmvisor.programs.adapters.chat import ChatAdapter
    from lmvisor.programs.adapters.json_adapter import JSONAdapter
    from lmvisor.programs.adapters.xml_adapter import XMLAdapter

    if isinstance(adapter, JSONAdapter):
        return _JSONCutter(field)
    if isinstance(adapter, XMLAdapter):
        return _MarkedCutter(f"<{field}>", f"</{field}>", entities=True)
    if isinstance(adapter, ChatAdapter):
        return _MarkedCutter(f"[[ ## {field} ## ]]", "[[ ##", entities=False)
    raise ValueError(
        f"{type(adapter).__name__} cannot stream fields: use ChatAdapter, JSONAdapter or "
        "XMLAdapter with stream listeners"
    )


class _MarkedCutter:
    """A value between a start marker and an end marker (Chat's and XML's formats)."""

    def __init__(self, start: str, end: str, *, entities: bool) -> None:
        self._start, self._end, self._entities = start, end, entities
        self._text = ""
        self._value: int | None = None  # where the value begins in _text
        self._sent = 0  # the first value character not yet released
        self._begun = False  # a non-space value character was released
        self._finished = False

    def feed(self, text: str) -> tuple[list[str], bool]:
        if self._finished:
            return [], True
        self._text += text
        if self._value is None:
            found = self._text.find(self._start)
            if found < 0:
                return [], False
            self._value = self._sent = found + len(self._start)
        end = self._text.find(self._end, self._value)
        if end >= 0:
            self._finished = True
            return self._release(end, final=True), True
        return self._release(len(self._text) - _held(self._text, self._end), final=False), False

    def close(self) -> tuple[list[str], bool]:
        if self._value is None or self._finished:
            return [], self._finished
        self._finished = True
        return self._release(len(self._text), final=True), True

    def _release(self, upto: int, *, final: bool) -> list[str]:
        piece = self._text[self._sent : upto]
        if self._entities:
            amp = piece.rfind("&")
            if not final and amp >= 0 and ";" not in piece[amp:]:
                piece = piece[:amp]  # an entity still arriving
        if not self._begun:
            stripped = piece.lstrip()
            self._sent += len(piece) - len(stripped)
            piece = stripped
        kept = piece if final else piece.rstrip()  # trailing space waits for more text
        self._sent += len(kept)
        if final:
            kept = kept.rstrip()
        if kept:
            self._begun = True
        return [_unescape(kept) if self._entities else kept] if kept else []


def _held(text: str, marker: str) -> int:
    """How many trailing characters of `text` might begin `marker`."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class _JSONCutter:
    """A key's value in a JSON object: a string decoded as it arrives, else raw text."""

    def __init__(self, field: str) -> None:
        self._key = re.compile(rf"{re.escape(json.dumps(field))}\s*:\s*")
        self._text = ""
        self._pos: int | None = None  # the next value character to read
        self._string: bool | None = None
        self._depth = 0
        self._finished = False

    def feed(self, text: str) -> tuple[list[str], bool]:
        if self._finished:
            return [], True
        self._text += text
        if self._pos is None:
            match = self._key.search(self._text)
            if match is None or match.end() >= len(self._text):
                return [], False
            self._pos = match.end()
            self._string = self._text[self._pos] == '"'
            self._pos += 1 if self._string else 0
        pieces, self._finished = self._read_string() if self._string else self._read_raw()
        return pieces, self._finished

    def close(self) -> tuple[list[str], bool]:
        if self._pos is None or self._finished:
            return [], self._finished
        pieces, _ = self.feed("")
        self._finished = True
        return pieces, True

    def _read_string(self) -> tuple[list[str], bool]:
        assert self._pos is not None
        out: list[str] = []
        text, i = self._text, self._pos
        while i < len(text):
            ch = text[i]
            if ch == '"':
                self._pos = i + 1
                return (["".join(out)] if out else []), True
            if ch != "\\":
                out.append(ch)
                i += 1
                continue
            if i + 1 >= len(text):
                break
            if text[i + 1] == "u":
                if i + 6 > len(text):
                    break
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
            else:
                out.append(_ESCAPES.get(text[i + 1], text[i + 1]))
                i += 2
        self._pos = i
        return (["".join(out)] if out else []), False

    def _read_raw(self) -> tuple[list[str], bool]:
        assert self._pos is not None
        text, start = self._text, self._pos
        for i in range(start, len(text)):
            ch = text[i]
            if ch in "[{":
                self._depth += 1
            elif ch in "]}" and self._depth > 0:
                self._depth -= 1
            elif ch in ",}" and self._depth == 0:
                self._pos = i
                piece = text[start:i].strip()
                return ([piece] if piece else []), True
        self._pos = len(text)
        piece = text[start:]
        return ([piece] if piece else []), False


def _unescape(text: str) -> str:
    """XML's predefined entities decoded (as `xml.sax.saxutils.unescape`)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
