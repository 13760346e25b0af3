"""The API's JSON answers: orjson-rendered, and never broken by a value JSON cannot hold.

Program outputs and job results come from user code and LM completions: a set,
a date or a custom object must not turn a finished run into a 500. `JSONAnswer`
renders with orjson (dataclasses, datetimes and numpy-free containers natively)
and writes anything else as its `str`.
"""

from __future__ import annotations

from typing import Any, final

import orjson
from starlette.responses import JSONResponse

__all__ = ["JSONAnswer", "dump_json", "utf8_safe"]

_OPTIONS = orjson.OPT_NON_STR_KEYS
# orjson stops at 255 levels; cut a little above where it starts refusing.
_MAX_DEPTH = 200
_TOO_DEEP = f"<nested deeper than {_MAX_DEPTH} levels>"


def utf8_safe(text: str) -> str:
    """`text`, with any lone surrogate (a JSON body's `"\\ud800"`) written as its escape.

    JSON on the wire is UTF-8, which cannot hold a lone surrogate: a value or an error
    naming what a caller sent would otherwise fail to render, and the answer become a 500.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _key(key: Any) -> Any:
    if isinstance(key, str):
        return utf8_safe(key)
    return key if isinstance(key, int | float | bool) or key is None else utf8_safe(str(key))


def _fallback(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return utf8_safe(str(value))


def dump_json(content: Any) -> bytes:
    """`content` as JSON bytes; never raises.

    A value JSON cannot hold is written as its `str`, a non-finite float as null, an
    integer beyond 64 bits as its digits (a string), a lone surrogate as its escape, and
    what is nested deeper than orjson allows as a placeholder string.
    """
    try:
        return orjson.dumps(content, default=_fallback, option=_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        return orjson.dumps(_tamed(content, _MAX_DEPTH), default=_fallback, option=_OPTIONS)


def _tamed(value: Any, depth: int) -> Any:
    """`value` with big integers as strings, lone surrogates escaped and containers below
    `depth` levels cut."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, str):
        return utf8_safe(value)
    if isinstance(value, dict | list | tuple | set | frozenset):
        if depth <= 0:
            return _TOO_DEEP
        if isinstance(value, dict):
            return {_key(k): _tamed(v, depth - 1) for k, v in value.items()}
        return [_tamed(v, depth - 1) for v in value]
    return value


@final
class JSONAnswer(JSONResponse):
    """A JSON response rendered by `dump_json`."""

    def render(self, content: Any) -> bytes:
        return dump_json(content)
