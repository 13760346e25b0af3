"""The feedback hint Refine passes to the predictors of its next attempt (a ContextVar)."""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["current_hint", "hint_var"]

hint_var: ContextVar[str | None] = ContextVar("lmvisor_refine_hint", default=None)


def current_hint() -> str | None:
    """The hint for predictors running now, if a Refine attempt set one."""
    return hint_var.get()
