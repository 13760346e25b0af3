"""Config's one error: every problem found while loading or updating settings.

    LmvisorError (lmvisor._error), ValueError
    └── ConfigError        a file, variable, argument or update failed validation

Config imports nothing from the rest of lmvisor; the root error lives in the
leaf module `lmvisor._error` so that `ConfigError` is an `LmvisorError` (and
`except LmvisorError` catches it) while staying a `ValueError`, as
pydantic-settings' own `SettingsError` is. Messages name dotted paths and
sources, never the offending values: a bad value may be a secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import final

from lmvisor._error import LmvisorError

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
class ConfigError(LmvisorError, ValueError):
    """The configuration is invalid; fix every listed field and load again."""

    code = "config_error"
    retryable = False

    def __init__(self, *, problems: Iterable[ConfigProblem], action: str = "load") -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("ConfigError: problems must not be empty")
        count = len(self.problems)
        plural = "problem" if count == 1 else "problems"
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(
            f"invalid configuration ({action}, {count} {plural}):\n{lines}",
            context={
                "action": action,
                "problems": [
                    {"path": p.path, "reason": p.reason, "source": p.source} for p in self.problems
                ],
            },
        )

    @property
    def paths(self) -> tuple[str, ...]:
        """The dotted path of every bad field, in the order found."""
        return tuple(problem.path for problem in self.problems)
