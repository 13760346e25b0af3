"""Reasoning content across vendors: which models reason natively, where their reasoning
arrives (OpenAI-compatible `reasoning_content` / `reasoning`, Anthropic `thinking`
blocks), and how an adapter's `reasoning_effort` maps to Anthropic's `thinking` budget.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "anthropic_thinking",
    "message_reasoning",
    "supports_reasoning",
]

_REASONING_MODELS: Final = re.compile(
    r"^(?:[\w.-]+/)?(?:o1|o3|o4|gpt-5|deepseek-r1|deepseek-reasoner|qwq"
    r"|claude-3-7-sonnet|claude-(?:opus|sonnet|haiku)-4)",
    re.IGNORECASE,
)
_EFFORT_BUDGET: Final = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
_MIN_BUDGET: Final = 1024


def supports_reasoning(model: str) -> bool:
    """True for models that reason natively ("openai/o3-mini", "claude-sonnet-4-5"...)."""
    return bool(_REASONING_MODELS.match(model))


def message_reasoning(message: Mapping[str, Any]) -> str | None:
    """The reasoning text of an OpenAI-compatible message or stream delta, if any."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def anthropic_thinking(effort: Any, max_tokens: int) -> dict[str, Any] | None:
    """Anthropic's `thinking` param for an OpenAI-style `reasoning_effort` (None: off).

    The budget follows the effort and stays below `max_tokens`, as Anthropic requires.

    Raises:
        ValueError: the effort is not one of minimal, low, medium, high.
    """
    if effort is None:
        return None
    budget = _EFFORT_BUDGET.get(str(effort))
    if budget is None:
        raise ValueError(
            f"params.reasoning_effort must be one of {', '.join(_EFFORT_BUDGET)}, got {effort!r}"
        )
    budget = min(budget, max(_MIN_BUDGET, max_tokens - 1))
    return {"type": "enabled", "budget_tokens": budget}
