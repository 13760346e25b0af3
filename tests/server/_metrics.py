"""Metrics for the optimization tests (imported by daemon processes through `server.metrics`)."""

from __future__ import annotations

from typing import Any


def answered(example: Any, prediction: Any, trace: Any = None) -> bool:
    """True when the program produced a non-empty answer (the loopback LM always does)."""
    return bool(str(getattr(prediction, "answer", "") or "").strip())


def answer_length(example: Any, prediction: Any) -> float:
    """A score in [0, 1] that differs between candidates: shorter answers score higher."""
    return 1.0 / (1.0 + len(str(getattr(prediction, "answer", ""))) / 100.0)
