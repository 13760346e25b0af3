"""The programs layer's errors: bad signatures, unparseable completions, bad state.

    LmvisorError
    └── ProgramError                a program could not be built, run or restored
        ├── SignatureError          a signature string or declaration is malformed
        ├── AdapterParseError       an LM completion does not fit the signature
        │   └── ConstraintError     a parsed output breaks its field's bound (ge, max_length...)
        ├── LMNotConfigured         no LM in the settings nor on the predictor
        ├── MediaError              an image, audio or file value is unusable
        └── StateError              a saved program cannot be loaded

`SignatureError`, `MediaError` and `StateError` are also `ValueError`s, so code that
treats any bad value as a `ValueError` keeps working.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from lmvisor._redaction import clipped
from lmvisor.runtime.errors import LmvisorError

__all__ = [
    "AdapterParseError",
    "ConstraintError",
    "LMNotConfigured",
    "MediaError",
    "ProgramError",
    "SignatureError",
    "StateError",
]

_SHOWN: Final = 200
"""The most characters of a signature (or a piece of it) an error message shows."""


class ProgramError(LmvisorError):
    """A program could not be built, run or restored."""

    code = "program_error"


class SignatureError(ProgramError, ValueError):
    """The caller's signature is malformed; `part` is the offending piece of it."""

    code = "signature_error"

    def __init__(self, *, signature: str, part: str, problem: str) -> None:
        # The attributes keep the text whole; the message and context show at most
        # `_SHOWN` characters of each piece, so a hostile 100 kB signature is not echoed thrice.
        super().__init__(
            f"invalid signature {_shown(signature)}: {_clip(problem)} (at {_shown(part)})",
            context={"signature": _clip(signature), "part": _clip(part), "problem": _clip(problem)},
        )
        self.signature = signature
        self.part = part
        self.problem = problem


class AdapterParseError(ProgramError):
    """The LM's completion does not fit the signature; `completion` holds it verbatim.

    Retryable: another sample (or another adapter) may well parse.
    """

    code = "adapter_parse_error"
    retryable = True

    def __init__(
        self,
        *,
        adapter: str,
        signature: str,
        completion: str,
        problem: str,
        parsed: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            f"{adapter} could not parse the completion for {signature}: {problem}",
            context={"adapter": adapter, "signature": signature, "problem": problem},
        )
        self.adapter = adapter
        self.signature = signature
        self.completion = completion
        self.problem = problem
        self.parsed: dict[str, Any] = dict(parsed or {})


class ConstraintError(AdapterParseError):
    """An output parsed but breaks its field's bound; another sample may keep it."""

    code = "constraint_error"

    def __init__(
        self,
        *,
        adapter: str,
        signature: str,
        completion: str,
        field: str,
        problem: str,
        parsed: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            adapter=adapter,
            signature=signature,
            completion=completion,
            problem=f"field {field!r} {problem}",
            parsed=parsed,
        )
        self.field = field


class MediaError(ProgramError, ValueError):
    """The caller gave an image, audio or file value that cannot be sent (kind, why)."""

    code = "media_error"

    def __init__(self, *, kind: str, problem: str) -> None:
        super().__init__(f"invalid {kind}: {problem}", context={"kind": kind})
        self.kind = kind
        self.problem = problem


class LMNotConfigured(ProgramError):
    """No LM was given: call `configure(lm=...)`, use `context(lm=...)` or set `predictor.lm`."""

    code = "lm_not_configured"

    def __init__(self, *, module: str) -> None:
        super().__init__(
            f"no LM configured for {module}: call configure(lm=...) or use context(lm=...)",
            context={"module": module},
        )


class StateError(ProgramError, ValueError):
    """A saved program (file or state dict) cannot be loaded; `where` names the bad part."""

    code = "state_error"

    def __init__(self, *, where: str, problem: str) -> None:
        super().__init__(
            f"cannot load program state at {where}: {problem}", context={"where": where}
        )
        self.where = where
        self.problem = problem


def _clip(text: str) -> str:
    """`text`, or its first `_SHOWN` characters and how many more there were."""
    return clipped(text, _SHOWN)


def _shown(text: str) -> str:
    """`text` quoted, clipped as `_clip` clips it (the note outside the quotes)."""
    if len(text) <= _SHOWN:
        return repr(text)
    return repr(text[:_SHOWN]) + clipped(text, _SHOWN)[_SHOWN:]
