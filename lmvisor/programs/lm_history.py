"""A bounded record of recent LM calls, per model, and `inspect_history` to print it.

A history belongs to a settings scope (see `settings`), never to the process.
"""

from __future__ import annotations

import sys
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO, final

from lmvisor.programs.lm import LMRequest, LMResponse

__all__ = ["CallHistory", "HistoryEntry", "inspect_history"]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One LM call: what was asked and what came back."""

    model: str
    request: LMRequest
    response: LMResponse


@final
class CallHistory:
    """The last `max_per_lm` calls of each of at most `max_models` models, oldest first.

    Appending is O(1); old calls fall off, and a model past `max_models` makes room by
    dropping the calls of the model least recently used (models may come from a caller's
    choice, one new name per call, and must not push out the busy model every call
    goes to). Safe to share between tasks of one event loop.

    Raises:
        ValueError: `max_per_lm` or `max_models` is below 1.
    """

    def __init__(self, max_per_lm: int = 100, *, max_models: int = 64) -> None:
        if max_per_lm < 1:
            raise ValueError("max_per_lm must be >= 1")
        if max_models < 1:
            raise ValueError("max_models must be >= 1")
        self._max = max_per_lm
        self._max_models = max_models
        # Kept in least-recently-used order: the first key is the one to evict.
        self._by_model: OrderedDict[str, deque[HistoryEntry]] = OrderedDict()
        self._all: deque[HistoryEntry] = deque(maxlen=max_per_lm)

    def __repr__(self) -> str:
        return f"CallHistory(models={sorted(self._by_model)}, max_per_lm={self._max})"

    def record(self, model: str, request: LMRequest, response: LMResponse) -> None:
        """Remember one call."""
        entry = HistoryEntry(model=model, request=request, response=response)
        by_model = self._by_model
        per = by_model.get(model)
        if per is None:
            if len(by_model) >= self._max_models:
                by_model.popitem(last=False)
            per = by_model[model] = deque(maxlen=self._max)
        else:
            by_model.move_to_end(model)
        per.append(entry)
        self._all.append(entry)

    def last(self, n: int = 1, *, model: str | None = None) -> list[HistoryEntry]:
        """The last `n` calls (of `model`, or of any model), oldest first."""
        source = self._all if model is None else self._by_model.get(model, deque())
        items = list(source)
        return items[-n:] if n > 0 else []

    def clear(self) -> None:
        """Forget every call."""
        self._by_model.clear()
        self._all.clear()

    def format(self, n: int = 1, *, model: str | None = None) -> str:
        """The last `n` calls as readable text: each message, then the response."""
        return "\n\n".join(_format_entry(e) for e in self.last(n, model=model))


def _format_entry(entry: HistoryEntry) -> str:
    lines = [f"=== {entry.model} ==="]
    params = {k: v for k, v in entry.request.params.items() if k != "response_format"}
    if params:
        lines.append(f"params: {params}")
    for message in entry.request.messages:
        lines.append(f"--- {message.get('role', '?')} ---")
        lines.append(_content_text(message.get("content")))
    for i, output in enumerate(entry.response.outputs):
        suffix = "" if len(entry.response.outputs) == 1 else f" #{i + 1}"
        lines.append(f"--- response{suffix} ---")
        lines.append(output)
    usage = entry.response.usage
    lines.append(
        f"(usage: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens"
        f"{'; cached' if entry.response.cached else ''})"
    )
    return "\n".join(lines)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content]
        return "\n".join(parts)
    return "" if content is None else str(content)


def inspect_history(n: int = 1, *, model: str | None = None, file: TextIO | None = None) -> str:
    """Print the last `n` LM calls recorded in the current settings' history; return the text.

    Outside any `configure()`/`context()` nothing is recorded, and it says so.
    """
    from lmvisor.programs.settings import current_history

    history = current_history()
    text = (
        history.format(n, model=model)
        if history is not None
        else "(no LM calls recorded here: calls are recorded under configure() or context())"
    )
    print(text, file=file if file is not None else sys.stdout)
    return text
