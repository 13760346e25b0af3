"""How one registered program runs: its LM and its graceful degradation.

`ModuleOptions` (all optional):

- `lm`: the model the program runs on ("vendor/model"); else the spec's `lm`,
  else `modules.default_lm`.
- `allow_stale`: an expired cached answer may stand in for a failed LM call,
  and the "stale_cache" fallback may run.
- `fallback`: a simpler program (a Module, or a program spec such as
  `{"module": "Predict", "signature": ...}`) tried when the program fails.
- `fallback_lm`: a cheaper model the same program is retried on.
- `default`: the answer of last resort (output values of a `Prediction`).

When the program fails, the fallbacks run in `FALLBACK_ORDER`, each only if
configured: a stale cached answer, the simpler program, the cheaper model,
the default answer. `parse_module_options` reads the JSON form (the daemon's
request body) and names the bad field of a malformed one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, final

from lmvisor.programs.lm import model_name_problem
from lmvisor.programs.module import Module
from lmvisor.programs.spec import ProgramSpec, ProgramSpecError, build_program, program_spec
from lmvisor.services.errors import ServiceInputError

__all__ = ["FALLBACK_ORDER", "ModuleOptions", "check_model_name", "parse_module_options"]

FALLBACK_ORDER: Final = ("stale_cache", "fallback_module", "fallback_lm", "default")
"""The fallback strategies, in the order they are tried."""

_KEYS: Final = frozenset({"lm", "allow_stale", "fallback", "fallback_lm", "default"})


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleOptions:
    """A registered program's LM and fallbacks (see the module docstring)."""

    lm: str | None = None
    allow_stale: bool = False
    fallback: Module | None = None
    fallback_lm: str | None = None
    default: Mapping[str, Any] | None = None

    def strategies(self) -> tuple[str, ...]:
        """The configured fallbacks, in the order they are tried."""
        configured = {
            "stale_cache": self.allow_stale,
            "fallback_module": self.fallback is not None,
            "fallback_lm": self.fallback_lm is not None,
            "default": self.default is not None,
        }
        return tuple(name for name in FALLBACK_ORDER if configured[name])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the fallback program as its spec, or its type when it has none)."""
        fallback: Any = None
        if self.fallback is not None:
            try:
                fallback = program_spec(self.fallback).to_dict()
            except (TypeError, ProgramSpecError):
                fallback = {"module": type(self.fallback).__name__}
        return {
            "lm": self.lm,
            "allow_stale": self.allow_stale,
            "fallback": fallback,
            "fallback_lm": self.fallback_lm,
            "default": None if self.default is None else dict(self.default),
        }


def check_model_name(value: Any, field: str) -> str:
    """`value` if it is "vendor/model", of at most `MAX_MODEL_NAME` characters.

    Raises:
        ServiceInputError: naming `field`, when it is not.
    """
    problem = model_name_problem(value)
    if problem is not None:
        raise ServiceInputError(field=field, problem=problem)
    return str(value)


def parse_module_options(data: ModuleOptions | Mapping[str, Any] | None) -> ModuleOptions:
    """Validate options given as `ModuleOptions` or as JSON data.

    Raises:
        ServiceInputError: a field is unknown or malformed (named as `options.<field>`).
        ProgramSpecError: the fallback spec is malformed (its field named).
    """
    if data is None:
        return ModuleOptions()
    if isinstance(data, ModuleOptions):
        raw: Mapping[str, Any] = {
            "lm": data.lm,
            "allow_stale": data.allow_stale,
            "fallback": data.fallback,
            "fallback_lm": data.fallback_lm,
            "default": data.default,
        }
    elif isinstance(data, Mapping):
        raw = data
    else:
        raise ServiceInputError(field="options", problem="must be an object")
    unknown = sorted(set(raw) - _KEYS, key=str)
    if unknown:
        raise ServiceInputError(field=f"options.{unknown[0]}", problem="unknown option")
    allow_stale = raw.get("allow_stale", False)
    if not isinstance(allow_stale, bool):
        raise ServiceInputError(field="options.allow_stale", problem="must be true or false")
    return ModuleOptions(
        lm=_model(raw.get("lm"), "options.lm"),
        allow_stale=allow_stale,
        fallback=_fallback(raw.get("fallback")),
        fallback_lm=_model(raw.get("fallback_lm"), "options.fallback_lm"),
        default=_default(raw.get("default")),
    )


def _model(value: Any, field: str) -> str | None:
    return None if value is None else check_model_name(value, field)


def _fallback(value: Any) -> Module | None:
    if value is None:
        return None
    if isinstance(value, Module):
        return value.deepcopy()
    if isinstance(value, ProgramSpec | Mapping):
        return build_program(value)
    raise ServiceInputError(field="options.fallback", problem="must be a Module or a program spec")


def _default(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ServiceInputError(
            field="options.default", problem="must be an object of output values"
        )
    return dict(value)
