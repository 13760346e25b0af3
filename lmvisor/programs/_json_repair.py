"""`repair_json`: json_repair's lenient reading of an LM's JSON, with its work bounded.

json_repair reads slightly broken JSON as DSPy reads it, in linear time on the text LMs
write (~15-25 interpreter events per character). Some malformed text costs it quadratic
time: a few kilobytes of unbalanced braces held the event loop for seconds, from one
completion. Here the repair runs under a profile hook that counts interpreter events
(calls and returns, Python's and C's) and gives up past `_EVENTS_PER_CHAR` per character,
so a hostile text costs time linear in its length; every caller already treats "no
reading" as a parse failure.

The hook counts calls, not bytecode: json_repair reads a number by appending one character
at a time to a string, which turns quadratic past ~64k characters (a 256k-digit "number"
held the loop over a second at a handful of events per character). Text that is not valid
JSON and holds a run of number characters longer than `_MAX_NUMBER_RUN` is refused before
the repair starts.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, Final

__all__ = ["repair_json"]

_EVENTS_PER_CHAR: Final = 60
_EVENTS_BASE: Final = 5_000
_MAX_NUMBER_RUN: Final = 32_768
# json_repair's number characters (`parse_number.NUMBER_CHARS`, and "+" after an exponent).
_NUMBER_RUN: Final = re.compile(rf"[0-9.,eE/_+\-]{{{_MAX_NUMBER_RUN + 1},}}")


class _OverBudget(BaseException):
    """Raised by the hook inside json_repair; a BaseException so its `except Exception`
    blocks cannot swallow it."""


def repair_json(text: str) -> Any:
    """json_repair's reading of `text` (valid JSON reads as `json.loads` reads it).

    With a profiler installed (`sys.setprofile`, cProfile) the repair runs unbounded rather
    than take the profiler's place: cProfile's hook cannot be put back from Python.

    Raises:
        ValueError: json_repair gave up (it raises assorted errors on pathological text),
            the text nests too deeply, the repair outgrew its budget of work, or text that
            is not valid JSON holds an over-long run of number characters.
    """
    import json_repair

    if _NUMBER_RUN.search(text) is not None:
        return _valid_only(text)
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


def _valid_only(text: str) -> Any:
    """Text json_repair would read in quadratic time: valid JSON, or a refusal.

    Raises:
        ValueError: the text is not valid JSON.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except ValueError:
        raise ValueError(
            f"not JSON, and holds a run of over {_MAX_NUMBER_RUN} number characters"
        ) from None


def _read(loads: Callable[[str], Any], text: str) -> Any:
    try:
        return loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except Exception as exc:
        raise ValueError(f"not JSON json_repair can read: {type(exc).__name__}") from None
