"""`repair_json`: json_repair's lenient reading of an LM's JSON, with its work bounded.

json_repair reads slightly broken JSON as DSPy reads it, in linear time on the text LMs
write (~15-25 interpreter events per character). Some malformed text costs it quadratic
time: a few kilobytes of unbalanced braces held the event loop for seconds, from one
completion. Here the repair runs under a profile hook that counts interpreter events
(calls and returns, Python's and C's) and gives up past `_EVENTS_PER_CHAR` per character,
so a hostile text costs time linear in its length; every caller already treats "no
reading" as a parse failure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, Final

__all__ = ["repair_json"]

_EVENTS_PER_CHAR: Final = 60
_EVENTS_BASE: Final = 5_000


class _OverBudget(BaseException):
    """Raised by the hook inside json_repair; a BaseException so its `except Exception`
    blocks cannot swallow it."""


def repair_json(text: str) -> Any:
    """json_repair's reading of `text` (valid JSON reads as `json.loads` reads it).

    With a profiler installed (`sys.setprofile`, cProfile) the repair runs unbounded rather
    than take the profiler's place: cProfile's hook cannot be put back from Python.

    Raises:
        ValueError: json_repair gave up (it raises assorted errors on pathological text),
            the text nests too deeply, or the repair outgrew its budget of work.
    """
    import json_repair

    if sys.getprofile() is not None:
        return _read(json_repair.loads, text)
    left = _EVENTS_BASE + _EVENTS_PER_CHAR * len(text)

    def count(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal left
        left -= 1
        if left < 0:
            raise _OverBudget

    sys.setprofile(count)
    try:
        return _read(json_repair.loads, text)
    except _OverBudget:
        raise ValueError(
            f"not JSON that can be repaired in linear time ({len(text)} chars)"
        ) from None
    finally:
        sys.setprofile(None)


def _read(loads: Callable[[str], Any], text: str) -> Any:
    try:
        return loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except Exception as exc:
        raise ValueError(f"not JSON json_repair can read: {type(exc).__name__}") from None
