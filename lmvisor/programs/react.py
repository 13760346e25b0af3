"""`ReAct`: an agent loop — think, pick a tool and its arguments, observe — then extract.

Each step's Predict sees the trajectory so far and names the next tool (or `finish`).
A tool's error goes back to the LM as the step's observation. After `finish` or
`max_iters` steps, a ChainOfThought extracts the signature's outputs from the trajectory.

With `native_tool_calls=True` the step sends the tools in the vendor's own format and
the LM answers with native tool calls (several at once, if it likes); a step without
any call finishes. Without it, prompts and parsing are DSPy 3.4.1's, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

from lmvisor.programs.adapters._values import format_field_value
from lmvisor.programs.adapters.chat import ChatAdapter
from lmvisor.programs.callbacks import Callback
from lmvisor.programs.chain_of_thought import ChainOfThought
from lmvisor.programs.errors import AdapterParseError
from lmvisor.programs.example import Prediction
from lmvisor.programs.fields import Field, InputField, OutputField
from lmvisor.programs.module import Module
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import current_settings
from lmvisor.programs.signature import Signature, ensure_signature, make_signature
from lmvisor.programs.tool import Tool
from lmvisor.programs.tool_calls import ToolCalls
from lmvisor.runtime.deadline import deadline_expired
from lmvisor.runtime.errors import DeadlineExceeded, LmvisorError

__all__ = ["ReAct"]


def _finish() -> str:
    return "Completed."


class ReAct(Module):
    """Reason and act with tools until `finish`, then extract the outputs.

    Args:
        signature: the task.
        tools: Tools or plain functions (wrapped in `Tool`).
        max_iters: the most tool steps before extraction.
        native_tool_calls: let the LM call tools natively (OpenAI `tools`, Anthropic
            `tool_use`) instead of naming them in text.
        callbacks: hooks for this module's calls.

    Raises:
        ValueError: max_iters < 1, or two tools share a name (or one is named "finish").
    """

    def __init__(
        self,
        signature: str | type[Signature],
        tools: Sequence[Tool | Callable[..., Any]],
        max_iters: int = 10,
        *,
        native_tool_calls: bool = False,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        super().__init__(callbacks=callbacks)
        if max_iters < 1:
            raise ValueError("max_iters must be >= 1")
        self.signature = ensure_signature(signature)
        self.max_iters = max_iters
        self.native_tool_calls = native_tool_calls
        self.tools = _tool_table(tools, self.signature)
        if native_tool_calls:
            self.react = Predict(_native_signature(self.signature))
            self.react.adapter = ChatAdapter(use_native_function_calling=True)
        else:
            self.react = Predict(_react_signature(self.signature, self.tools))
        extract = make_signature(
            {**{n: _spec(f) for n, f in self.signature.fields.items()}},
            self.signature.instructions,
        ).append("trajectory", InputField(), str)
        self.extract = ChainOfThought(extract)

    async def forward(self, **inputs: Any) -> Prediction:
        """Run the loop, then extract; the prediction also carries `trajectory`.

        As DSPy, a prompt over the model's context window (the LM raises an error coded
        `provider_context_window_exceeded`) drops the oldest tool call from the trajectory
        and is sent again, three tries at most; a step that still does not fit ends the
        loop, and the extraction's error is raised.

        Raises:
            AdapterParseError: the extraction's completion does not parse.
            ValueError: the `max_iters` input is not an int >= 0.
            DeadlineExceeded: a tool outlived the call's deadline.
            LmvisorError: whatever the LM raises.
        """
        max_iters = _max_iters(inputs.pop("max_iters", self.max_iters))
        trajectory: dict[str, Any] = {}
        for step in range(max_iters):
            try:
                calls, thought = await self._next(inputs, trajectory)
            except AdapterParseError:
                break  # the LM stopped following the format: extract from what we have
            except LmvisorError as exc:
                if exc.code != _CONTEXT_WINDOW:
                    raise
                break  # even the shortest trajectory does not fit: extract from it
            for i, (name, args) in enumerate(calls):
                key = f"{step}" if len(calls) == 1 else f"{step}_{i}"
                trajectory[f"thought_{key}"] = thought
                trajectory[f"tool_name_{key}"] = name
                trajectory[f"tool_args_{key}"] = args
                trajectory[f"observation_{key}"] = await self._observe(name, args)
            if any(name == "finish" for name, _ in calls):
                break
        result = await _fitting(self.extract, inputs, trajectory)
        return Prediction(trajectory=trajectory, **dict(result.items()))

    async def _next(
        self, inputs: dict[str, Any], trajectory: dict[str, Any]
    ) -> tuple[list[tuple[str, Any]], Any]:
        """The step's tool calls (name, args) and its thought."""
        if not self.native_tool_calls:
            pred = await _fitting(self.react, inputs, trajectory)
            return [(pred.next_tool_name, pred.next_tool_args)], pred.next_thought
        tools = list(self.tools.values())
        pred = await _fitting(self.react, {**inputs, "tools": tools}, trajectory)
        calls = pred.next_tool_calls
        if not calls:
            return [("finish", {})], pred.next_thought
        return [(c.name, c.args) for c in calls.tool_calls], pred.next_thought

    async def _observe(self, name: str, args: Any) -> Any:
        """The tool's result, or the error the LM reads instead (a result the prompt cannot
        show, like an object whose `str` raises, is such an error, not a crash of the loop).
        """
        tool = self.tools.get(name)
        if tool is None:
            return f"Execution error in {name}: no such tool"
        try:
            result = await tool(**(args if isinstance(args, dict) else {}))
        except Exception as exc:
            if isinstance(exc, DeadlineExceeded) and deadline_expired():
                raise  # the caller's budget is spent: the run ends, the LM is not asked again
            return f"Execution error in {name}: {_describe(exc)}"  # a tool's own deadline too
        if type(result) is not str:
            try:
                format_field_value(_OBSERVATION, result)
            except Exception as exc:
                return f"Execution error in {name}: its result cannot be shown: {_describe(exc)}"
        return result


_OBSERVATION: Final = Field(name="observation", kind="input")
"""A trajectory entry as the trajectory's signature declares it (a text input)."""


def _describe(exc: BaseException) -> str:
    """`Type: message`, even for an exception whose `str` itself raises."""
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return f"{type(exc).__name__}: <message cannot be shown>"


_CONTEXT_WINDOW: Final = "provider_context_window_exceeded"
"""The code of the LM's error for a prompt over the model's window (the providers layer's
`ContextWindowExceeded`, matched by code: programs never import providers)."""

_TRUNCATIONS: Final = 3
"""Tries of a step before its context-window error stands, as DSPy."""

_STEP_KEYS: Final = 4
"""Keys one tool call adds to the trajectory: thought, tool name, tool args, observation."""


async def _fitting(module: Module, inputs: dict[str, Any], trajectory: dict[str, Any]) -> Any:
    """Call `module` with the trajectory, dropping its oldest tool call (in place, as DSPy)
    each time the prompt is over the context window.

    Raises:
        LmvisorError: the context-window error, after three tries or once a single
            tool call is left; any other error of the call at once.
    """
    last: LmvisorError | None = None
    for _ in range(_TRUNCATIONS):
        try:
            return await module(**inputs, trajectory=_format_trajectory(trajectory))
        except LmvisorError as exc:
            # With one tool call left there is nothing to drop: DSPy gives up there too.
            if exc.code != _CONTEXT_WINDOW or len(trajectory) <= _STEP_KEYS:
                raise
            last = exc
        # As DSPy: every failure drops a call, the third's too, before giving up.
        for key in list(trajectory)[:_STEP_KEYS]:
            del trajectory[key]
    assert last is not None
    raise last


def _max_iters(value: Any) -> int:
    """The per-call `max_iters` input, checked.

    Raises:
        ValueError: not an int >= 0.
    """
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # an input given on a command line or in a form
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"max_iters must be an int >= 0, got {value!r:.50}")
    return value


def _spec(field: Field) -> tuple[Any, Any]:
    maker = InputField if field.kind == "input" else OutputField
    return (field.annotation, maker(desc=field.desc, prefix=field.prefix))


def _tool_table(
    tools: Sequence[Tool | Callable[..., Any]], signature: type[Signature]
) -> dict[str, Tool]:
    table: dict[str, Tool] = {}
    for item in tools:
        tool = item if isinstance(item, Tool) else Tool(item)
        if tool.name in table or tool.name == "finish":
            raise ValueError(f"duplicate tool name {tool.name!r}")
        table[tool.name] = tool
    outputs = ", ".join(f"`{k}`" for k in signature.output_fields)
    table["finish"] = Tool(
        _finish,
        name="finish",
        desc=(
            "Marks the task as complete. That is, signals that all information for "
            f"producing the outputs, i.e. {outputs}, are now available to be extracted."
        ),
    )
    return table


def _react_signature(signature: type[Signature], tools: dict[str, Tool]) -> type[Signature]:
    inputs = ", ".join(f"`{k}`" for k in signature.input_fields)
    outputs = ", ".join(f"`{k}`" for k in signature.output_fields)
    lines = [f"{signature.instructions}\n"] if signature.instructions else []
    lines += [
        f"You are an Agent. In each episode, you will be given the fields {inputs} as input. "
        "And you can see your past trajectory so far.",
        "Your goal is to use one or more of the supplied tools to collect any necessary "
        f"information for producing {outputs}.\n",
        "To do this, you will interleave next_thought, next_tool_name, and next_tool_args "
        "in each turn, and also when finishing the task.",
        "After each tool call, you receive a resulting observation, which gets appended "
        "to your trajectory.\n",
        "When writing next_thought, you may reason about the current situation and plan "
        "for future steps.",
        "When selecting the next_tool_name and its next_tool_args, the tool must be one of:\n",
        *(f"({i + 1}) {tool}" for i, tool in enumerate(tools.values())),
        "When providing `next_tool_args`, the value inside the field must be in JSON format",
    ]
    base = make_signature(
        {n: _spec(f) for n, f in signature.input_fields.items()}
        | {"next_thought": (str, OutputField())},
        "\n".join(lines),
    )
    names = Literal.__getitem__(tuple(tools))
    return (
        base.append("trajectory", InputField(), str)
        .append("next_tool_name", OutputField(), names)
        .append("next_tool_args", OutputField(), dict[str, Any])
    )


def _native_signature(signature: type[Signature]) -> type[Signature]:
    """The step's signature when the LM calls tools natively: the tools travel in the
    request, so the instructions do not list them.
    """
    inputs = ", ".join(f"`{k}`" for k in signature.input_fields)
    outputs = ", ".join(f"`{k}`" for k in signature.output_fields)
    lines = [f"{signature.instructions}\n"] if signature.instructions else []
    lines += [
        f"You are an Agent. In each episode, you will be given the fields {inputs} as input. "
        "And you can see your past trajectory so far.",
        "Your goal is to call one or more of the supplied tools to collect any necessary "
        f"information for producing {outputs}.\n",
        "Write your next_thought, and call the tools you need. When all information for "
        f"producing {outputs} is available, call `finish` (or call no tool).",
    ]
    return (
        make_signature(
            {n: _spec(f) for n, f in signature.input_fields.items()}
            | {"next_thought": (str, OutputField())},
            "\n".join(lines),
        )
        .append("trajectory", InputField(), str)
        .append("tools", InputField(), list[Tool])
        .append("next_tool_calls", OutputField(), ToolCalls)
    )


def _format_trajectory(trajectory: dict[str, Any]) -> str:
    """The steps so far as the current adapter writes inputs (each a text field), as DSPy."""
    adapter = current_settings().adapter or ChatAdapter()
    steps = make_signature(f"{', '.join(trajectory)} -> x")
    return adapter.format_user_message_content(steps, trajectory)
