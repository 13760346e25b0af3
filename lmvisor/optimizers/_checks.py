"""Checks of what Evaluate and the optimizers are given: settings and data sets.

A careless value (a float or a string where a count goes, NaN where a score goes, None
or a string where examples go) is refused at construction or at the start of a run with
the owner and the setting named, instead of failing deep inside a run with an error that
names neither.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from lmvisor.programs.example import Example

__all__ = ["count", "example_list", "optional_count", "optional_real", "real"]


def count(owner: str, name: str, value: Any, *, minimum: int) -> int:
    """`value` as a count of at least `minimum`.

    Raises:
        TypeError: `value` is not an int (a bool is not one here).
        ValueError: `value` < `minimum`.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}.{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}.{name} must be >= {minimum}, got {value!r}")
    return value


def optional_count(owner: str, name: str, value: Any, *, minimum: int) -> int | None:
    """None, or `value` checked as by `count`."""
    return None if value is None else count(owner, name, value, minimum=minimum)


def real(owner: str, name: str, value: Any) -> float:
    """`value` as a finite float.

    Raises:
        TypeError: `value` is not a real number (or is a bool).
        ValueError: `value` is NaN or infinite.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}.{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{owner}.{name} must be a finite number, got {value!r}")
    return number


def optional_real(owner: str, name: str, value: Any) -> float | None:
    """None, or `value` checked as by `real`."""
    return None if value is None else real(owner, name, value)


def example_list(items: object, what: str) -> list[Example]:
    """Examples from Examples or mappings (a mapping keeps no input marks).

    Raises:
        TypeError: `items` is not a sequence (a string is not one here), or an item is
            neither an Example nor a mapping; `what` names the data set in the message.
    """
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise TypeError(
            f"{what} must be a sequence of Examples or mappings, got {type(items).__name__}"
        )
    found = []
    for index, item in enumerate(items):
        if isinstance(item, Example):
            found.append(item)
        elif isinstance(item, Mapping):
            found.append(Example(item))
        else:
            raise TypeError(
                f"{what}[{index}] must be an Example or a mapping, got {type(item).__name__}"
            )
    return found
