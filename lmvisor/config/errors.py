"""Config's one error: every problem found while loading or updating settings.

    ValueError
    └── ConfigError        a file, variable, argument or update failed validation

Config is a leaf layer and cannot import the runtime's `LmvisorError`, so
`ConfigError` carries the same attributes (`code`, `message`, `context`,
`correlation_id`, `retryable`, `to_dict()`) and the runtime treats it alike.
Messages name dotted paths and sources, never the offending values: a bad
value may be a secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, final

__all__ = ["ConfigError", "ConfigProblem"]


@final
@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One bad field: its dotted path, why it is bad, and where the value came from."""

    path: str
    reason: str
    source: str | None = None

    def __str__(self) -> str:
        where = f" (from {self.source})" if self.source else ""
        return f"{self.path or '<root>'}: {self.reason}{where}"


@final
class ConfigError(ValueError):
    """The configuration is invalid; fix every listed field and load again."""

    code: ClassVar[str] = "config_error"
    retryable: ClassVar[bool] = False

    def __init__(self, *, problems: Iterable[ConfigProblem], action: str = "load") -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("ConfigError: problems must not be empty")
        count = len(self.problems)
        plural = "problem" if count == 1 else "problems"
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        self.message = f"invalid configuration ({action}, {count} {plural}):\n{lines}"
        self.context: dict[str, Any] = {
            "action": action,
            "problems": [
                {"path": p.path, "reason": p.reason, "source": p.source} for p in self.problems
            ],
        }
        self.correlation_id: str | None = None
        super().__init__(self.message)

    @property
    def paths(self) -> tuple[str, ...]:
        """The dotted path of every bad field, in the order found."""
        return tuple(problem.path for problem in self.problems)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view for events and HTTP error bodies."""
        return {
            "type": type(self).__name__,
            "code": self.code,
            "message": self.message,
            "context": self.context,
            "correlation_id": self.correlation_id,
            "retryable": self.retryable,
        }

    def __str__(self) -> str:
        return self.message
