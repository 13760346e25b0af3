"""`ToolCalls`: an output type holding the tool calls an LM asked for, as DSPy's.

With native function calling, an adapter sends the signature's tools in the vendor's own
format and fills a `ToolCalls` output from the calls the vendor returns; without it, the
LM writes `{"tool_calls": [{"name": ..., "args": {...}}]}` and the adapter parses that.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self, final

from lmvisor.programs.custom_types import Type

__all__ = ["ToolCalls"]


@final
class ToolCalls(Type):
    """The calls of one LM turn, in order; `await calls.execute(tools)` runs them.

    Args:
        tool_calls: `ToolCalls.ToolCall`s, or dicts with `name` and `args` (or OpenAI's
            `{"id", "function": {"name", "arguments"}}`).
    """

    __slots__ = ("tool_calls",)

    @final
    class ToolCall:
        """One call: the tool's name, its arguments, and the vendor's call id if any."""

        __slots__ = ("args", "id", "name")

        def __init__(
            self, *, name: str, args: Mapping[str, Any] | None = None, id: str | None = None
        ) -> None:
            if not isinstance(name, str) or not name:
                raise ValueError("a tool call needs a non-empty string name")
            self.name = name
            self.args: dict[str, Any] = dict(args or {})
            self.id = id

        def __repr__(self) -> str:
            return f"ToolCall(id={self.id!r}, name={self.name!r}, args={self.args!r})"

        def __eq__(self, other: object) -> bool:
            if not isinstance(other, ToolCalls.ToolCall):
                return NotImplemented
            return (self.name, self.args, self.id) == (other.name, other.args, other.id)

        __hash__ = None  # type: ignore[assignment]

        def format(self) -> dict[str, Any]:
            """`{"name", "args"}`, as DSPy shows a call in prompts."""
            return {"name": self.name, "args": self.args}

        async def execute(self, tools: Mapping[str, Any] | Sequence[Any]) -> Any:
            """Run this call with the matching tool (a Tool, or a function by name).

            Raises:
                ValueError: no tool has this call's name.
                Exception: whatever the tool raises.
            """
            func = _find(tools, self.name)
            result = func(**self.args)
            return await result if inspect.isawaitable(result) else result

    def __init__(self, tool_calls: Iterable[ToolCalls.ToolCall | Mapping[str, Any]] = ()) -> None:
        self.tool_calls: list[ToolCalls.ToolCall] = [_call(item) for item in tool_calls]

    def __repr__(self) -> str:
        return f"ToolCalls(tool_calls={self.tool_calls!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ToolCalls):
            return NotImplemented
        return self.tool_calls == other.tool_calls

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.tool_calls)

    @classmethod
    def from_dict_list(cls, items: Iterable[Mapping[str, Any]]) -> ToolCalls:
        """Calls from `[{"name": ..., "args": {...}}, ...]` (DSPy's name)."""
        return cls(items)

    @classmethod
    def description(cls) -> str:
        """How an LM writes tool calls when they are not native (shown with the field)."""
        return (
            "Tool calls must be a JSON object with `tool_calls`, a list of calls. "
            "Each call must include `name` and `args`. "
            'Example: {"tool_calls": [{"name": "search", "args": {"query": "cats"}}]}'
        )

    def format(self) -> dict[str, Any]:
        """`{"tool_calls": [{"name", "args"}, ...]}`."""
        return {"tool_calls": [call.format() for call in self.tool_calls]}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (as `format`)."""
        return self.format()

    async def execute(self, tools: Mapping[str, Any] | Sequence[Any]) -> list[Any]:
        """Run every call in order; their results.

        Raises:
            ValueError: a call names no known tool.
            Exception: whatever a tool raises.
        """
        return [await call.execute(tools) for call in self.tool_calls]

    @classmethod
    def validate(cls, value: Any) -> Self:
        """From `{"tool_calls": [...]}`, a list of calls, or one call.

        Raises:
            ValueError: the value is none of those.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            value = _loads(value)
        if isinstance(value, Mapping) and isinstance(value.get("tool_calls"), list):
            return cls(value["tool_calls"])
        if isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            return cls(value)
        if isinstance(value, Mapping) and _is_call(value):
            return cls([value])
        raise ValueError(f"not a valid ToolCalls value: {value!r}"[:200])

    @classmethod
    def pydantic_model(cls) -> Any:
        """The JSON shape: `{"tool_calls": [{"name", "args"}]}` (titles as DSPy's)."""
        return _models()


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        import json_repair

        return json_repair.loads(text)


def _is_call(data: Mapping[str, Any]) -> bool:
    return ("name" in data and ("args" in data or "arguments" in data)) or "function" in data


def _call(item: ToolCalls.ToolCall | Mapping[str, Any]) -> ToolCalls.ToolCall:
    """A call from DSPy's `{name, args}` or a provider's `{id, function: {name, arguments}}`."""
    if isinstance(item, ToolCalls.ToolCall):
        return item
    if not isinstance(item, Mapping):
        raise ValueError(f"a tool call must be a mapping, not {type(item).__name__}")
    function = item.get("function")
    if isinstance(function, Mapping):
        name, arguments = function.get("name") or item.get("name"), function.get("arguments")
    else:
        name, arguments = item.get("name"), item.get("args", item.get("arguments"))
    if isinstance(arguments, str):
        arguments = _loads(arguments)
    if not isinstance(arguments, Mapping):
        arguments = {}
    call_id = item.get("id") or item.get("call_id")
    return ToolCalls.ToolCall(
        name=str(name or ""), args=arguments, id=call_id if isinstance(call_id, str) else None
    )


def _find(tools: Mapping[str, Any] | Sequence[Any], name: str) -> Any:
    if isinstance(tools, Mapping):
        found = tools.get(name)
    else:
        found = next((t for t in tools if getattr(t, "name", None) == name), None)
    if found is None:
        raise ValueError(f"no tool named {name!r}")
    return found


@functools.cache
def _models() -> Any:
    import pydantic

    call = pydantic.create_model(
        "ToolCall",
        name=(str, ...),
        args=(dict[str, Any], pydantic.Field(json_schema_extra={"additionalProperties": True})),
    )
    return pydantic.create_model("ToolCalls", tool_calls=(list[call], ...))  # type: ignore[valid-type]
