"""Signatures: the typed inputs and outputs of a task, plus its instructions.

Two forms, as in DSPy:

    class QA(Signature):
        '''Answer the question with a short factoid.'''
        context: list[str] = InputField(desc="facts that may help")
        question: str = InputField()
        answer: str = OutputField(desc="often between 1 and 5 words")

    Signature("context: list[str], question -> answer: str, confidence: float")

A signature is a class; every operation (`with_instructions`, `append`, `delete`...)
returns a new class and never changes the original. Two signatures are equal when
their instructions and fields are.
"""

from __future__ import annotations

import inspect
import keyword
import sys
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from lmvisor.programs._types import TypeExprError, annotation_name, parse_type_expr
from lmvisor.programs.errors import SignatureError
from lmvisor.programs.fields import BOUND_NAMES, Field, FieldSpec, InputField, OutputField

__all__ = [
    "Signature",
    "SignatureMeta",
    "compose_signatures",
    "ensure_signature",
    "make_signature",
]


def _default_instructions(fields: Iterable[Field]) -> str:
    fields = list(fields)
    inputs = ", ".join(f"`{f.name}`" for f in fields if f.kind == "input")
    outputs = ", ".join(f"`{f.name}`" for f in fields if f.kind == "output")
    return f"Given the fields {inputs}, produce the fields {outputs}."


class SignatureMeta(type):
    """The metaclass: collects fields at class creation and provides the operations."""

    _fields: dict[str, Field]
    _inputs: dict[str, Field]
    _outputs: dict[str, Field]
    _instructions: str
    _cache: dict[Any, Any]

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> SignatureMeta:
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        if not any(isinstance(base, SignatureMeta) for base in bases):
            # The root class is built before the helpers below exist.
            cls._fields, cls._inputs, cls._outputs, cls._cache = {}, {}, {}, {}
            cls._instructions = ""
            return cls
        inherited: dict[str, Field] = {}
        for base in reversed(bases):
            inherited.update(getattr(base, "_fields", {}))
        own = _collect_class_fields(cls, namespace)
        fields = {**inherited, **own}
        doc = namespace.get("__doc__")
        instructions = inspect.cleandoc(doc) if isinstance(doc, str) and doc.strip() else ""
        _install(cls, fields, instructions or None)
        return cls

    def __call__(cls, *args: Any, **kwargs: Any) -> type[Signature]:
        """`Signature("a -> b", instructions)` builds a signature class from a string."""
        if cls is Signature:
            return make_signature(*args, **kwargs)
        # Signatures are classes used as types; instantiating one is never meaningful.
        raise TypeError(f"{cls.__name__} is a signature class; it cannot be instantiated")

    # --- views -------------------------------------------------------------------

    @property
    def fields(cls) -> dict[str, Field]:
        """Every field, inputs then outputs."""
        return dict(cls._fields)

    @property
    def input_fields(cls) -> dict[str, Field]:
        """The input fields in declaration order."""
        return dict(cls._inputs)

    @property
    def output_fields(cls) -> dict[str, Field]:
        """The output fields in declaration order."""
        return dict(cls._outputs)

    @property
    def instructions(cls) -> str:
        """The task description shown to the LM."""
        return cls._instructions

    @property
    def signature(cls) -> str:
        """The short string form: "question, context -> answer"."""
        return f"{', '.join(cls._inputs)} -> {', '.join(cls._outputs)}"

    # --- operations (each returns a new signature) ---------------------------------

    def with_instructions(cls, instructions: str) -> type[Signature]:
        """A copy with other instructions."""
        if not isinstance(instructions, str):
            raise TypeError("instructions must be a str")
        return _derive(cls, cls._fields.values(), instructions)

    def with_updated_fields(cls, name: str, type_: Any = None, **changes: Any) -> type[Signature]:
        """A copy where field `name` has a new type and/or desc/prefix/constraints."""
        _require_field(cls, name)
        unknown = set(changes) - {"desc", "prefix", "constraints"}
        if unknown:
            raise TypeError(f"unknown field attribute {sorted(unknown)[0]!r}")
        if type_ is not None:
            changes["annotation"] = type_
        fields = [f.evolve(**changes) if f.name == name else f for f in cls._fields.values()]
        return _derive(cls, fields, cls._instructions)

    def append(cls, name: str, field: Any, type_: Any = None) -> type[Signature]:
        """A copy with a field added at the end of its kind (inputs or outputs)."""
        return cls.insert(-1, name, field, type_)

    def prepend(cls, name: str, field: Any, type_: Any = None) -> type[Signature]:
        """A copy with a field added at the start of its kind (inputs or outputs)."""
        return cls.insert(0, name, field, type_)

    def insert(cls, index: int, name: str, field: Any, type_: Any = None) -> type[Signature]:
        """A copy with a field inserted at `index` among the fields of its kind.

        Raises:
            SignatureError: the name is already used or is not an identifier.
            TypeError: `field` is not an InputField()/OutputField() declaration.
        """
        if not isinstance(field, FieldSpec):
            raise TypeError("field must be InputField(...) or OutputField(...)")
        _check_name(cls.signature, name)
        if name in cls._fields:
            raise SignatureError(
                signature=cls.signature, part=name, problem=f"duplicate field name {name!r}"
            )
        new = Field.bind(name, field, str if type_ is None else type_)
        group = list((cls._inputs if field.kind == "input" else cls._outputs).values())
        position = len(group) + 1 + index if index < 0 else index
        if not 0 <= position <= len(group):
            raise ValueError(f"index {index} out of range for {len(group)} {field.kind} fields")
        group.insert(position, new)
        others = cls._outputs if field.kind == "input" else cls._inputs
        ordered = (
            [*group, *others.values()] if field.kind == "input" else [*others.values(), *group]
        )
        return _derive(cls, ordered, cls._instructions)

    def delete(cls, name: str) -> type[Signature]:
        """A copy without field `name`."""
        _require_field(cls, name)
        return _derive(cls, [f for f in cls._fields.values() if f.name != name], cls._instructions)

    # --- equality, state ------------------------------------------------------------

    def _key(cls) -> tuple[Any, ...]:
        return (cls._instructions, tuple(cls._fields.values()))

    def __eq__(cls, other: object) -> bool:
        if not isinstance(other, SignatureMeta):
            return NotImplemented
        return cls._key() == other._key()

    def __hash__(cls) -> int:
        try:
            return hash(cls._key())
        except TypeError:
            return hash((cls._instructions, tuple(cls._fields)))

    def __repr__(cls) -> str:
        fields = ", ".join(
            f"{f.name}: {annotation_name(f.annotation)}" for f in cls._fields.values()
        )
        return f"{cls.__name__}({fields}; instructions={cls._instructions!r})"

    def dump_state(cls) -> dict[str, Any]:
        """DSPy's saved form: instructions and each field's prefix and description."""
        return {
            "instructions": cls._instructions,
            "fields": [{"prefix": f.prefix, "description": f.desc} for f in cls._fields.values()],
        }

    def load_state(cls, state: Mapping[str, Any]) -> type[Signature]:
        """A copy with the instructions and field prefixes/descriptions of `state`.

        Fields are matched by position, as DSPy does; extra saved fields are ignored.
        """
        instructions = state.get("instructions", cls._instructions)
        saved = list(state.get("fields", []))
        fields = []
        for i, f in enumerate(cls._fields.values()):
            item = saved[i] if i < len(saved) and isinstance(saved[i], Mapping) else {}
            fields.append(
                f.evolve(
                    prefix=str(item.get("prefix", f.prefix)),
                    desc=str(item.get("description", f.desc)),
                )
            )
        return _derive(cls, fields, str(instructions))


class Signature(metaclass=SignatureMeta):
    """Base class of every signature; `Signature("a -> b")` builds one from a string."""


# --- construction -----------------------------------------------------------------


def _collect_class_fields(cls: type, namespace: Mapping[str, Any]) -> dict[str, Field]:
    raw = namespace.get("__annotations__", {})
    declared = [n for n, v in namespace.items() if isinstance(v, FieldSpec)]
    if not raw and not declared:
        return {}
    try:
        module = sys.modules.get(cls.__module__)
        hints = typing.get_type_hints(
            cls, globalns=vars(module) if module else None, include_extras=True
        )
    except Exception:  # unresolved forward refs: fall back to the raw annotations
        hints = dict(raw)
    fields: dict[str, Field] = {}
    for name in [*raw, *(n for n in declared if n not in raw)]:
        spec = namespace.get(name)
        if name.startswith("_") or (name in raw and not isinstance(spec, FieldSpec)):
            if name.startswith("_"):
                continue
            raise SignatureError(
                signature=cls.__name__,
                part=name,
                problem=f"field {name!r} must be declared with InputField() or OutputField()",
            )
        assert isinstance(spec, FieldSpec)
        annotation, bounds = _split_annotated(hints.get(name, str))
        fields[name] = Field.bind(name, spec, annotation, bounds)
    return fields


def _split_annotated(hint: Any) -> tuple[Any, tuple[tuple[str, Any], ...]]:
    """`Annotated[int, Field(ge=0)]` -> (int, (("ge", 0),)), as pydantic reads it."""
    if typing.get_origin(hint) is not typing.Annotated:
        return hint, ()
    base, *metadata = typing.get_args(hint)
    found: list[tuple[str, Any]] = []
    for item in metadata:
        for part in (item, *getattr(item, "metadata", ())):
            for name in BOUND_NAMES:
                value = getattr(part, name, None)
                if value is not None and (name, value) not in found:
                    found.append((name, value))
    return base, tuple(found)


def _install(cls: SignatureMeta, fields: Mapping[str, Field], instructions: str | None) -> None:
    ordered = [f for f in fields.values() if f.kind == "input"] + [
        f for f in fields.values() if f.kind == "output"
    ]
    cls._fields = {f.name: f for f in ordered}
    cls._inputs = {f.name: f for f in ordered if f.kind == "input"}
    cls._outputs = {f.name: f for f in ordered if f.kind == "output"}
    # DSPy reads instructions through `inspect.cleandoc`: indentation and edge blank lines go.
    text = instructions if instructions is not None else _default_instructions(ordered)
    cls._instructions = inspect.cleandoc(text)
    cls._cache = {}
    for name in fields:
        if name in cls.__dict__:
            delattr(cls, name)


def _derive(cls: SignatureMeta, fields: Iterable[Field], instructions: str) -> type[Signature]:
    return _from_fields(cls.__name__, fields, instructions)


def _from_fields(name: str, fields: Iterable[Field], instructions: str | None) -> type[Signature]:
    new = SignatureMeta.__new__(SignatureMeta, name, (Signature,), {"__doc__": None})
    _install(new, {f.name: f for f in fields}, instructions)
    return typing.cast("type[Signature]", new)


def _require_field(cls: SignatureMeta, name: str) -> None:
    if name not in cls._fields:
        raise KeyError(f"no field {name!r} in signature {cls.signature!r}")


def _check_name(signature: str, name: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise SignatureError(
            signature=signature, part=name, problem=f"{name!r} is not a valid field name"
        )


def make_signature(
    spec: str | Mapping[str, Any],
    instructions: str | None = None,
    *,
    name: str = "StringSignature",
    custom_types: Mapping[str, Any] | None = None,
) -> type[Signature]:
    """Build a signature from "a, b: int -> c: list[str]" or from a {name: field} mapping.

    Raises:
        SignatureError: malformed string, unknown type, duplicate name or no output field.
    """
    if isinstance(spec, str):
        fields = _parse_string(spec, custom_types)
    elif isinstance(spec, Mapping):
        fields = _fields_from_mapping(spec)
    else:
        raise TypeError("signature must be a str or a mapping of field names to fields")
    text = spec if isinstance(spec, str) else ", ".join(spec)
    if not any(f.kind == "output" for f in fields):
        raise SignatureError(signature=text, part=text, problem="no output field")
    return _from_fields(name, fields, instructions)


def _fields_from_mapping(spec: Mapping[str, Any]) -> list[Field]:
    fields = []
    for name, value in spec.items():
        _check_name(", ".join(spec), name)
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], FieldSpec):
            fields.append(Field.bind(name, value[1], value[0]))
        elif isinstance(value, FieldSpec):
            fields.append(Field.bind(name, value))
        else:
            raise TypeError(f"field {name!r} must be a FieldSpec or a (type, FieldSpec) tuple")
    return fields


def _parse_string(text: str, custom_types: Mapping[str, Any] | None) -> list[Field]:
    if text.count("->") != 1:
        problem = "missing '->'" if "->" not in text else "more than one '->'"
        raise SignatureError(signature=text, part=text, problem=problem)
    left, right = text.split("->")
    fields: list[Field] = []
    seen: set[str] = set()
    for side, kind in ((left, "input"), (right, "output")):
        for part in _split_fields(side):
            field = _parse_field(text, part, kind, custom_types)
            if field.name in seen:
                raise SignatureError(
                    signature=text, part=part, problem=f"duplicate field name {field.name!r}"
                )
            seen.add(field.name)
            fields.append(field)
    return fields


def _split_fields(side: str) -> list[str]:
    if not side.strip():
        return []
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(side):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(side[start:i])
            start = i + 1
    parts.append(side[start:])
    return [p.strip() for p in parts]


def _parse_field(text: str, part: str, kind: str, custom_types: Mapping[str, Any] | None) -> Field:
    name, _, type_text = part.partition(":")
    name = name.strip()
    if not name:
        raise SignatureError(signature=text, part=part or ",", problem="empty field")
    _check_name(text, name)
    annotation: Any = str
    if type_text.strip():
        try:
            annotation = parse_type_expr(type_text, custom_types)
        except TypeExprError as exc:
            raise SignatureError(signature=text, part=part, problem=str(exc)) from None
    elif _:
        raise SignatureError(signature=text, part=part, problem="missing type after ':'")
    spec = InputField() if kind == "input" else OutputField()
    return Field.bind(name, spec, annotation)


def ensure_signature(
    signature: str | type[Signature], instructions: str | None = None
) -> type[Signature]:
    """Accept a signature class or string; a string is parsed (with optional instructions)."""
    if isinstance(signature, str):
        return make_signature(signature, instructions)
    if isinstance(signature, SignatureMeta) and signature is not Signature:
        return signature if instructions is None else signature.with_instructions(instructions)
    raise TypeError("signature must be a str or a Signature subclass")


def compose_signatures(
    *signatures: type[Signature], instructions: str | None = None, name: str = "Composed"
) -> type[Signature]:
    """Merge signatures into one: the union of their fields, in order.

    A field present in several signatures must agree on kind and type; instructions are
    joined with blank lines unless given.

    Raises:
        SignatureError: two signatures declare the same field with another kind or type.
        ValueError: fewer than one signature given.
    """
    if not signatures:
        raise ValueError("compose_signatures needs at least one signature")
    merged: dict[str, Field] = {}
    for sig in signatures:
        for field in sig._fields.values():
            prior = merged.get(field.name)
            if prior is None:
                merged[field.name] = field
            elif (prior.kind, prior.annotation) != (field.kind, field.annotation):
                raise SignatureError(
                    signature=" + ".join(s.signature for s in signatures),
                    part=field.name,
                    problem=(
                        f"field {field.name!r} conflicts: {prior.kind} "
                        f"{annotation_name(prior.annotation)} vs {field.kind} "
                        f"{annotation_name(field.annotation)}"
                    ),
                )
    if instructions is None:
        instructions = "\n\n".join(dict.fromkeys(s.instructions for s in signatures))
    return _from_fields(name, merged.values(), instructions)
