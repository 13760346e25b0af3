"""`Tool`: a Python function an agent may call, with a JSON schema of its arguments.

The schema comes from the function's type hints, through pydantic (imported when a
tool is built). Arguments are validated and coerced before the call; sync and async
functions are both accepted (sync ones run inline: tools must not block the loop); an
async one's await is bounded by the call's deadline.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Literal, final

from lmvisor.programs.callbacks import new_call_id, notify
from lmvisor.programs.custom_types import Type

__all__ = ["Tool"]


@final
class Tool(Type):
    """A callable tool: `await tool(**args)`; also a signature input type (`list[Tool]`).

    Args:
        func: the function (sync or async); its type hints give the argument schema.
        name: the tool's name (the function's name by default).
        desc: what the tool does (the function's docstring, as written, by default).
        args: the JSON schema of each argument, to override the inferred one.
        arg_desc: a description for some arguments, added to their schema.

    Raises:
        TypeError: `func` is not callable, or is a generator function.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        desc: str | None = None,
        args: Mapping[str, Any] | None = None,
        arg_desc: Mapping[str, str] | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError("func must be callable")
        self.func = func
        self.name: str = name or str(getattr(func, "__name__", type(func).__name__))
        if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
            raise TypeError(f"tool {self.name!r} is a generator function; a tool returns one value")
        self.desc: str = desc if desc is not None else _raw_doc(func)
        specs = _arg_specs(func)
        self._model = _args_model(specs, self.name, _takes_kwargs(func))
        schemas, self._defs = _arg_schemas(specs, arg_desc or {})
        self.args: dict[str, Any] = dict(args) if args is not None else schemas
        if args is not None:
            self._defs = {}
        self.required: list[str] = [k for k, v in self.args.items() if "default" not in v]

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r}, args={sorted(self.args)})"

    def __str__(self) -> str:
        desc = f", whose description is <desc>{self.desc}</desc>." if self.desc else "."
        desc = desc.replace("\n", "  ")  # DSPy keeps each tool on one line of the prompt
        return f"{self.name}{desc} It takes arguments {self.args}."

    def format(self) -> str:
        """The tool as one line of a prompt (as `str(tool)`)."""
        return str(self)

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema object of the arguments (for function-calling APIs); a recursive
        model's definitions ride along as `$defs`, so its inner `$ref`s resolve.
        """
        properties = {name: _json_schema(schema) for name, schema in self.args.items()}
        params = {"type": "object", "properties": properties, "required": self.required}
        return params | {"$defs": self._defs} if self._defs else params

    def to_openai(self) -> dict[str, Any]:
        """The tool in OpenAI's `tools` format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.desc,
                "parameters": self.parameters,
            },
        }

    def validate_args(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments coerced to the function's types.

        Raises:
            ValueError: an argument is missing, unknown or of the wrong type.
        """
        import pydantic

        try:
            model = self._model.model_validate(dict(kwargs))
        except pydantic.ValidationError as exc:
            problems = _problems(exc)
            raise ValueError(f"invalid arguments for tool {self.name!r}: {problems}") from None
        # A function taking **kwargs gets the arguments it does not name as given, as DSPy.
        return {k: getattr(model, k) for k in type(model).model_fields} | (model.model_extra or {})

    async def __call__(self, **kwargs: Any) -> Any:
        """Validate the arguments and call the function (awaiting it if async).

        Raises:
            ValueError: invalid arguments.
            DeadlineExceeded: an async function outlived the call's deadline.
            Exception: whatever the function raises.
        """
        from lmvisor.programs.settings import active_callbacks

        hooks = active_callbacks()
        if not hooks:
            return await self._run(kwargs)
        call_id = new_call_id()
        notify(hooks, "on_tool_start", call_id, self, dict(kwargs))
        try:
            result = await self._run(kwargs)
        except BaseException as exc:
            notify(hooks, "on_tool_end", call_id, None, exc)
            raise
        notify(hooks, "on_tool_end", call_id, result, None)
        return result

    async def _run(self, kwargs: Mapping[str, Any]) -> Any:
        result = self.func(**self.validate_args(kwargs))
        if inspect.isawaitable(result):
            result = await _within_deadline(result, self.name)
        return result

    acall = __call__


async def _within_deadline(pending: Awaitable[Any], name: str) -> Any:
    """Await a tool's result, no longer than the call's deadline (a hung tool must not
    outlive its caller's budget).

    Raises:
        DeadlineExceeded: the deadline passed first; the tool's await is cancelled.
    """
    import asyncio

    from lmvisor.runtime.deadline import time_left
    from lmvisor.runtime.errors import DeadlineExceeded

    left = time_left()
    if left is None:
        return await pending
    try:
        async with asyncio.timeout(max(left, 0.0)) as bound:
            return await pending
    except TimeoutError:
        if bound.expired():
            raise DeadlineExceeded(operation=f"tool {name!r}") from None
        raise


def _arg_specs(func: Callable[..., Any]) -> dict[str, tuple[Any, Any]]:
    """Each named parameter's (annotation, default), `...` marking a required one."""
    target = func if inspect.isfunction(func) or inspect.ismethod(func) else type(func).__call__
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        hints = {}
    specs: dict[str, tuple[Any, Any]] = {}
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is param.empty else param.default
        specs[param.name] = (hints.get(param.name, Any), default)
    return specs


def _takes_kwargs(func: Callable[..., Any]) -> bool:
    params = inspect.signature(func).parameters.values()
    return any(p.kind is p.VAR_KEYWORD for p in params)


def _problems(exc: Any) -> str:
    """The first few of a validation's errors, one clause each: 10,000 bad arguments
    make a short message, not a megabyte of observation for the LM to read.
    """
    errors = exc.errors(include_url=False, include_input=False)
    shown = "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or '(arguments)'}: {e['msg']}"
        for e in errors[:_SHOWN_PROBLEMS]
    )
    more = len(errors) - _SHOWN_PROBLEMS
    return shown if more <= 0 else f"{shown}; and {more} more"


_SHOWN_PROBLEMS: Final = 5
"""The most argument problems one error message names."""


def _args_model(specs: Mapping[str, tuple[Any, Any]], name: str, open_ended: bool) -> Any:
    import pydantic

    extra: Literal["allow", "forbid"] = "allow" if open_ended else "forbid"
    config = pydantic.ConfigDict(extra=extra, arbitrary_types_allowed=True)
    return pydantic.create_model(f"{name}_args", __config__=config, **specs)  # type: ignore[call-overload]


def _raw_doc(func: Callable[..., Any]) -> str:
    """The docstring exactly as written (DSPy shows it uncleaned), or ""."""
    doc = getattr(func, "__doc__", None)
    if not doc and not (inspect.isfunction(func) or inspect.ismethod(func)):
        doc = getattr(type(func).__call__, "__doc__", None)
    return doc if isinstance(doc, str) else ""


def _arg_schemas(
    specs: Mapping[str, tuple[Any, Any]], arg_desc: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """DSPy's `args`: each argument's own JSON schema, references inlined, plus its default;
    and the definitions a recursive model still refers to (`#/$defs/...`).
    """
    import pydantic

    schemas: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    for name, (annotation, default) in specs.items():
        try:
            schema = pydantic.TypeAdapter(annotation).json_schema()
        except Exception:  # an arbitrary class: validated by isinstance, no schema to show
            schema = {}
        defs = schema.pop("$defs", {})
        schema = _inline_refs(schema, defs, ())
        if '"$ref"' in json.dumps(schema):
            kept |= defs
        if default is not ...:
            schema["default"] = _json_default(default)
        if name in arg_desc:
            schema["description"] = arg_desc[name]
        schemas[name] = schema
    return schemas, kept


def _json_schema(schema: Any) -> Any:
    """`schema` with a default JSON cannot show as its repr (the wire needs JSON)."""
    if not isinstance(schema, dict) or "default" not in schema:
        return schema
    try:
        json.dumps(schema["default"])
    except (TypeError, ValueError):
        return {**schema, "default": repr(schema["default"])}
    return schema


def _json_default(value: Any) -> Any:
    """A default as JSON shows it: an enum member by its value, a Decimal as a float."""
    import decimal

    if isinstance(value, decimal.Decimal):
        return float(value)
    import pydantic_core

    try:
        return pydantic_core.to_jsonable_python(value)
    except Exception:  # kept as it is, as DSPy: the prompt shows it; `parameters` its repr
        return value


def _inline_refs(node: Any, defs: Mapping[str, Any], stack: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_inline_refs(item, defs, stack) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        key = ref.rsplit("/", 1)[-1]
        if key in defs and key not in stack:  # a recursive model keeps its inner $ref
            return _inline_refs(defs[key], defs, (*stack, key))
    return {k: _inline_refs(v, defs, stack) for k, v in node.items()}
