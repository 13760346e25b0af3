"""The generation options a program may carry, listed once for specs and saved programs.

A program spec's `config` holds these and nothing else (never keys or URLs), and
`Module.load(..., lm_settings=True)` restores these, and only these, from the `lm`
block DSPy saves with each predictor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

__all__ = ["GENERATION_OPTIONS", "setting_problem"]

GENERATION_OPTIONS: Final[frozenset[str]] = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "reasoning_effort",
    }
)
"""Sampling and length settings sent with each request (see the module docstring)."""


def setting_problem(key: str, value: Any) -> str | None:
    """What is wrong with the generation setting `key` = `value`; None when it may be sent.

    A known option (`GENERATION_OPTIONS`) must have the JSON type the vendors take
    (see `_KINDS`; None means unset): a list as `temperature` or a string as `seed`
    would reach the vendor and be refused with a 400 at call time. A bool is no number
    here, though Python counts it as an int. A key lmvisor does not know (a vendor's
    own option) is left as it is: only the checks on numbers below apply to it.

    Every number (the value itself, or a list's or an object's items) must be finite
    (JSON encoders send NaN and Infinity as null, or refuse them: the vendor would get
    another setting than the one written) and a whole number must fit 64 bits (a larger
    one is not a number to a vendor, and JSON views show it as a string). The counts
    (`max_tokens`, `max_completion_tokens`, `n`, `top_logprobs`) must be whole numbers
    in their range (see `_COUNTS`). Specs and saved programs refuse what this names.
    """
    kind = _KINDS.get(key)
    if kind is not None and value is not None and not kind[0](value):
        return kind[1]
    if isinstance(value, list):
        items: list[Any] = value
    elif isinstance(value, dict):
        items = list(value.values())
    else:
        items = [value]
    if any(isinstance(item, float) and not math.isfinite(item) for item in items):
        return "numbers must be finite"
    bounds = _COUNTS.get(key)
    if bounds is not None and value is not None:
        low, high = bounds
        if type(value) is not int or not low <= value <= high:
            return f"must be a whole number from {low} to {high}"
    if any(isinstance(item, int) and not _INT64_MIN <= item <= _INT64_MAX for item in items):
        return "whole numbers must fit 64 bits"
    return None


_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_COUNTS: Final[Mapping[str, tuple[int, int]]] = MappingProxyType(
    {
        # Vendors read token budgets as 32-bit ints.
        "max_tokens": (1, 2**31 - 1),
        "max_completion_tokens": (1, 2**31 - 1),
        # OpenAI's own limits: at most 128 choices and 20 log probabilities per token.
        "n": (1, 128),
        "top_logprobs": (0, 20),
    }
)
"""Settings that count something, with their least and greatest value."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_stop(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(item, str) for item in value)
    )


def _is_bias(value: Any) -> bool:
    # Keys are token ids: strings in JSON, whole numbers when written in Python.
    return isinstance(value, dict) and all(
        (isinstance(token, str) or _is_whole(token)) and _is_number(bias)
        for token, bias in value.items()
    )


def _is_flag(value: Any) -> bool:
    return isinstance(value, bool)


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


_NUMBER: Final = (_is_number, "must be a number")
_KINDS: Final[Mapping[str, tuple[Callable[[Any], bool], str]]] = MappingProxyType(
    {
        "temperature": _NUMBER,
        "top_p": _NUMBER,
        "presence_penalty": _NUMBER,
        "frequency_penalty": _NUMBER,
        "seed": (_is_whole, "must be a whole number"),
        "stop": (_is_stop, "must be a string or a list of strings"),
        "logit_bias": (_is_bias, "must be an object of token ids to numbers"),
        "logprobs": (_is_flag, "must be true or false"),
        "reasoning_effort": (_is_text, "must be a string"),
        # The counts are checked with their range (`_COUNTS`).
    }
)
"""The JSON type of each option that is not a count: its test, and the problem named."""
