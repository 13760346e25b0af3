"""Program specs: a program described as JSON, the Module it builds, and the way back.

A spec is what a ModuleManager registers, what the daemon accepts on
`POST /v1/programs` and what an optimization job names as its student:

    {
      "module": "ChainOfThought",
      "signature": "context: list[str], question -> answer: str",
      "instructions": "Answer with a short factoid.",
      "descriptions": {"context": "facts that may help"},
      "config": {"temperature": 0.0},
      "adapter": "chat",                   or json, xml, or {"name": ..., options}
      "lm": "openai/gpt-4o-mini",
      "state": { ...what Module.save writes (or DSPy 3.x's save)... }
    }

Only `module` and `signature` are required. `signature` is a typed signature
string, or an object `{"inputs": {name: type}, "outputs": {name: type}}` with
types written as in the string form. `config` holds generation options only
(`GENERATION_OPTIONS`, never keys or URLs; any other key is refused), each of the
JSON type the vendors take (`setting_problem`: a list as `temperature` is refused
here, not by the vendor at call time). `adapter` is any of the programs
layer's adapters with its options (`_spec_adapters`: chat, json, xml, and
two_step with the model that extracts). `lm` is recorded for whoever runs the
program (a program talks only to the `LM` it is given). `state` restores demos
and instructions, as `Module.load_state` does.

`build_program(spec)` validates and builds; `program_spec(module)` writes the
spec of a built-in module (Predict, ChainOfThought) back, demos and adapter
included, so versions of a program can be stored and rebuilt.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, final

from lmvisor.programs._spec_adapters import (
    AdapterSpec,
    AdapterSpecProblem,
    adapter_spec,
    build_adapter,
    parse_adapter_spec,
)
from lmvisor.programs.chain_of_thought import ChainOfThought
from lmvisor.programs.errors import ProgramError, SignatureError, StateError, _clip
from lmvisor.programs.generation_options import GENERATION_OPTIONS, setting_problem
from lmvisor.programs.lm import LM, model_name_problem
from lmvisor.programs.module import Module
from lmvisor.programs.predict import Predict
from lmvisor.programs.signature import Signature, make_signature

__all__ = [
    "MODULE_TYPES",
    "ProgramSpec",
    "ProgramSpecError",
    "build_program",
    "parse_program_spec",
    "program_spec",
]

MODULE_TYPES: tuple[str, ...] = ("Predict", "ChainOfThought")
_T = TypeVar("_T")
_REASONING = "reasoning"
_KEYS = frozenset(
    {"module", "signature", "instructions", "descriptions", "config", "adapter", "lm", "state"}
)
_MAX_TEXT = 100_000
_SIMPLE_TYPES: Mapping[Any, str] = {str: "str", int: "int", float: "float", bool: "bool"}


class ProgramSpecError(ProgramError, ValueError):
    """A program spec is malformed; `field` is the dotted path of the bad part."""

    code = "program_spec_error"

    def __init__(self, *, field: str, problem: str) -> None:
        # `problem` may quote the caller's text (a 50 kB signature): the message shows a piece.
        super().__init__(
            f"invalid program spec at {field}: {_clip(problem)}",
            context={"field": field, "problem": _clip(problem)},
        )
        self.field = field
        self.problem = problem


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramSpec:
    """A validated program spec (see the module docstring for each field).

    Build one with `parse_program_spec(data)` (validates JSON-ready data) or
    `program_spec(module)`; `to_dict()` gives the JSON form back.
    """

    module: str
    signature: str
    instructions: str | None = None
    descriptions: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    adapter: AdapterSpec | None = None
    lm: str | None = None
    state: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form, the keys `parse_program_spec` reads."""
        return {
            "module": self.module,
            "signature": self.signature,
            "instructions": self.instructions,
            "descriptions": dict(self.descriptions),
            "config": dict(self.config),
            "adapter": self.adapter if isinstance(self.adapter, str | None) else dict(self.adapter),
            "lm": self.lm,
            "state": None if self.state is None else dict(self.state),
        }


def parse_program_spec(data: Any) -> ProgramSpec:
    """Validate JSON-ready data as a `ProgramSpec`.

    Raises:
        ProgramSpecError: naming the first bad field by its dotted path.
    """
    if isinstance(data, ProgramSpec):
        return data
    if not isinstance(data, Mapping):
        raise ProgramSpecError(field="<root>", problem="a program spec must be a JSON object")
    unknown = sorted(set(data) - _KEYS, key=str)
    if unknown:
        raise ProgramSpecError(field=str(unknown[0]), problem="unknown key")
    module = data.get("module")
    if module not in MODULE_TYPES:
        raise ProgramSpecError(field="module", problem=f"must be one of {', '.join(MODULE_TYPES)}")
    _check_text(data)
    return ProgramSpec(
        module=module,
        signature=_signature_text(data.get("signature")),
        instructions=_optional_str(data, "instructions"),
        descriptions=_str_map(data.get("descriptions", {}), "descriptions"),
        config=_config(data.get("config", {})),
        adapter=_checked(parse_adapter_spec, data.get("adapter")),
        lm=_model_name(data.get("lm")),
        state=_state(data.get("state")),
    )


def _check_text(data: Mapping[str, Any]) -> None:
    """Refuse a string no UTF-8 text can hold (a JSON body's lone `"\\ud800"`), anywhere in
    the spec: no vendor could be sent it, and no store could write the program.

    Raises:
        ProgramSpecError: naming the first such key or value by its dotted path.
    """
    stack: list[tuple[str, Any]] = [(str(k), v) for k, v in data.items()]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            items: list[tuple[str, Any]] = [(path, value)]
        elif isinstance(value, Mapping):
            items = [(f"{path}.<key>", k) for k in value if isinstance(k, str)]
            stack.extend((f"{path}.{k}", v) for k, v in value.items())
        elif isinstance(value, list | tuple):
            items = []
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
        else:
            continue
        for where, text in items:
            if not _is_utf8(text):
                problem = "holds a lone surrogate (e.g. \\ud800): not UTF-8 text"
                raise ProgramSpecError(field=where, problem=problem)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def build_program(
    spec: ProgramSpec | Mapping[str, Any], *, lm_for: Callable[[str], LM] | None = None
) -> Module:
    """Build the Module a spec describes, its saved state restored.

    Args:
        spec: the spec (a `ProgramSpec` or its JSON form).
        lm_for: resolves a model name to an LM; needed only by a two_step adapter.

    Raises:
        ProgramSpecError: the spec is malformed (bad signature, unknown description field,
            state that does not fit the module), or names a two_step adapter and no
            `lm_for` is given, naming the field.
    """
    spec = parse_program_spec(spec)
    signature = _signature(spec)
    module: Predict | ChainOfThought
    if spec.module == "Predict":
        module = Predict(signature, **spec.config)
    else:
        module = ChainOfThought(signature, **spec.config)
    adapter = _checked(build_adapter, spec.adapter, lm_for=lm_for)
    for _, predictor in module.named_predictors():
        predictor.adapter = adapter
    if spec.state is not None:
        try:
            module.load_state(spec.state)
        except StateError as exc:
            raise ProgramSpecError(field=f"state.{exc.where}", problem=exc.problem) from None
    return module


def program_spec(module: Module, *, lm: str | None = None) -> ProgramSpec:
    """The spec of a built-in module (Predict or ChainOfThought), demos and instructions included.

    Raises:
        TypeError: the module is not a Predict or ChainOfThought.
        ProgramSpecError: a field's type (a custom class) or the adapter (one with
            callbacks, or a class of one's own) cannot be written in a spec.
    """
    if type(module) is Predict:
        predictor, name = module, "Predict"
        signature = predictor.signature
    elif type(module) is ChainOfThought:
        predictor, name = module.predict, "ChainOfThought"
        signature = predictor.signature.delete(_REASONING)
    else:
        raise TypeError(f"only Predict and ChainOfThought have specs, not {type(module).__name__}")
    return ProgramSpec(
        module=name,
        signature=_typed_signature(signature),
        instructions=signature.instructions,
        descriptions={
            n: f.desc for n, f in signature.fields.items() if f.desc and f.desc != f"${{{n}}}"
        },
        config={k: v for k, v in predictor.config.items() if k in GENERATION_OPTIONS},
        adapter=_checked(adapter_spec, predictor.adapter),
        lm=lm,
        state=module.dump_state(),
    )


def _signature(spec: ProgramSpec) -> type[Signature]:
    text = spec.signature
    try:
        signature = make_signature(text, spec.instructions)
    except SignatureError as exc:
        raise ProgramSpecError(field="signature", problem=exc.problem) from None
    for name, desc in spec.descriptions.items():
        if name not in signature.fields:
            raise ProgramSpecError(field=f"descriptions.{name}", problem="no such field")
        signature = signature.with_updated_fields(name, desc=desc)
    return signature


def _checked(step: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """`step(...)`, its AdapterSpecProblem raised as the ProgramSpecError it is."""
    try:
        return step(*args, **kwargs)
    except AdapterSpecProblem as exc:
        raise ProgramSpecError(field=exc.field, problem=exc.problem) from None


def _typed_signature(signature: type[Signature]) -> str:
    def side(kind: str) -> str:
        return ", ".join(
            f"{f.name}: {_type_text(f.annotation, f.name)}"
            for f in signature.fields.values()
            if f.kind == kind
        )

    return f"{side('input')} -> {side('output')}"


def _type_text(annotation: Any, field: str) -> str:
    """Python source for a type a spec can hold; the inverse of the signature parser."""
    if annotation is None or annotation is type(None):
        return "None"
    if annotation in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(a, field) for a in args)
    if origin in (list, dict, tuple, set) and args:
        inner = ", ".join("..." if a is Ellipsis else _type_text(a, field) for a in args)
        return f"{origin.__name__}[{inner}]"
    if annotation in (list, dict, tuple, set, typing.Any):
        return "Any" if annotation is typing.Any else annotation.__name__
    raise ProgramSpecError(
        field=f"signature.{field}", problem=f"type {annotation!r} cannot be written in a spec"
    )


def _signature_text(value: Any) -> str:
    if isinstance(value, str):
        if not value.strip() or len(value) > _MAX_TEXT:
            raise ProgramSpecError(field="signature", problem="must be a non-empty signature")
        return value
    if not isinstance(value, Mapping) or set(value) != {"inputs", "outputs"}:
        raise ProgramSpecError(
            field="signature",
            problem='must be a string or {"inputs": {name: type}, "outputs": {name: type}}',
        )
    sides = []
    for side in ("inputs", "outputs"):
        types_ = _str_map(value[side], f"signature.{side}")
        if not types_:
            raise ProgramSpecError(field=f"signature.{side}", problem="needs at least one field")
        sides.append(", ".join(f"{name}: {text}" for name, text in types_.items()))
    return " -> ".join(sides)


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or len(value) > _MAX_TEXT):
        raise ProgramSpecError(field=key, problem=f"must be a string of at most {_MAX_TEXT} chars")
    return value


def _str_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ProgramSpecError(field=where, problem="must be an object of strings")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str) or len(item) > _MAX_TEXT:
            raise ProgramSpecError(field=f"{where}.{key}", problem="must be a string")
    return dict(value)


def _config(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ProgramSpecError(field="config", problem="must be an object")
    for key, item in value.items():
        if key not in GENERATION_OPTIONS:
            allowed = ", ".join(sorted(GENERATION_OPTIONS))
            raise ProgramSpecError(
                field=f"config.{key}", problem=f"not a generation option (allowed: {allowed})"
            )
        if not isinstance(item, str | int | float | list | dict | type(None)):
            raise ProgramSpecError(field=f"config.{key}", problem="must be JSON data")
        problem = setting_problem(key, item)
        if problem is not None:
            raise ProgramSpecError(field=f"config.{key}", problem=problem)
    return dict(value)


def _model_name(value: Any) -> str | None:
    if value is None:
        return None
    problem = model_name_problem(value)
    if problem is not None:
        raise ProgramSpecError(field="lm", problem=problem)
    return str(value)


def _state(value: Any) -> Mapping[str, Any] | None:
    if value is not None and not isinstance(value, Mapping):
        raise ProgramSpecError(field="state", problem="must be an object (what Module.save writes)")
    return value
