"""`Tool`: a Python function an agent may call, with a JSON schema of its arguments.

The schema comes from the function's type hints, through pydantic (imported when a
tool is built). Arguments are validated and coerced before the call; sync and async
functions are both accepted (sync ones run inline: tools must not block the loop).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, final

__all__ = ["Tool"]


@final
class Tool:
    """A callable tool: `await tool(**args)`.

    Args:
        func: the function (sync or async); its type hints give the argument schema.
        name: the tool's name (the function's name by default).
        desc: what the tool does (the function's docstring by default).
        args: the JSON schema of each argument, to override the inferred one.

    Raises:
        TypeError: `func` is not callable or takes *args/**kwargs only.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        desc: str | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError("func must be callable")
        self.func = func
        self.name: str = name or str(getattr(func, "__name__", type(func).__name__))
        self.desc: str = desc if desc is not None else inspect.getdoc(func) or ""
        self._model = _args_model(func, self.name)
        schema = self._model.model_json_schema()
        self.args: dict[str, Any] = (
            dict(args) if args is not None else dict(schema.get("properties", {}))
        )
        self.required: list[str] = list(schema.get("required", [])) if args is None else []

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r}, args={sorted(self.args)})"

    def __str__(self) -> str:
        desc = f", whose description is <desc>{self.desc}</desc>." if self.desc else "."
        return f"{self.name}{desc} It takes arguments {self.args}."

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema object of the arguments (for function-calling APIs)."""
        return {"type": "object", "properties": self.args, "required": self.required}

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
        try:
            model = self._model.model_validate(dict(kwargs))
        except Exception as exc:  # pydantic.ValidationError
            raise ValueError(f"invalid arguments for tool {self.name!r}: {exc}") from None
        return {k: getattr(model, k) for k in type(model).model_fields}

    async def __call__(self, **kwargs: Any) -> Any:
        """Validate the arguments and call the function (awaiting it if async).

        Raises:
            ValueError: invalid arguments.
            Exception: whatever the function raises.
        """
        result = self.func(**self.validate_args(kwargs))
        if inspect.isawaitable(result):
            result = await result
        return result

    acall = __call__


def _args_model(func: Callable[..., Any], name: str) -> Any:
    import pydantic

    target = func if inspect.isfunction(func) or inspect.ismethod(func) else type(func).__call__
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        hints = {}
    fields: dict[str, Any] = {}
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return pydantic.create_model(f"{name}_args", __config__=config, **fields)
