"""The generation options a program may carry, listed once for specs and saved programs.

A program spec's `config` holds these and nothing else (never keys or URLs), and
`Module.load(..., lm_settings=True)` restores these, and only these, from the `lm`
block DSPy saves with each predictor.
"""

from __future__ import annotations

from typing import Final

__all__ = ["GENERATION_OPTIONS"]

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
