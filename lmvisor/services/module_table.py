"""The module table: registered programs, their numbered versions, and how they describe themselves.

The table is the ModuleManager's state, shared like an ETS table: the
manager alone changes it (register, swap, rollback, unregister, one message
at a time), while executions and `describe`/`list` read it directly. A
`ModuleVersion` is never changed once made: a swap installs a new version
object, so an execution that picked up version N runs on version N to the
end however many swaps happen meanwhile.

Versions are numbered from 1 and never reused. `history` is the order
versions were made current: a swap pushes, a rollback pops back to the
version that was current before. At most `keep` versions are kept; the
oldest are forgotten first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

from lmvisor.programs.module import Module
from lmvisor.programs.spec import ProgramSpec, ProgramSpecError, program_spec
from lmvisor.runtime.observe.metrics import ModuleFigures
from lmvisor.runtime.protection.breaker import CircuitBreaker
from lmvisor.runtime.protection.limiter import RateLimiter
from lmvisor.services.errors import NoPreviousVersion
from lmvisor.services.module_options import ModuleOptions

__all__ = [
    "ModuleInfo",
    "ModuleRecord",
    "ModuleVersion",
    "PredictorInfo",
    "spec_of",
]


@final
@dataclass(frozen=True, slots=True)
class ModuleVersion:
    """One version of a program: its number, the program object and its spec when it has one."""

    number: int
    program: Module
    spec: ProgramSpec | None
    created_at: float


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class PredictorInfo:
    """One predictor of a program: its dotted name, signature, instructions, demos and config."""

    name: str
    signature: str
    instructions: str
    demos: int
    config: Mapping[str, Any]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleInfo:
    """What `describe` and `list` report of a registered program."""

    module_id: str
    module_type: str
    version: int
    versions: tuple[int, ...]
    lm: str
    demos: int
    predictors: tuple[PredictorInfo, ...]
    options: Mapping[str, Any]

    @property
    def signature(self) -> str | None:
        """The first predictor's signature ("question -> answer"), if it has one."""
        return self.predictors[0].signature if self.predictors else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "module_id": self.module_id,
            "module_type": self.module_type,
            "version": self.version,
            "versions": list(self.versions),
            "lm": self.lm,
            "signature": self.signature,
            "demos": self.demos,
            "predictors": [
                {
                    "name": p.name,
                    "signature": p.signature,
                    "instructions": p.instructions,
                    "demos": p.demos,
                    "config": dict(p.config),
                }
                for p in self.predictors
            ],
            "options": dict(self.options),
        }


def spec_of(program: Module, lm: str | None = None) -> ProgramSpec | None:
    """The program's spec when it is a built-in module that has one, else None."""
    try:
        return program_spec(program, lm=lm)
    except (TypeError, ProgramSpecError):
        return None


@final
@dataclass(slots=True, kw_only=True)
class ModuleRecord:
    """One registered program: its versions, options, model, protections and metric figures.

    Changed only by the ModuleManager; everything else reads it. `restored` marks a
    program read back from the store and not yet registered again by this app.
    """

    module_id: str
    module_type: str
    lm: str
    options: ModuleOptions
    current: ModuleVersion
    versions: dict[int, ModuleVersion]
    history: list[int]
    breaker: CircuitBreaker
    figures: ModuleFigures
    limiter: RateLimiter | None = None
    protection_config: tuple[Any, Any] = (None, None)
    next_number: int = 2
    restored: bool = False

    @classmethod
    def first(
        cls,
        module_id: str,
        version: ModuleVersion,
        *,
        lm: str,
        options: ModuleOptions,
        breaker: CircuitBreaker,
        figures: ModuleFigures,
    ) -> ModuleRecord:
        """A record whose only version is `version` (1, or where an earlier record of the
        id left off); the next is numbered after it."""
        return cls(
            module_id=module_id,
            module_type=type(version.program).__name__,
            lm=lm,
            options=options,
            current=version,
            versions={version.number: version},
            history=[version.number],
            breaker=breaker,
            figures=figures,
            next_number=version.number + 1,
        )

    @classmethod
    def from_store(
        cls,
        module_id: str,
        versions: Sequence[ModuleVersion],
        history: Sequence[int],
        *,
        next_number: int,
        lm: str,
        options: ModuleOptions,
        breaker: CircuitBreaker,
        figures: ModuleFigures,
    ) -> ModuleRecord:
        """A record read back from the store: its kept versions, the last of `history` current."""
        by_number = {v.number: v for v in versions}
        current = by_number[history[-1]]
        return cls(
            module_id=module_id,
            module_type=type(current.program).__name__,
            lm=lm,
            options=options,
            current=current,
            versions=by_number,
            history=list(history),
            breaker=breaker,
            figures=figures,
            next_number=next_number,
            restored=True,
        )

    def add_version(
        self, program: Module, spec: ProgramSpec | None, now: float, *, keep: int
    ) -> ModuleVersion:
        """Make `program` the next version and the current one; forget beyond `keep`."""
        version = ModuleVersion(self.next_number, program, spec, now)
        self.next_number += 1
        self.versions[version.number] = version
        self.history.append(version.number)
        self.current = version
        self.module_type = type(program).__name__
        self._prune(keep)
        return version

    def rollback(self) -> ModuleVersion:
        """Return to the version current before this one.

        Raises:
            NoPreviousVersion: no earlier version is kept.
        """
        if len(self.history) < 2:
            raise NoPreviousVersion(module_id=self.module_id, version=self.current.number)
        self.history.pop()
        self.current = self.versions[self.history[-1]]
        self.module_type = type(self.current.program).__name__
        return self.current

    def _prune(self, keep: int) -> None:
        while len(self.versions) > keep:
            oldest = min(self.versions)
            del self.versions[oldest]
            self.history = [n for n in self.history if n != oldest]

    def info(self) -> ModuleInfo:
        """What `describe` reports."""
        program = self.current.program
        predictors = tuple(_predictor_info(name, p) for name, p in program.named_predictors())
        return ModuleInfo(
            module_id=self.module_id,
            module_type=self.module_type,
            version=self.current.number,
            versions=tuple(sorted(self.versions)),
            lm=self.lm,
            demos=sum(p.demos for p in predictors),
            predictors=predictors,
            options=self.options.to_dict(),
        )


def _predictor_info(name: str, predictor: Any) -> PredictorInfo:
    signature = getattr(predictor, "signature", None)
    return PredictorInfo(
        name=name,
        signature=str(getattr(signature, "signature", "")),
        instructions=str(getattr(signature, "instructions", "")),
        demos=len(getattr(predictor, "demos", ()) or ()),
        config=dict(getattr(predictor, "config", {}) or {}),
    )
