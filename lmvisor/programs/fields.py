"""Signature fields: `InputField` / `OutputField` declarations and the bound `Field`.

A declaration (`InputField(desc=...)`) is what a user writes in a class-form
signature; the signature binds it to a name and a type, giving a `Field`.

Bounds (`ge=0, le=10, min_length=1`, as DSPy's fields take them) are shown to the LM in
a `Constraints:` line as DSPy renders it, and, unlike DSPy, checked when an output is
parsed (`check_bounds`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, final

__all__ = [
    "BOUND_NAMES",
    "Field",
    "FieldKind",
    "FieldSpec",
    "InputField",
    "OutputField",
    "check_bounds",
    "infer_prefix",
]

FieldKind = Literal["input", "output"]

BOUND_NAMES: Mapping[str, str] = {
    "gt": "greater than: ",
    "ge": "greater than or equal to: ",
    "lt": "less than: ",
    "le": "less than or equal to: ",
    "min_length": "minimum length: ",
    "max_length": "maximum length: ",
    "multiple_of": "a multiple of the given number: ",
    "allow_inf_nan": "allow 'inf', '-inf', 'nan' values: ",
}
"""Each bound a field takes, with the words DSPy puts before its value in the prompt."""

Bounds = tuple[tuple[str, Any], ...]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class FieldSpec:
    """An unbound field declaration: its kind, description, prefix and bounds."""

    kind: FieldKind
    desc: str | None = None
    prefix: str | None = None
    constraints: str | None = None
    bounds: Bounds = ()


def _declare(kind: FieldKind, options: dict[str, Any]) -> FieldSpec:
    desc = options.pop("desc", None)
    description = options.pop("description", None)
    prefix = options.pop("prefix", None)
    constraints = options.pop("constraints", None)
    unknown = [k for k in options if k not in BOUND_NAMES]
    if unknown:
        raise TypeError(f"unknown field option {unknown[0]!r}")
    bounds = tuple((k, v) for k, v in options.items() if v is not None)
    return FieldSpec(
        kind=kind,
        desc=desc if desc is not None else description,
        prefix=prefix,
        constraints=constraints,
        bounds=bounds,
    )


def InputField(**options: Any) -> Any:
    """Declare an input field of a class-form signature.

    Options: `desc` (or `description`), `prefix`, `constraints` (free text) and the bounds
    `gt`, `ge`, `lt`, `le`, `min_length`, `max_length`, `multiple_of`, `allow_inf_nan`.
    Typed `Any` so that `question: str = InputField(desc=...)` type-checks.

    Raises:
        TypeError: an option is not one of those.
    """
    return _declare("input", options)


def OutputField(**options: Any) -> Any:
    """Declare an output field of a class-form signature (options as `InputField`).

    Raises:
        TypeError: an option is not one of those.
    """
    return _declare("output", options)


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
        constraints: the text of the `Constraints:` line (the bounds, then free text).
        bounds: (name, value) pairs an output must satisfy ("ge", 0), in declaration order.
    """

    name: str
    kind: FieldKind
    annotation: Any = str
    desc: str = ""
    prefix: str = ""
    constraints: str | None = None
    bounds: Bounds = ()

    @classmethod
    def bind(cls, name: str, spec: FieldSpec, annotation: Any = str, bounds: Bounds = ()) -> Field:
        """Bind a declaration to a name and type, filling DSPy's default desc and prefix.

        `bounds` are extra ones carried by the type (`Annotated[int, Ge(0)]`): checked,
        but not shown in the prompt, as DSPy shows only the field's own.
        """
        shown = ", ".join(f"{BOUND_NAMES[k]}{v}" for k, v in spec.bounds)
        text = ", ".join(t for t in (shown, spec.constraints) if t) or None
        return cls(
            name=name,
            kind=spec.kind,
            annotation=annotation,
            desc=spec.desc if spec.desc is not None else f"${{{name}}}",
            prefix=spec.prefix if spec.prefix is not None else infer_prefix(name) + ":",
            constraints=text,
            bounds=spec.bounds + bounds,
        )

    @property
    def has_description(self) -> bool:
        """False when the description is DSPy's "${name}" placeholder."""
        return self.desc != f"${{{self.name}}}"

    def evolve(self, **changes: Any) -> Field:
        """A copy with some attributes changed."""
        return replace(self, **changes)


def check_bounds(field: Field, value: Any) -> str | None:
    """The first bound `value` breaks, as a sentence naming the bound; None if it keeps all."""
    for name, bound in field.bounds:
        problem = _broken(name, bound, value)
        if problem is not None:
            return f"must be {problem}, got {value!r}"
    return None


def _broken(name: str, bound: Any, value: Any) -> str | None:
    if name in ("min_length", "max_length"):
        try:
            size = len(value)
        except TypeError:
            return None
        if name == "min_length" and size < bound:
            return f"at least {bound} long (min_length)"
        if name == "max_length" and size > bound:
            return f"at most {bound} long (max_length)"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if name == "allow_inf_nan":
        return None if bound or math.isfinite(value) else "finite (allow_inf_nan=False)"
    if name == "gt" and not value > bound:
        return f"greater than {bound} (gt)"
    if name == "ge" and not value >= bound:
        return f"greater than or equal to {bound} (ge)"
    if name == "lt" and not value < bound:
        return f"less than {bound} (lt)"
    if name == "le" and not value <= bound:
        return f"less than or equal to {bound} (le)"
    if name == "multiple_of" and not _is_multiple(value, bound):
        return f"a multiple of {bound} (multiple_of)"
    return None


def _is_multiple(value: float, step: float) -> bool:
    if step == 0:
        return True
    ratio = value / step
    return math.isclose(ratio, round(ratio), rel_tol=0.0, abs_tol=1e-9)


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
