"""Signature fields: `InputField` / `OutputField` declarations and the bound `Field`.

A declaration (`InputField(desc=...)`) is what a user writes in a class-form
signature; the signature binds it to a name and a type, giving a `Field`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal, final

__all__ = ["Field", "FieldKind", "FieldSpec", "InputField", "OutputField", "infer_prefix"]

FieldKind = Literal["input", "output"]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class FieldSpec:
    """An unbound field declaration: its kind and the optional description and prefix."""

    kind: FieldKind
    desc: str | None = None
    prefix: str | None = None
    constraints: str | None = None


def InputField(
    *, desc: str | None = None, prefix: str | None = None, constraints: str | None = None
) -> Any:
    """Declare an input field of a class-form signature.

    Typed `Any` so that `question: str = InputField(desc=...)` type-checks.
    """
    return FieldSpec(kind="input", desc=desc, prefix=prefix, constraints=constraints)


def OutputField(
    *, desc: str | None = None, prefix: str | None = None, constraints: str | None = None
) -> Any:
    """Declare an output field of a class-form signature."""
    return FieldSpec(kind="output", desc=desc, prefix=prefix, constraints=constraints)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """A field bound into a signature.

    Attributes:
        name: the field's name, a Python identifier.
        kind: "input" or "output".
        annotation: the field's type (str when undeclared).
        desc: the description; DSPy's placeholder "${name}" when none was given.
        prefix: DSPy's prefix ("Question:"), kept for saved-program compatibility.
        constraints: free-text constraints shown after the description.
    """

    name: str
    kind: FieldKind
    annotation: Any = str
    desc: str = ""
    prefix: str = ""
    constraints: str | None = None

    @classmethod
    def bind(cls, name: str, spec: FieldSpec, annotation: Any = str) -> Field:
        """Bind a declaration to a name and type, filling DSPy's default desc and prefix."""
        return cls(
            name=name,
            kind=spec.kind,
            annotation=annotation,
            desc=spec.desc if spec.desc is not None else f"${{{name}}}",
            prefix=spec.prefix if spec.prefix is not None else infer_prefix(name) + ":",
            constraints=spec.constraints,
        )

    @property
    def has_description(self) -> bool:
        """False when the description is DSPy's "${name}" placeholder."""
        return self.desc != f"${{{self.name}}}"

    def evolve(self, **changes: Any) -> Field:
        """A copy with some attributes changed."""
        return replace(self, **changes)


_CAMEL_1 = re.compile(r"(.)([A-Z][a-z]+)")
_CAMEL_2 = re.compile(r"([a-z0-9])([A-Z])")
_ALPHA_DIGIT = re.compile(r"([a-zA-Z])(\d)")
_DIGIT_ALPHA = re.compile(r"(\d)([a-zA-Z])")


def infer_prefix(name: str) -> str:
    """DSPy's prefix for a field name: words split and title-cased ("someField" -> "Some Field")."""
    text = _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", name))
    text = _DIGIT_ALPHA.sub(r"\1_\2", _ALPHA_DIGIT.sub(r"\1_\2", text))
    words = [w if w.isupper() else w.capitalize() for w in text.split("_")]
    return " ".join(words)
