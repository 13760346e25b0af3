"""The generation options a program may carry, listed once for specs and saved programs.

A program spec's `config` holds these and nothing else (never keys or URLs), and
`Module.load(..., lm_settings=True)` restores these, and only these, from the `lm`
block DSPy saves with each predictor.
"""

from __future__ import annotations

import math
from typing import Any, Final

__all__ = ["GENERATION_OPTIONS", "is_finite_setting"]

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


def is_finite_setting(value: Any) -> bool:
    """Whether a setting's numbers are all finite (itself, or a list's or an object's items).

    JSON encoders send NaN and Infinity as null (or refuse them): the vendor would get a
    setting other than the one written, so specs and saved programs refuse them.
    """
    if isinstance(value, list):
        items: list[Any] = value
    elif isinstance(value, dict):
        items = list(value.values())
    else:
        items = [value]
    return all(not isinstance(item, float) or math.isfinite(item) for item in items)
