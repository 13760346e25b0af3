"""Readers of the step values optimizers journal, for `OptimizationRun.step(read=...)`.

A value replayed from a checkpoint was written by a run of this code, or by an older or
damaged one: each reader checks the shape its step writes and raises TypeError, KeyError
or ValueError on anything else, which the run reports as a `CheckpointError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["attempt", "instruction", "number", "proposals", "summary"]


def _object(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"{what} must be a list, got {type(value).__name__}")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    return value


def number(value: Any, what: str = "score") -> float:
    """A JSON number as a float (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    return float(value)


def summary(value: Any) -> str | None:
    """`{"summary": str | None}` (the dataset summary step)."""
    found = _object(value)["summary"]
    return None if found is None else _text(found, "summary")


def instruction(value: Any) -> str:
    """`{"instruction": str}` (one proposed instruction)."""
    return _text(_object(value)["instruction"], "instruction")


def proposals(value: Any) -> list[tuple[str, str]]:
    """`{"instructions": [str], "prefixes": [str]}` of one length, as pairs."""
    data = _object(value)
    instructions = [_text(i, "instruction") for i in _list(data["instructions"], "instructions")]
    prefixes = [_text(p, "prefix") for p in _list(data["prefixes"], "prefixes")]
    return list(zip(instructions, prefixes, strict=True))


def attempt(value: Any) -> dict[str, Any]:
    """One bootstrap attempt: success, score, demos by predictor, error (a string or None)."""
    data = dict(_object(value))
    if not isinstance(data["success"], bool):
        raise TypeError("success must be true or false")
    number(data["score"])
    if data["error"] is not None:
        _text(data["error"], "error")
    for name, demos in _object(data["demos"]).items():
        for demo in _list(demos, f"demos[{name!r}]"):
            _object(demo)
    return data
