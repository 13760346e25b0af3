"""The LM protocol: what a program needs from a language model, and nothing more.

A program builds an `LMRequest` and awaits `LM.complete()` (or iterates
`LM.stream()`); it never knows whether a cache, a router or a vendor sits
behind. `services` provides the real implementation; `lmvisor.testing`
provides a scripted one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

__all__ = [
    "LM",
    "MAX_MODEL_NAME",
    "LMCapabilities",
    "LMDelta",
    "LMDone",
    "LMRequest",
    "LMResponse",
    "LMStreamItem",
    "ToolCall",
    "Usage",
    "model_name_problem",
]

MAX_MODEL_NAME: Final = 256
"""The most characters a model name ("vendor/model") may have where one enters: a spec's
or option's `lm`, the router, the configuration (whose own bound is this number too)."""


def model_name_problem(value: object) -> str | None:
    """Why `value` is not a usable model name ("vendor/model"); None when it is.

    The length is checked first: a 100 kB name is refused without being scanned, and
    the problem never repeats it.
    """
    if not isinstance(value, str):
        return "must be 'vendor/model'"
    if len(value) > MAX_MODEL_NAME:
        return f"must be at most {MAX_MODEL_NAME} characters, got {len(value)}"
    vendor, sep, model = value.partition("/")
    if not (vendor and sep and model) or any(c.isspace() for c in value):
        return "must be 'vendor/model'"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token counts of one or more LM calls; `+` sums them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cached_tokens": self.cached_tokens,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """One tool call the LM asked for: the tool's name and its decoded arguments."""

    id: str
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class LMRequest:
    """One chat request, vendor-neutral.

    Attributes:
        model: "vendor/model" as a user names it ("openai/gpt-4o-mini"); the
            router resolves the vendor, the provider strips the prefix.
        messages: chat messages in OpenAI's shape (`{"role", "content"}`,
            plus `tool_calls` / `tool_call_id` where used).
        params: generation options in OpenAI's names: temperature,
            max_tokens, n, stop, response_format, tools, tool_choice, ...
    """

    model: str
    messages: list[dict[str, Any]]
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class LMResponse:
    """The LM's answer: one text per choice (`n` of them), usage and cost.

    Attributes:
        outputs: the text of each choice, in order.
        usage: tokens for the whole request.
        cost: in US dollars, when the price of the model is known.
        finish_reason: of the first choice ("stop", "length", "tool_calls").
        model: the model that answered, as the vendor reported it.
        cached: True when the answer came from a cache, not the vendor.
        tool_calls: the tool calls of the first choice.
        reasoning: the first choice's reasoning content, when the vendor returns it
            (OpenAI-compatible `reasoning_content`, Anthropic `thinking` blocks).
    """

    outputs: list[str]
    usage: Usage = field(default_factory=Usage)
    cost: float | None = None
    finish_reason: str | None = None
    model: str = ""
    cached: bool = False
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LMDelta:
    """A piece of streamed text for choice `index`; `reasoning` marks reasoning content."""

    text: str
    index: int = 0
    reasoning: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LMDone:
    """The end of a stream: the whole response, usage included."""

    response: LMResponse


LMStreamItem = LMDelta | LMDone


@dataclass(frozen=True, slots=True, kw_only=True)
class LMCapabilities:
    """What an LM supports, so adapters can choose a request shape.

    Attributes:
        json_schema: strict JSON-schema structured outputs (`response_format`).
        tools: native function calling (`tools`, answered with tool calls).
        streaming: `stream()` yields text as it is generated.
        reasoning: the model reasons natively and takes `reasoning_effort`.
    """

    json_schema: bool = True
    tools: bool = True
    streaming: bool = True
    reasoning: bool = False


@runtime_checkable
class LM(Protocol):
    """A language model a program can call.

    `complete` returns one response or raises an `LmvisorError` subclass.
    `stream` yields `LMDelta`s, then exactly one `LMDone`. Cancelling the
    awaiting task cancels the request.
    """

    @property
    def model(self) -> str:
        """The model name requests are built with ("openai/gpt-4o-mini")."""
        ...

    @property
    def capabilities(self) -> LMCapabilities:
        """What the model supports."""
        ...

    async def complete(self, request: LMRequest) -> LMResponse:
        """Send one request and return the full response."""
        ...

    def stream(self, request: LMRequest) -> AsyncIterator[LMStreamItem]:
        """Send one request and yield its text as it arrives, then `LMDone`."""
        ...
