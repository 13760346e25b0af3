"""The advice Refine passes to the predictors of its next attempt (a ContextVar).

The advice is per predictor: a mapping from a predictor's id to its hint; a predictor
not named in it (while any advice is active) is told "N/A", as DSPy tells it.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar

__all__ = ["current_hint", "hint_var"]

hint_var: ContextVar[Mapping[int, str] | None] = ContextVar("lmvisor_refine_hint", default=None)


def current_hint(predictor: object) -> str | None:
    """The hint for `predictor` running now, if a Refine attempt set advice."""
    advice = hint_var.get()
    if advice is None:
        return None
    return advice.get(id(predictor), "N/A")
