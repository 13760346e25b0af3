"""Reading predictor state saved by DSPy 3.x (`program.save("x.json")`) or by lmvisor.

DSPy writes, per predictor: `demos`, `signature` (`instructions` and each field's
`prefix`/`description`), `traces`, `train` and an `lm` block: the model the program was
saved with and its generation settings (temperature, max_tokens...), plus connection
settings (api_base...). lmvisor takes its LM from the settings; the block's generation
settings (`GENERATION_OPTIONS`) are restored only when the caller opts in
(`lm_settings=True`), and connection settings and keys never are. Older DSPy versions
stored `extended_signature` for ChainOfThought; it is read when present.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, final

from lmvisor.programs.errors import StateError
from lmvisor.programs.generation_options import GENERATION_OPTIONS, setting_problem

__all__ = [
    "MAX_STATE_DEPTH",
    "PREDICTOR_STATE_KEYS",
    "PredictorState",
    "check_state_depth",
    "read_predictor_state",
]

MAX_STATE_DEPTH = 100
"""Levels a predictor's state may nest (a demo's values included): deeper state loaded, then
failed with a RecursionError wherever it was next copied or dumped."""
PREDICTOR_STATE_KEYS: Final = frozenset(
    {"traces", "train", "demos", "signature", "extended_signature", "lm", "fields"}
)
"""The keys of one predictor's saved state, DSPy 3.x's and lmvisor's (`extended_signature`
is what older DSPy files call the signature; `fields`, DSPy 3.4's per-field decision
settings, is read past)."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class PredictorState:
    """One predictor's saved state, checked.

    A part the state does not name is None (`has_lm` False): the predictor keeps its own,
    so a partial state (new instructions only) changes only what it names. DSPy 3.4.1's
    `load_state` keeps a missing `demos` too but requires `signature` and `lm`; lmvisor's
    taking a state without them is its own extension.

    Attributes:
        demos: the demos, as plain dicts; None when the state has no `demos`.
        signature: the signature block (instructions and field texts), if saved.
        model: the model named in the `lm` block, if any.
        lm_params: the block's generation settings (empty unless asked for).
        has_lm: the state has an `lm` entry (null included).
    """

    demos: list[dict[str, Any]] | None
    signature: Mapping[str, Any] | None
    model: str | None = None
    lm_params: dict[str, Any] = field(default_factory=dict)
    has_lm: bool = True


def read_predictor_state(
    state: Mapping[str, Any], *, where: str = "predictor", lm_settings: bool = False
) -> PredictorState:
    """Validate one predictor's saved state.

    Args:
        state: the predictor's entry of a saved program.
        where: its name, for error messages and logs.
        lm_settings: restore the `lm` block's generation settings.

    Raises:
        StateError: demos are not a list of objects, the signature or lm block is malformed,
            or the state nests past 100 levels.
    """
    if not isinstance(state, Mapping):
        raise StateError(where=where, problem="predictor state must be a JSON object")
    check_state_depth(state, where)
    demos = state.get("demos", [])
    if not isinstance(demos, list) or not all(isinstance(d, Mapping) for d in demos):
        raise StateError(where=f"{where}.demos", problem="must be a list of JSON objects")
    signature = state.get("extended_signature") or state.get("signature")
    if signature is not None:
        _check_signature_state(signature, f"{where}.signature")
    model, params = _read_lm(state.get("lm"), where, lm_settings)
    return PredictorState(
        demos=[dict(d) for d in demos] if "demos" in state else None,
        signature=signature,
        model=model,
        lm_params=params,
        has_lm="lm" in state,
    )


def check_state_depth(state: Any, where: str) -> None:
    """Refuse saved state nested past 100 levels (walked without recursion): deeper, dumping
    or copying it again would recurse past the interpreter's limit.

    Raises:
        StateError: it is, naming `where`.
    """
    stack: list[tuple[Any, int]] = [(state, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_STATE_DEPTH:
            raise StateError(where=where, problem=f"nested deeper than {MAX_STATE_DEPTH} levels")
        if isinstance(node, Mapping):
            stack.extend((item, depth + 1) for item in node.values())
        elif isinstance(node, list | tuple):
            stack.extend((item, depth + 1) for item in node)


def _read_lm(lm: Any, where: str, restore: bool) -> tuple[str | None, dict[str, Any]]:
    if lm is None:
        return None, {}
    if not isinstance(lm, Mapping):
        raise StateError(where=f"{where}.lm", problem="must be a JSON object or null")
    model = lm.get("model")
    model = model if isinstance(model, str) else None
    from lmvisor.runtime.observe.logs import get_logger

    log = get_logger("lmvisor.programs")
    if not restore:
        log.info(
            "programs.load.lm_ignored",
            predictor=where,
            saved_model=model,
            reason="the LM comes from the settings; load(..., lm_settings=True) restores "
            "the saved generation settings",
        )
        return model, {}
    params = {k: v for k, v in lm.items() if k in GENERATION_OPTIONS and v is not None}
    for key, value in params.items():
        problem = setting_problem(key, value)
        if problem is not None:
            raise StateError(where=f"{where}.lm.{key}", problem=problem)
    log.info(
        "programs.load.lm_restored",
        predictor=where,
        saved_model=model,
        restored=sorted(params),
        ignored=sorted(k for k in lm if k not in GENERATION_OPTIONS and k != "model"),
    )
    return model, params


def _check_signature_state(signature: Any, where: str) -> None:
    if not isinstance(signature, Mapping):
        raise StateError(where=where, problem="must be a JSON object")
    instructions = signature.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise StateError(where=f"{where}.instructions", problem="must be a string")
    fields = signature.get("fields", [])
    if not isinstance(fields, list):
        raise StateError(where=f"{where}.fields", problem="must be a list")
    for i, item in enumerate(fields):
        if not isinstance(item, Mapping):
            raise StateError(where=f"{where}.fields[{i}]", problem="must be a JSON object")
        for key in ("prefix", "description"):
            if key in item and not isinstance(item[key], str):
                raise StateError(where=f"{where}.fields[{i}].{key}", problem="must be a string")
