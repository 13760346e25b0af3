"""The shapes of the program routes: request bodies, answers, and the views that build them.

The request models validate what FastAPI can check before anything runs (types,
id pattern, positive timeouts); program specs and options are checked by the
services layer, which names the bad field. The answer models document the
OpenAPI schema; the routes build answers with the `*_view` functions and send
them as `JSONAnswer`s, skipping a second validation on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, final

from pydantic import BaseModel, ConfigDict, Field

from lmvisor.programs.lm import Usage
from lmvisor.programs.module import Module
from lmvisor.server.errors import InvalidInput
from lmvisor.services.module_execution import Execution
from lmvisor.services.module_table import ModuleInfo, spec_of
from lmvisor.services.program_id import PROGRAM_ID_PATTERN

__all__ = [
    "ADAPTER_NAME",
    "MODEL_PATTERN",
    "PredictorView",
    "ProgramList",
    "ProgramSpecBody",
    "ProgramView",
    "RegisterProgram",
    "RunRequest",
    "RunResult",
    "SignatureSides",
    "SwapRequest",
    "UsageView",
    "VersionChange",
    "invalid_input",
    "outputs_of",
    "program_view",
    "run_view",
]

ADAPTER_NAME = Literal["chat", "json", "xml", "two_step"]
"""The adapters a spec may name (`lmvisor.programs._spec_adapters.ADAPTER_NAMES`)."""
MODEL_PATTERN: Final = r"^[^/\s]+/\S+$"
_STRICT: Final = ConfigDict(extra="forbid")


@final
class SignatureSides(BaseModel):
    """A signature as its two sides: field name -> type, written as in the string form."""

    model_config = _STRICT

    inputs: dict[str, str] = Field(min_length=1)
    outputs: dict[str, str] = Field(min_length=1)


@final
class ProgramSpecBody(BaseModel):
    """A program spec (`lmvisor.programs.spec`): a built-in module over a typed signature.

    `state` restores demos and instructions: what `Module.save` (or DSPy 3.x's
    `save`) wrote, so a saved program is registered by giving its spec this state.
    """

    model_config = _STRICT

    module: Literal["Predict", "ChainOfThought"]
    signature: str | SignatureSides = Field(
        description='"question -> answer", or {"inputs": {...}, "outputs": {...}}',
        examples=["question -> answer"],
    )
    instructions: str | None = None
    descriptions: dict[str, str] | None = None
    config: dict[str, Any] | None = Field(
        default=None, description="Generation options: temperature, max_tokens, n, stop, ..."
    )
    adapter: ADAPTER_NAME | dict[str, Any] | None = Field(
        default=None,
        description='An adapter name, or {"name": ..., options} (two_step: "extraction_lm").',
    )
    lm: str | None = Field(default=None, pattern=MODEL_PATTERN, description='"vendor/model"')
    state: dict[str, Any] | None = Field(default=None, description="A saved program's state.")

    def to_spec(self) -> dict[str, Any]:
        """The JSON form `parse_program_spec` reads (fields left out stay out)."""
        return self.model_dump(mode="json", exclude_none=True)


@final
class RegisterProgram(BaseModel):
    """`POST /v1/programs`: an id, a program spec, and optional options.

    `program` is a program spec (`{"module": "ChainOfThought", "signature":
    "question -> answer", ...}`); a saved program (what `Module.save` or DSPy's
    `save` writes) goes in its `state`. `options` sets the program's LM and
    fallbacks (`lm`, `fallback_lm`, `fallback`, `default`, `allow_stale`).
    """

    model_config = _STRICT

    id: str = Field(pattern=PROGRAM_ID_PATTERN, description="The program's id.", examples=["qa"])
    program: ProgramSpecBody
    options: dict[str, Any] | None = Field(default=None, description="LM and fallbacks.")


@final
class SwapRequest(BaseModel):
    """`PUT /v1/programs/{id}/version`: a whole new `program` spec, or new `state` only."""

    model_config = _STRICT

    program: ProgramSpecBody | None = Field(default=None, description="A new program spec.")
    state: dict[str, Any] | None = Field(
        default=None, description="New parameters (demos, instructions) for the current program."
    )


@final
class RunRequest(BaseModel):
    """`POST /v1/programs/{id}/run` and `/stream`: the input fields, and an optional deadline."""

    model_config = _STRICT

    inputs: dict[str, Any] = Field(description="The program's input fields by name.")
    timeout: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Seconds for the whole run (with X-Request-Timeout, the sooner wins).",
    )


@final
class PredictorView(BaseModel):
    """One predictor of a program."""

    name: str
    signature: str
    instructions: str
    demos: int
    config: dict[str, Any]


@final
class ProgramView(BaseModel):
    """A registered program: its current version, the versions kept, its predictors."""

    module_id: str
    module_type: str
    version: int
    versions: list[int]
    lm: str
    signature: str | None
    demos: int
    predictors: list[PredictorView]
    options: dict[str, Any]
    spec: dict[str, Any] | None = None


@final
class ProgramList(BaseModel):
    """Every registered program, by id."""

    programs: list[ProgramView]
    count: int


@final
class VersionChange(BaseModel):
    """A hot-swap or rollback: the version now current and the one it replaced."""

    module_id: str
    version: int
    previous: int


@final
class UsageView(BaseModel):
    """Tokens of every LM call of a run."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int


@final
class RunResult(BaseModel):
    """One run: its outputs, usage, cost, whether the cache answered, and its correlation id."""

    module_id: str
    version: int
    outputs: dict[str, Any]
    usage: UsageView | None
    cost_usd: float | None
    cached: bool
    stale: bool
    strategy: str
    lm_calls: int
    duration_ms: float
    correlation_id: str | None
    failures: list[list[str]]


def program_view(info: ModuleInfo, program: Module | None = None) -> dict[str, Any]:
    """`info` as the API shows it; with `program`, its spec (demos included) when it has one."""
    view = info.to_dict()
    if program is not None:
        spec = spec_of(program, info.lm)
        view["spec"] = None if spec is None else spec.to_dict()
    return view


def outputs_of(prediction: Any) -> dict[str, Any]:
    """A program's result as output fields (a value that is no mapping is `output`)."""
    to_dict = getattr(prediction, "to_dict", None)
    if callable(to_dict):
        values = to_dict()
        if isinstance(values, Mapping):
            return {str(k): v for k, v in values.items()}
    if isinstance(prediction, Mapping):
        return {str(k): v for k, v in prediction.items()}
    return {"output": prediction}


def run_view(execution: Execution) -> dict[str, Any]:
    """One execution as `RunResult` data."""
    usage = getattr(execution.prediction, "usage", None)
    return {
        "module_id": execution.module_id,
        "version": execution.version,
        "outputs": outputs_of(execution.prediction),
        "usage": usage.to_dict() if isinstance(usage, Usage) else None,
        "cost_usd": execution.cost_usd,
        "cached": execution.cached,
        "stale": execution.stale,
        "strategy": execution.strategy,
        "lm_calls": execution.lm_calls,
        "duration_ms": round(execution.duration_ms, 3),
        "correlation_id": execution.correlation_id,
        "failures": [list(failure) for failure in execution.failures],
    }


def invalid_input(exc: Exception) -> InvalidInput:
    """A program's plain ValueError/TypeError about its inputs, as a typed 422."""
    text = str(exc) or type(exc).__name__
    field = "inputs"
    # Predict names a missing input as "missing input 'name' ...": point at it.
    if text.startswith("missing input '"):
        field = "inputs." + text[len("missing input '") :].split("'", 1)[0]
    return InvalidInput(field=field, problem=text)
