"""Optimization job specs: what `submit` accepts, validated, and what it builds.

    {
      "optimizer": "MIPROv2",                 LabeledFewShot | BootstrapFewShot |
                                              BootstrapFewShotWithRandomSearch | COPRO | MIPROv2
      "params": {"auto": "light"},            constructor and compile settings of the optimizer
      "program": "qa" | {program spec},       a registered program id, or a spec to build
      "trainset": [{...}, ...] | "train.jsonl",
      "valset": [...] | "val.jsonl" | null,
      "input_keys": ["question"],             which example fields are inputs
      "metric": "package.module:function",
      "deploy": false                         hot-swap the result into the program id
    }

`parse_job_spec` checks the shape (every problem an `OptimizationSpecError` naming the
field); `load_examples` reads inline rows or a JSONL file, and `read_examples` does it on a
worker thread (a JSONL file may hold up to 1 GiB: parsed on the event loop it would stall
every actor); `build_optimizer` makes the optimizer, with defaults from `optimization.*`
config for settings the job leaves out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final, final

import anyio.to_thread

from lmvisor._files import MAX_DATASET_BYTES, read_regular_file
from lmvisor.config.schema import OptimizationConfig
from lmvisor.optimizers import (
    COPRO,
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    LabeledFewShot,
    Metric,
    MIPROv2,
    Teleprompter,
)
from lmvisor.programs.example import Example
from lmvisor.programs.spec import ProgramSpecError, parse_program_spec
from lmvisor.services.errors import OptimizationSpecError

__all__ = [
    "OPTIMIZERS",
    "JobSpec",
    "build_optimizer",
    "load_examples",
    "parse_job_spec",
    "read_examples",
]

_CONSTRUCT: Final[Mapping[str, frozenset[str]]] = {
    "LabeledFewShot": frozenset({"k"}),
    "BootstrapFewShot": frozenset(
        {
            "max_bootstrapped_demos",
            "max_labeled_demos",
            "max_rounds",
            "metric_threshold",
            "max_errors",
        }
    ),
    "BootstrapFewShotWithRandomSearch": frozenset(
        {
            "max_bootstrapped_demos",
            "max_labeled_demos",
            "max_rounds",
            "num_candidate_programs",
            "max_errors",
            "stop_at_score",
            "metric_threshold",
        }
    ),
    "COPRO": frozenset({"breadth", "depth", "init_temperature"}),
    "MIPROv2": frozenset(
        {
            "max_bootstrapped_demos",
            "max_labeled_demos",
            "auto",
            "num_candidates",
            "max_errors",
            "seed",
            "init_temperature",
            "metric_threshold",
        }
    ),
}
_COMPILE: Final[Mapping[str, frozenset[str]]] = {
    "LabeledFewShot": frozenset({"sample"}),
    "BootstrapFewShot": frozenset(),
    "BootstrapFewShotWithRandomSearch": frozenset({"labeled_sample"}),
    "COPRO": frozenset(),
    "MIPROv2": frozenset(
        {
            "num_trials",
            "minibatch",
            "minibatch_size",
            "minibatch_full_eval_steps",
            "program_aware_proposer",
            "data_aware_proposer",
            "view_data_batch_size",
            "tip_aware_proposer",
            "fewshot_aware_proposer",
        }
    ),
}
OPTIMIZERS: Final[tuple[str, ...]] = tuple(_CONSTRUCT)
"""The optimizers a job may name."""

# The kind of each setting: a count unless named here. Checked at submit, so a job
# the optimizer would trip on (NaN, "3", 10**30 candidates) is refused naming the setting.
_FLAGS: Final = frozenset(
    {
        "sample",
        "labeled_sample",
        "minibatch",
        "program_aware_proposer",
        "data_aware_proposer",
        "tip_aware_proposer",
        "fewshot_aware_proposer",
    }
)
_REALS: Final = frozenset({"metric_threshold", "stop_at_score", "init_temperature"})
_NAMES: Final = frozenset({"auto"})
# Compile settings MIPROv2 checks only when it compiles (in the worker): checked here too.
_POSITIVE: Final = frozenset(
    {"num_trials", "minibatch_size", "minibatch_full_eval_steps", "view_data_batch_size"}
)
_MAX_COUNT: Final = 1_000_000
_MAX_SEED: Final = 2**63 - 1

_KEYS: Final = frozenset(
    {"optimizer", "params", "program", "trainset", "valset", "input_keys", "metric", "deploy"}
)
_MAX_ROWS: Final = 1_000_000


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """A validated job (see the module docstring); `to_dict()` is what the store keeps."""

    optimizer: str
    params: Mapping[str, Any] = field(default_factory=dict)
    program: str | Mapping[str, Any]
    trainset: str | Sequence[Mapping[str, Any]]
    valset: str | Sequence[Mapping[str, Any]] | None = None
    input_keys: tuple[str, ...]
    metric: str
    deploy: bool = False

    @property
    def program_id(self) -> str | None:
        """The registered program's id, when the job names one."""
        return self.program if isinstance(self.program, str) else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form `parse_job_spec` reads back."""
        return {
            "optimizer": self.optimizer,
            "params": dict(self.params),
            "program": self.program if isinstance(self.program, str) else dict(self.program),
            "trainset": self.trainset if isinstance(self.trainset, str) else list(self.trainset),
            "valset": (
                self.valset
                if self.valset is None or isinstance(self.valset, str)
                else list(self.valset)
            ),
            "input_keys": list(self.input_keys),
            "metric": self.metric,
            "deploy": self.deploy,
        }  # fmt: skip


def parse_job_spec(data: Any, *, ended: bool = False) -> JobSpec:
    """Validate JSON-ready data as a `JobSpec`.

    Args:
        data: the spec.
        ended: the spec of an ended job as the store hands it out (`jobs(ended_rows=False)`):
            an inline dataset may be an empty list, its rows left in the file.

    Raises:
        OptimizationSpecError: naming the first bad field by its dotted path.
    """
    if isinstance(data, JobSpec):
        return data
    if not isinstance(data, Mapping):
        raise OptimizationSpecError(field="<root>", problem="a job must be a JSON object")
    unknown = sorted(set(data) - _KEYS, key=str)
    if unknown:
        raise OptimizationSpecError(field=str(unknown[0]), problem="unknown key")
    optimizer = data.get("optimizer")
    if not isinstance(optimizer, str) or optimizer not in _CONSTRUCT:
        raise OptimizationSpecError(
            field="optimizer", problem=f"must be one of {', '.join(OPTIMIZERS)}"
        )
    return JobSpec(
        optimizer=optimizer,
        params=_params(optimizer, data.get("params", {})),
        program=_program(data.get("program")),
        trainset=_dataset(data.get("trainset"), "trainset", required=True, ended=ended) or [],
        valset=_dataset(data.get("valset"), "valset", required=False, ended=ended),
        input_keys=_input_keys(data.get("input_keys")),
        metric=_metric(data.get("metric")),
        deploy=_deploy(data.get("deploy", False), data.get("program")),
    )


def _params(optimizer: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise OptimizationSpecError(field="params", problem="must be an object")
    allowed = _CONSTRUCT[optimizer] | _COMPILE[optimizer]
    for key, item in value.items():
        if key not in allowed:
            raise OptimizationSpecError(
                field=f"params.{key}",
                problem=f"not a setting of {optimizer} (allowed: {', '.join(sorted(allowed))})",
            )
        if not isinstance(item, str | int | float | bool | type(None)):
            raise OptimizationSpecError(field=f"params.{key}", problem="must be a JSON scalar")
        problem = None if item is None else _param_problem(key, item)
        if problem is not None:
            raise OptimizationSpecError(field=f"params.{key}", problem=problem)
    return dict(value)


def _param_problem(key: str, item: str | int | float | bool) -> str | None:
    """What is wrong with a setting's value for its kind (None: nothing)."""
    if key in _FLAGS:
        return None if isinstance(item, bool) else "must be true or false"
    if key in _NAMES:
        return None if isinstance(item, str) else "must be a string"
    if isinstance(item, bool) or not isinstance(item, int | float):
        return "must be a number" if key in _REALS else "must be a whole number"
    if key in _REALS:
        return None if math.isfinite(item) else "must be a finite number"
    if not isinstance(item, int):
        return "must be a whole number"
    if key in _POSITIVE and item < 1:
        return "must be at least 1"
    limit = _MAX_SEED if key == "seed" else _MAX_COUNT
    return None if abs(item) <= limit else f"must be at most {limit}"


def _program(value: Any) -> str | dict[str, Any]:
    if isinstance(value, str):
        if not value.strip():
            raise OptimizationSpecError(field="program", problem="must not be empty")
        return value
    try:
        return parse_program_spec(value).to_dict()
    except ProgramSpecError as exc:
        raise OptimizationSpecError(field=f"program.{exc.field}", problem=exc.problem) from None


def _dataset(
    value: Any, name: str, *, required: bool, ended: bool
) -> str | list[dict[str, Any]] | None:
    if value is None and not required:
        return None
    if ended and value == []:
        return []
    if isinstance(value, str) and value.strip():
        return value
    if not isinstance(value, list) or not value:
        raise OptimizationSpecError(
            field=name, problem="must be a non-empty list of objects or a JSONL file path"
        )
    for index, row in enumerate(value):
        if not isinstance(row, Mapping):
            raise OptimizationSpecError(field=f"{name}[{index}]", problem="must be an object")
    return [dict(row) for row in value]


def _input_keys(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(k, str) for k in value):
        raise OptimizationSpecError(field="input_keys", problem="must be a non-empty list of names")
    return tuple(value)


def _metric(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OptimizationSpecError(field="metric", problem="must be an import path 'pkg.mod:fn'")
    return value


def _deploy(value: Any, program: Any) -> bool:
    if not isinstance(value, bool):
        raise OptimizationSpecError(field="deploy", problem="must be true or false")
    if value and not isinstance(program, str):
        raise OptimizationSpecError(
            field="deploy", problem="needs the job's program to be a registered program id"
        )
    return value


def load_examples(
    value: str | Sequence[Mapping[str, Any]], input_keys: Sequence[str], *, field: str
) -> list[Example]:
    """The examples of a dataset: inline rows or a JSONL file, inputs marked.

    Raises:
        OptimizationSpecError: the file cannot be read, a line is not a JSON object, or a
            row lacks an input key.
    """
    rows = _read_jsonl(Path(value), field) if isinstance(value, str) else list(value)
    examples = []
    for index, row in enumerate(rows):
        missing = [k for k in input_keys if k not in row]
        if missing:
            raise OptimizationSpecError(
                field=f"{field}[{index}]", problem=f"has no input field {missing[0]!r}"
            )
        examples.append(Example(row).with_inputs(*input_keys))
    return examples


async def read_examples(
    value: str | Sequence[Mapping[str, Any]], input_keys: Sequence[str], *, field: str
) -> list[Example]:
    """`load_examples` on a worker thread, so the event loop (every actor on it) runs on
    while a large dataset is read and parsed.

    A cancelled caller waits for the thread's bounded read to end (so the reads running
    at once stay bounded by their callers), then is cancelled.

    Raises:
        OptimizationSpecError: as `load_examples`.
    """
    work = partial(load_examples, value, input_keys, field=field)
    return await anyio.to_thread.run_sync(work)


def _read_jsonl(path: Path, field: str) -> list[Mapping[str, Any]]:
    try:
        text = read_regular_file(path, MAX_DATASET_BYTES).decode("utf-8")
    except OSError as exc:
        raise OptimizationSpecError(
            field=field, problem=f"cannot read {str(path)!r}: {exc}"
        ) from None
    except UnicodeDecodeError as exc:
        raise OptimizationSpecError(
            field=field, problem=f"{str(path)!r} is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    except ValueError as exc:  # a device, a FIFO, a directory, or too large
        raise OptimizationSpecError(field=field, problem=f"{str(path)!r}: {exc}") from None
    rows: list[Mapping[str, Any]] = []
    # JSON Lines end at "\n" only: `splitlines` would also cut at U+2028 and the other
    # breaks a JSON string may hold unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise OptimizationSpecError(
                field=f"{field}:{number}", problem=f"not valid JSON: {exc}"
            ) from None
        except RecursionError:
            raise OptimizationSpecError(
                field=f"{field}:{number}", problem="not valid JSON: nested too deeply"
            ) from None
        if not isinstance(row, Mapping):
            raise OptimizationSpecError(field=f"{field}:{number}", problem="must be a JSON object")
        rows.append(row)
        if len(rows) > _MAX_ROWS:
            raise OptimizationSpecError(field=field, problem=f"more than {_MAX_ROWS} rows")
    if not rows:
        raise OptimizationSpecError(field=field, problem=f"{str(path)!r} holds no examples")
    return rows


def build_optimizer(
    spec: JobSpec, metric: Metric, config: OptimizationConfig
) -> tuple[Teleprompter, dict[str, Any]]:
    """The optimizer a job names and its compile settings; config fills what the job omits.

    Raises:
        OptimizationSpecError: a setting has a bad value (the optimizer refused it).
    """
    construct = {k: v for k, v in spec.params.items() if k in _CONSTRUCT[spec.optimizer]}
    compile_args = {k: v for k, v in spec.params.items() if k in _COMPILE[spec.optimizer]}
    try:
        return _construct(spec.optimizer, metric, construct, config), compile_args
    except (TypeError, ValueError) as exc:
        raise OptimizationSpecError(field="params", problem=str(exc)) from None


def _construct(
    name: str, metric: Metric, params: dict[str, Any], config: OptimizationConfig
) -> Teleprompter:
    bootstrap = {
        "max_bootstrapped_demos": config.bootstrap.max_bootstrapped_demos,
        "max_labeled_demos": config.bootstrap.max_labeled_demos,
    }
    if name == "LabeledFewShot":
        return LabeledFewShot(**params)
    if name == "BootstrapFewShot":
        return BootstrapFewShot(metric, **{**bootstrap, **params})
    if name == "BootstrapFewShotWithRandomSearch":
        return BootstrapFewShotWithRandomSearch(metric, **{**bootstrap, **params})
    if name == "COPRO":
        copro = {
            "breadth": config.copro.breadth,
            "depth": config.copro.depth,
            "init_temperature": config.copro.temperature,
        }
        return COPRO(metric=metric, **{**copro, **params})
    return MIPROv2(metric, **params)
