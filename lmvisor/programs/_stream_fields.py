"""Cutting one output field's text out of a streaming completion, per adapter format.

A cutter is fed the completion piece by piece and releases the field's text as soon as
it cannot be part of the next field's marker; like the adapters' parsers, it drops the
whitespace around the value. `feed` and `close` return (pieces, finished): `finished`
once the field's value has ended (at the next marker, or when the stream closes after
the value began).
"""

from __future__ import annotations

import json
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
    """A value between a start marker and an end marker (Chat's and XML's formats).

    `_text` holds only what may still matter: before the start marker, the tail that could
    begin it; inside the value, the text not yet released (blanks, a part of the end
    marker or of an entity). Each piece costs work linear in its length, however the
    completion is cut: a stream of one-character deltas held the loop quadratically.
    """

    def __init__(self, start: str, end: str, *, entities: bool) -> None:
        self._start, self._end, self._entities = start, end, entities
        self._text = ""
        self._in_value = False
        self._begun = False  # a non-space value character was released
        self._blank = False  # the held value text is blanks only: a blank piece changes nothing
        self._finished = False

    def feed(self, text: str) -> tuple[list[str], bool]:
        if self._finished:
            return [], True
        held, self._text = self._text, ""
        held += text  # the only reference: CPython appends in place
        self._text = held
        if self._blank and text.isspace():
            return [], False  # markers begin with "[" or "<": blanks end nothing
        if not self._in_value:
            found = self._text.find(self._start)
            if found < 0:
                self._text = self._text[max(0, len(self._text) - len(self._start) + 1) :]
                return [], False
            self._text = self._text[found + len(self._start) :]
            self._in_value = True
        end = self._text.find(self._end)
        if end >= 0:
            self._finished = True
            return self._release(end, final=True), True
        return self._release(len(self._text) - _held(self._text, self._end), final=False), False

    def close(self) -> tuple[list[str], bool]:
        if not self._in_value or self._finished:
            return [], self._finished
        self._finished = True
        return self._release(len(self._text), final=True), True

    def _release(self, upto: int, *, final: bool) -> list[str]:
        piece = self._text[:upto]
        sent = 0
        if self._entities:
            amp = piece.rfind("&")
            # "&amp;" is the longest entity decoded: an "&" further back begins none.
            if not final and amp >= 0 and len(piece) - amp < 5 and ";" not in piece[amp:]:
                piece = piece[:amp]  # an entity still arriving
        if not self._begun:
            stripped = piece.lstrip()
            sent += len(piece) - len(stripped)
            piece = stripped
        kept = piece if final else piece.rstrip()  # trailing space waits for more text
        sent += len(kept)
        self._text = self._text[sent:]
        self._blank = not final and (not self._text or self._text.isspace())
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
_HEX = frozenset("0123456789abcdefABCDEF")


class _JSONCutter:
    """A key's value in a JSON object: a string decoded as it arrives, else raw text.

    The key is sought as `re.search` would find `"key"\\s*:\\s*`, one piece at a time
    (stage 0: the quoted key; 1: blanks, then ":"; 2: blanks, then the value), and only
    the unread text is kept: work linear in the completion, however it is cut.
    """

    def __init__(self, field: str) -> None:
        self._literal = json.dumps(field)
        self._seen = ""  # stage 0: the tail that may begin the key
        self._stage = 0
        self._blanks = False  # stage 1: blanks followed the key
        self._text = ""  # the value's text not yet read
        self._pos: int | None = None  # the next value character to read (None: no value yet)
        self._string: bool | None = None
        self._depth = 0
        self._finished = False

    def feed(self, text: str) -> tuple[list[str], bool]:
        if self._finished:
            return [], True
        if self._pos is None:
            value = self._seek(text)
            if value is None:
                return [], False
            self._string = value[0] == '"'
            self._text, self._pos = value, 1 if self._string else 0
        else:
            unread, self._text = self._text, ""
            unread += text  # the only reference: CPython appends in place
            self._text = unread
        pieces, self._finished = self._read_string() if self._string else self._read_raw()
        self._text, self._pos = self._text[self._pos :], 0
        return pieces, self._finished

    def close(self) -> tuple[list[str], bool]:
        if self._pos is None or self._finished:
            return [], self._finished
        pieces, _ = self.feed("")
        self._finished = True
        return pieces, True

    def _seek(self, text: str) -> str | None:
        """The text from the key's value on, once the key, its colon and a value char came."""
        seen = self._seen + text
        self._seen = ""
        while seen:
            if self._stage == 0:
                found = seen.find(self._literal)
                if found < 0:
                    self._seen = seen[max(0, len(seen) - len(self._literal) + 1) :]
                    return None
                seen, self._stage, self._blanks = seen[found + len(self._literal) :], 1, False
                continue
            rest = seen.lstrip()
            if self._stage == 1:
                self._blanks = self._blanks or len(rest) < len(seen)
                if not rest:
                    return None
                if rest[0] != ":":
                    # Not the key: look again from its closing quote, which may begin another.
                    seen, self._stage = (rest if self._blanks else '"' + rest), 0
                    continue
                seen, self._stage = rest[1:], 2
                continue
            if rest:
                return rest
            return None
        return None

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
                digits = text[i + 2 : i + 6]
                # A broken escape (not four hex digits) stays as written.
                out.append(chr(int(digits, 16)) if _HEX.issuperset(digits) else text[i : i + 6])
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
