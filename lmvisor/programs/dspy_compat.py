"""Reading predictor state saved by DSPy 3.x (`program.save("x.json")`).

DSPy writes, per predictor: `demos`, `signature` (`instructions` and each field's
`prefix`/`description`), `traces`, `train` and an `lm` block. The `lm` block names the
model the program was saved with; lmvisor takes its LM from the settings, so the block is
ignored (with a log line). Older DSPy versions stored `extended_signature` for
ChainOfThought; it is read when present.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lmvisor.programs.errors import StateError

__all__ = ["read_predictor_state"]


def read_predictor_state(
    state: Mapping[str, Any], *, where: str = "predictor"
) -> tuple[list[dict[str, Any]], Mapping[str, Any] | None]:
    """Validate one predictor's saved state; return its demos and its signature state.

    Raises:
        StateError: demos are not a list of objects, or the signature block is malformed.
    """
    if not isinstance(state, Mapping):
        raise StateError(where=where, problem="predictor state must be a JSON object")
    demos = state.get("demos", [])
    if not isinstance(demos, list) or not all(isinstance(d, Mapping) for d in demos):
        raise StateError(where=f"{where}.demos", problem="must be a list of JSON objects")
    signature = state.get("extended_signature") or state.get("signature")
    if signature is not None:
        _check_signature_state(signature, f"{where}.signature")
    lm = state.get("lm")
    if lm is not None:
        model = lm.get("model") if isinstance(lm, Mapping) else None
        from lmvisor.runtime.observe.logs import get_logger

        get_logger("lmvisor.programs").info(
            "programs.load.lm_ignored",
            predictor=where,
            saved_model=model if isinstance(model, str) else None,
            reason="the LM comes from the settings, not from saved state",
        )
    return [dict(d) for d in demos], signature


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
