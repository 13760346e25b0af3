"""Native LM features an adapter plans a call around, as DSPy 3.4.1 plans them.

- Function calling: a signature with a `ToolCalls` output and a `Tool` / `list[Tool]`
  input sends the tools in the request (`tools`), leaves both fields out of the prompt,
  and fills the output from the tool calls the LM returns.
- Reasoning: a `Reasoning` output, with an LM that reasons natively, sends
  `reasoning_effort` (the call's, else "low"), leaves the field out of the prompt and
  fills it from the reasoning content the LM returns.

`plan_call` decides before formatting; `finish_values` completes each parsed completion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, get_args, get_origin

from lmvisor.programs._types import allows_none
from lmvisor.programs.lm import LMCapabilities, LMResponse
from lmvisor.programs.reasoning import Reasoning
from lmvisor.programs.signature import Signature
from lmvisor.programs.tool import Tool
from lmvisor.programs.tool_calls import ToolCalls

__all__ = [
    "CallPlan",
    "finish_values",
    "plan_call",
    "tool_calls_output",
    "tools_input",
]

_TOOL_PARAMS = ("tools", "tool_choice", "parallel_tool_calls")
_PLAIN_PLAN = ("plain-plan",)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallPlan:
    """How one call is made: the signature rendered and parsed, and the request params.

    Attributes:
        signature: the signature the prompt is formatted from and completions parsed with.
        params: the request params, native options added (read-only: a plain plan
            without params is shared by every call with its signature).
        tool_calls_field: the ToolCalls output filled from the LM's native tool calls.
        reasoning_fields: the Reasoning outputs filled from its reasoning content.
    """

    signature: type[Signature]
    params: Mapping[str, Any]
    tool_calls_field: str | None = None
    reasoning_fields: tuple[str, ...] = ()


def tools_input(signature: type[Signature]) -> str | None:
    """The input field typed `Tool` or `list[Tool]`, if any."""
    for name, field in signature._inputs.items():
        annotation = field.annotation
        if annotation is Tool or (
            get_origin(annotation) is list and get_args(annotation) == (Tool,)
        ):
            return name
    return None


def tool_calls_output(signature: type[Signature]) -> str | None:
    """The output field typed `ToolCalls`, if any."""
    for name, field in signature._outputs.items():
        if field.annotation is ToolCalls:
            return name
    return None


def _shape(signature: type[Signature]) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(tools input, ToolCalls output, Reasoning outputs) of a signature, cached on it."""
    key = ("native-shape",)
    shape = signature._cache.get(key)
    if shape is None:
        reasoning = tuple(n for n, f in signature._outputs.items() if f.annotation is Reasoning)
        shape = (tools_input(signature), tool_calls_output(signature), reasoning)
        signature._cache[key] = shape
    return shape


def plan_call(
    signature: type[Signature],
    inputs: Mapping[str, Any],
    params: Mapping[str, Any],
    capabilities: LMCapabilities,
    *,
    native_function_calling: bool,
    parallel_tool_calls: bool | None,
) -> CallPlan:
    """The plan for one call.

    Raises:
        ValueError: a ToolCalls output without a tools input to call from.
    """
    if not params:
        # Cached only once `_shape` found no native output: then an empty call is plain.
        plain: CallPlan | None = signature._cache.get(_PLAIN_PLAN)
        if plain is not None:
            return plain
    tools_name, tool_field, reasoning = _shape(signature)
    if (
        tool_field is None
        and not reasoning
        and "tools" not in params
        and "tool_choice" not in params
        and "parallel_tool_calls" not in params
    ):
        if not params:  # the common, plain call: one plan per signature, not one per call
            return _plain_plan(signature)
        return CallPlan(signature=signature, params=dict(params))
    sent = dict(params)
    if not native_function_calling:
        _drop_tool_params(sent)
        tool_field = None
    elif tool_field is not None and tools_name is None:
        raise ValueError(
            f"output field {tool_field!r} receives tool calls, but no input field holds "
            "the tools: add an input typed list[Tool]"
        )
    elif tool_field is not None and tools_name is not None and capabilities.tools:
        tools = inputs.get(tools_name) or []
        sent["tools"] = [t.to_openai() for t in (tools if isinstance(tools, list) else [tools])]
        if parallel_tool_calls is not None and sent.get("parallel_tool_calls") is None:
            sent.setdefault("tool_choice", "auto")  # DSPy's wire order: tool_choice first
            sent["parallel_tool_calls"] = parallel_tool_calls
        signature = _without(signature, (tool_field, tools_name))
    elif tool_field is not None:
        _drop_tool_params(sent)
        tool_field = None
    signature, native_reasoning = _plan_reasoning(signature, reasoning, sent, capabilities)
    if sent.get("parallel_tool_calls") is not None:
        sent.setdefault("tool_choice", "auto")
    return CallPlan(
        signature=signature,
        params=sent,
        tool_calls_field=tool_field,
        reasoning_fields=native_reasoning,
    )


def _plain_plan(signature: type[Signature]) -> CallPlan:
    """The plan of a call with no params and no native features, cached on the signature."""
    plan: CallPlan | None = signature._cache.get(_PLAIN_PLAN)
    if plan is None:
        plan = signature._cache[_PLAIN_PLAN] = CallPlan(
            signature=signature, params=MappingProxyType({})
        )
    return plan


def _drop_tool_params(params: dict[str, Any]) -> None:
    for key in _TOOL_PARAMS:
        params.pop(key, None)


def _plan_reasoning(
    signature: type[Signature],
    names: tuple[str, ...],
    params: dict[str, Any],
    capabilities: LMCapabilities,
) -> tuple[type[Signature], tuple[str, ...]]:
    if not names or not capabilities.reasoning:
        return signature, ()
    effort = params.get("reasoning_effort", "low")
    if effort is None:  # the caller turned native reasoning off
        return signature, ()
    params["reasoning_effort"] = effort
    return _without(signature, names), names


def _without(signature: type[Signature], names: tuple[str, ...]) -> type[Signature]:
    """The signature minus `names`, cached on it so its prompt parts stay cached too."""
    key = ("without", names)
    reduced = signature._cache.get(key)
    if reduced is None:
        reduced = signature
        for name in names:
            reduced = reduced.delete(name)
        signature._cache[key] = reduced
    return reduced


def finish_values(
    plan: CallPlan,
    signature: type[Signature],
    values: dict[str, Any],
    response: LMResponse,
    index: int,
) -> dict[str, Any]:
    """A parsed completion completed: missing optional outputs None, native fields filled.

    Keys come in DSPy's order: the parsed and optional outputs in signature order, then
    the ones answered natively. `values` itself is returned when it is complete already,
    so a caller that changes the result copies it first (a parse callback may hold it).
    """
    outputs = signature._outputs
    if (index or (plan.tool_calls_field is None and response.reasoning is None)) and list(
        values
    ) == list(outputs):
        return values  # every output, in order, nothing native to fill: already complete
    done: dict[str, Any] = {}
    for name, field in outputs.items():
        if name in values:
            done[name] = values[name]
        elif allows_none(field.annotation):
            done[name] = None
    for name in outputs:
        done.setdefault(name, None)
    if index != 0:  # vendors report tool calls and reasoning of the first choice
        return done
    if plan.tool_calls_field is not None and response.tool_calls:
        done[plan.tool_calls_field] = ToolCalls(
            {"id": c.id, "name": c.name, "args": dict(c.arguments)} for c in response.tool_calls
        )
    if response.reasoning is not None:
        for name, field in signature._outputs.items():
            if field.annotation is Reasoning:
                done[name] = Reasoning(response.reasoning)
    return done
