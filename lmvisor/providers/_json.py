"""JSON for the wire: orjson when installed (the `fast` extra), the standard library otherwise.

Both produce compact UTF-8 (no spaces, non-ASCII kept). Decoding turns every
kind of hostile input (bad syntax, nesting deep enough to exhaust the stack,
numbers too long to convert) into `ValueError`, never `RecursionError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["FAST", "dumps", "loads"]

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _std_dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def _std_loads(data: bytes | bytearray | memoryview | str) -> Any:
    if isinstance(data, memoryview | bytearray):
        data = bytes(data)
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


_dumps: Callable[[Any], bytes]
_loads: Callable[[Any], Any]
try:
    import orjson
except ImportError:  # pragma: no cover - exercised where the fast extra is absent
    FAST = False
    _dumps, _loads = _std_dumps, _std_loads
else:
    FAST = True
    _dumps, _loads = orjson.dumps, orjson.loads


def dumps(value: Any) -> bytes:
    """`value` as compact JSON bytes.

    Raises:
        ValueError: `value` holds something JSON cannot represent (the message says what).
    """
    try:
        return _dumps(value)
    except TypeError:
        pass  # orjson refuses some values json takes (ints beyond 64 bits, non-str keys)
    try:
        return _std_dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(str(exc)) from exc


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """The value of a JSON document.

    Raises:
        ValueError: the document is not valid JSON, or is nested too deeply.
    """
    try:
        return _loads(data)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
