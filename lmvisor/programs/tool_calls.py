"""`ToolCalls` and `ToolCallResults`: the tool calls an LM asked for, and what they returned.

With native function calling, an adapter sends the signature's tools in the vendor's own
format and fills a `ToolCalls` output from the calls the vendor returns; without it, the
LM writes `{"tool_calls": [{"name": ..., "args": {...}}]}` and the adapter parses that.

A `ToolCalls` value inside a `History` turn may carry the calls' results
(`tool_call_results`); adapters then render the turn as DSPy 3.4.1 does: natively as an
assistant message with `tool_calls` followed by one `tool` message per result, or in text
as the calls followed by a user turn holding the results.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self, final

from lmvisor.programs._json_repair import repair_json
from lmvisor.programs.custom_types import Type

__all__ = ["ToolCallResults", "ToolCalls"]


@final
class ToolCalls(Type):
    """The calls of one LM turn, in order; `await calls.execute(tools)` runs them.

    Args:
        tool_calls: `ToolCalls.ToolCall`s, or dicts with `name` and `args` (or OpenAI's
            `{"id", "function": {"name", "arguments"}}`).
        tool_call_results: what the calls returned (a `ToolCallResults`, or what
            `ToolCallResults.validate` reads); kept as given, as DSPy keeps it.

    Raises:
        ValueError: a call has no name, or the results cannot be read as ToolCallResults.
    """

    __slots__ = ("tool_call_results", "tool_calls")

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

    def __init__(
        self,
        tool_calls: Iterable[ToolCalls.ToolCall | Mapping[str, Any]] = (),
        tool_call_results: Any = None,
    ) -> None:
        self.tool_calls: list[ToolCalls.ToolCall] = [_call(item) for item in tool_calls]
        if tool_call_results is not None:
            ToolCallResults.validate(tool_call_results)
        self.tool_call_results: Any = tool_call_results

    def __repr__(self) -> str:
        if self.tool_call_results is None:
            return f"ToolCalls(tool_calls={self.tool_calls!r})"
        return (
            f"ToolCalls(tool_calls={self.tool_calls!r}, "
            f"tool_call_results={self.tool_call_results!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ToolCalls):
            return NotImplemented
        return (self.tool_calls, self.tool_call_results) == (
            other.tool_calls,
            other.tool_call_results,
        )

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

    def serialize(self) -> dict[str, Any]:
        """As `format`, plus `tool_call_results` (as given, JSON-ready) when there are any."""
        data = self.format()
        if self.tool_call_results is not None:
            data["tool_call_results"] = _jsonable(self.tool_call_results)
        return data

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (as `serialize`)."""
        return self.serialize()

    def without_results(self) -> ToolCalls:
        """The same calls with no results attached."""
        return ToolCalls(self.tool_calls)

    def results(self) -> ToolCallResults | None:
        """The attached results, read as `ToolCallResults` (None when there are none)."""
        if self.tool_call_results is None:
            return None
        return ToolCallResults.validate(self.tool_call_results)

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
            return cls(value["tool_calls"], value.get("tool_call_results"))
        if isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            return cls(value)
        if isinstance(value, Mapping) and _is_call(value):
            return cls([value])
        raise ValueError(f"not a valid ToolCalls value: {value!r}"[:200])

    @classmethod
    def pydantic_model(cls) -> Any:
        """The JSON shape: `{"tool_calls": [{"name", "args"}]}` (titles as DSPy's)."""
        return _models()


@final
class ToolCallResults:
    """What a turn's tool calls returned, in call order, as DSPy's `ToolCallResults`.

    Args:
        tool_call_results: `ToolCallResults.ToolCallResult`s, or dicts with `name` and
            `value` (and optionally `call_id`, `is_error`).

    Raises:
        ValueError: a result has no name, or is not a mapping.
    """

    __slots__ = ("tool_call_results",)

    @final
    class ToolCallResult:
        """One call's result: the call id it answers, the tool's name, the value, an error flag."""

        __slots__ = ("call_id", "is_error", "name", "value")

        def __init__(
            self, *, name: str, value: Any, call_id: str | None = None, is_error: bool = False
        ) -> None:
            if not isinstance(name, str):
                raise ValueError("a tool call result needs a string name")
            if call_id is not None and not isinstance(call_id, str):
                raise ValueError("a tool call result's call_id must be a string or None")
            self.call_id = call_id
            self.name = name
            self.value = value
            self.is_error = bool(is_error)

        def __repr__(self) -> str:
            return (
                f"ToolCallResult(call_id={self.call_id!r}, name={self.name!r}, "
                f"value={self.value!r}, is_error={self.is_error!r})"
            )

        def __eq__(self, other: object) -> bool:
            if not isinstance(other, ToolCallResults.ToolCallResult):
                return NotImplemented
            return self.to_dict() == other.to_dict()

        __hash__ = None  # type: ignore[assignment]

        def to_dict(self) -> dict[str, Any]:
            """`{"call_id", "name", "value", "is_error"}`, the value JSON-ready."""
            return {
                "call_id": self.call_id,
                "name": self.name,
                "value": _jsonable(self.value),
                "is_error": self.is_error,
            }

    def __init__(
        self, tool_call_results: Iterable[ToolCallResults.ToolCallResult | Mapping[str, Any]]
    ) -> None:
        self.tool_call_results: list[ToolCallResults.ToolCallResult] = [
            _result(item) for item in tool_call_results
        ]

    @classmethod
    def from_tool_calls_and_values(
        cls,
        tool_calls: ToolCalls | Sequence[ToolCalls.ToolCall],
        values: Sequence[Any],
        is_errors: Sequence[bool] | None = None,
    ) -> ToolCallResults:
        """One result per call, paired in order (DSPy's name).

        Raises:
            ValueError: the lengths differ.
        """
        calls = tool_calls.tool_calls if isinstance(tool_calls, ToolCalls) else list(tool_calls)
        if len(calls) != len(values):
            raise ValueError("`tool_calls` and `values` must have the same length.")
        errors = [False] * len(calls) if is_errors is None else list(is_errors)
        if len(errors) != len(calls):
            raise ValueError("`is_errors` must have the same length as `tool_calls` when provided.")
        return cls(
            ToolCallResults.ToolCallResult(call_id=c.id, name=c.name, value=v, is_error=e)
            for c, v, e in zip(calls, values, errors, strict=True)
        )

    @classmethod
    def validate(cls, value: Any) -> ToolCallResults:
        """From an instance, a list of results, `{"tool_call_results": [...]}` or one result.

        Raises:
            ValueError: the value is none of those.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, list):
            return cls(value)
        if isinstance(value, Mapping):
            if isinstance(value.get("tool_call_results"), list):
                return cls(value["tool_call_results"])
            if {"name", "value"} <= set(value):
                return cls([value])
        raise ValueError(f"not a valid ToolCallResults value: {value!r}"[:200])

    def to_dict(self) -> dict[str, Any]:
        """`{"tool_call_results": [...]}`, the JSON form DSPy dumps."""
        return {"tool_call_results": [r.to_dict() for r in self.tool_call_results]}

    def __len__(self) -> int:
        return len(self.tool_call_results)

    def __repr__(self) -> str:
        return f"ToolCallResults(tool_call_results={self.tool_call_results!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ToolCallResults):
            return NotImplemented
        return self.tool_call_results == other.tool_call_results

    __hash__ = None  # type: ignore[assignment]


def _result(
    item: ToolCallResults.ToolCallResult | Mapping[str, Any],
) -> ToolCallResults.ToolCallResult:
    if isinstance(item, ToolCallResults.ToolCallResult):
        return item
    if not isinstance(item, Mapping) or "name" not in item or "value" not in item:
        raise ValueError("a tool call result must be a mapping with `name` and `value`")
    return ToolCallResults.ToolCallResult(
        name=item["name"],
        value=item["value"],
        call_id=item.get("call_id"),
        is_error=bool(item.get("is_error", False)),
    )


def _jsonable(value: Any) -> Any:
    """A JSON-ready form (as pydantic's JSON mode dumps it), for results and their values."""
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, type):
        return to_dict()
    import pydantic

    try:
        return pydantic.TypeAdapter(Any).dump_python(value, mode="json")
    except Exception:  # not serializable: shown as text, as pydantic's fallback would
        return str(value)


def _loads(text: str) -> Any:
    """JSON `text`, repaired if slightly broken.

    Raises:
        ValueError: it is nested too deeply for either decoder.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("tool call JSON is nested too deeply") from None
    except ValueError:
        return repair_json(text)


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
