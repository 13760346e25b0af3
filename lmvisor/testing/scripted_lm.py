"""`ScriptedLM`: an in-process LM for tests and benchmarks, satisfying the `LM` protocol.

It answers from a script — a list of replies consumed in order, or a callable of the
request — or, with no script, generates a deterministic reply in the format the request
asks for: ChatAdapter markers for the output fields named in the system message, or a
JSON object when `response_format` is set. Every request is recorded, and each call
reports usage (about one token per four characters).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, final

from lmvisor.programs.lm import (
    LMCapabilities,
    LMDelta,
    LMDone,
    LMRequest,
    LMResponse,
    LMStreamItem,
    Usage,
)

__all__ = ["Reply", "ScriptExhausted", "ScriptedLM", "generate_reply"]

Reply = str | list[str] | LMResponse | BaseException
"""One scripted answer: a text, `n` texts, a full response, or an error to raise."""

_Script = Sequence[Reply] | Callable[[LMRequest], Reply | Awaitable[Reply]]

_OUTPUT_LINE = re.compile(r"^\d+\. `(\w+)` \((.*?)\):", re.MULTILINE)
_FIRST_SECTION = re.compile(r"\[\[ ## \w+ ## \]\]\n(.*?)(?:\n\n|\Z)", re.DOTALL)


class ScriptExhausted(AssertionError):
    """The script list ran out: the code under test made more LM calls than scripted."""


@final
class ScriptedLM:
    """A deterministic LM living in the test's process.

    Args:
        script: replies in call order, or a (sync or async) callable of the request;
            None generates replies from the request itself.
        model: the model name requests are built with.
        capabilities: what the LM claims to support (json_schema decides JSONAdapter's
            response_format).
        chunk: the characters per streamed delta.

    Attributes:
        requests: every request received, in order.
        responses: every response returned, in order.
    """

    def __init__(
        self,
        script: _Script | None = None,
        *,
        model: str = "scripted/lm",
        capabilities: LMCapabilities | None = None,
        chunk: int = 16,
    ) -> None:
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        self._chunk = chunk
        self._model = model
        self._capabilities = capabilities or LMCapabilities()
        self._script = script
        self._position = 0
        self.requests: list[LMRequest] = []
        self.responses: list[LMResponse] = []

    def __repr__(self) -> str:
        return f"ScriptedLM(model={self._model!r}, calls={len(self.requests)})"

    @property
    def model(self) -> str:
        """The model name requests are built with."""
        return self._model

    @property
    def capabilities(self) -> LMCapabilities:
        """What this LM claims to support."""
        return self._capabilities

    @property
    def calls(self) -> int:
        """How many requests were received."""
        return len(self.requests)

    def total_usage(self) -> Usage:
        """Usage summed over every call."""
        total = Usage()
        for response in self.responses:
            total = total + response.usage
        return total

    async def complete(self, request: LMRequest) -> LMResponse:
        """Answer from the script (or generate); raise a scripted exception.

        Raises:
            ScriptExhausted: the script list has no reply left.
            BaseException: whatever exception the script holds for this call.
        """
        self.requests.append(request)
        reply = await self._next_reply(request)
        if isinstance(reply, BaseException):
            raise reply
        response = reply if isinstance(reply, LMResponse) else self._response(request, reply)
        self.responses.append(response)
        return response

    async def stream(self, request: LMRequest) -> AsyncIterator[LMStreamItem]:
        """The reply in chunks of `chunk` characters per choice, then `LMDone`."""
        response = await self.complete(request)
        size = self._chunk
        if response.reasoning:
            for start in range(0, len(response.reasoning), size):
                yield LMDelta(text=response.reasoning[start : start + size], reasoning=True)
        for index, text in enumerate(response.outputs):
            for start in range(0, len(text), size):
                yield LMDelta(text=text[start : start + size], index=index)
        yield LMDone(response=response)

    async def _next_reply(self, request: LMRequest) -> Reply:
        script = self._script
        if script is None:
            return generate_reply(request)
        if callable(script):
            reply = script(request)
            if inspect.isawaitable(reply):
                reply = await reply
            return reply
        if self._position >= len(script):
            raise ScriptExhausted(f"ScriptedLM script exhausted after {len(script)} replies")
        reply = script[self._position]
        self._position += 1
        return reply

    def _response(self, request: LMRequest, reply: str | list[str]) -> LMResponse:
        outputs = [reply] if isinstance(reply, str) else list(reply)
        prompt_chars = sum(len(str(m.get("content", ""))) for m in request.messages)
        completion_chars = sum(len(o) for o in outputs)
        prompt, completion = prompt_chars // 4 + 1, completion_chars // 4 + 1
        usage = Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )
        return LMResponse(
            outputs=outputs, usage=usage, finish_reason="stop", model=self._model, cached=False
        )


def generate_reply(request: LMRequest) -> list[str]:
    """Deterministic replies (one per `n`) in the format the request asks for."""
    system = next((m for m in request.messages if m.get("role") == "system"), None)
    fields = _output_fields(str(system.get("content", "")) if system else "")
    last_user = next((m for m in reversed(request.messages) if m.get("role") == "user"), None)
    user_text = str(last_user.get("content", "")) if last_user else ""
    match = _FIRST_SECTION.search(user_text)
    about = match.group(1) if match else user_text[:40]
    as_json = "response_format" in request.params
    n = int(request.params.get("n", 1) or 1)
    replies = []
    for index in range(n):
        seed = hashlib.sha256(f"{index}\x00{user_text}".encode()).hexdigest()
        values = {name: _value(name, type_text, seed, about) for name, type_text in fields}
        replies.append(_render(values, as_json))
    return replies


def _output_fields(system: str) -> list[tuple[str, str]]:
    _, _, rest = system.partition("Your output fields are:\n")
    block = rest.split("\nAll interactions will be structured", 1)[0]
    return _OUTPUT_LINE.findall(block)


def _value(name: str, type_text: str, seed: str, about: str) -> Any:
    number = int(seed[:8], 16)
    if type_text == "float":
        return round(0.5 + (number % 50) / 100, 2)
    if type_text == "int":
        return number % 100
    if type_text == "bool":
        return number % 2 == 0
    if type_text.startswith("Literal["):
        options = re.findall(r"'([^']*)'|\"([^\"]*)\"", type_text)
        return next((a or b for a, b in options), "")
    if type_text.startswith("list["):
        return [f"{name} {seed[:8]}"]
    if type_text.startswith("dict["):
        return {}
    return f"{name} {seed[:8]} re: {about}"


def _render(values: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(values, ensure_ascii=False)
    parts = []
    for name, value in values.items():
        text = json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value
        parts.append(f"[[ ## {name} ## ]]\n{text}")
    parts.append("[[ ## completed ## ]]")
    return "\n\n".join(parts)
