"""`History`: earlier turns of a conversation, passed to a program as an input field.

Each message is a dict of field values (inputs and outputs of the signature without the
history field); the ChatAdapter renders each as a user turn and an assistant turn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, final

__all__ = ["History"]


@final
class History:
    """An immutable list of earlier turns, each a dict of field values."""

    __slots__ = ("_messages",)

    def __init__(self, messages: Iterable[Mapping[str, Any]] = ()) -> None:
        items = []
        for i, message in enumerate(messages):
            if not isinstance(message, Mapping):
                raise TypeError(f"history message {i} must be a mapping of field values")
            items.append(dict(message))
        self._messages = tuple(items)

    @property
    def messages(self) -> tuple[dict[str, Any], ...]:
        """The turns, oldest first."""
        return self._messages

    def append(self, message: Mapping[str, Any]) -> History:
        """A new history with `message` added at the end."""
        return History([*self._messages, message])

    def __len__(self) -> int:
        return len(self._messages)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return self._messages == other._messages

    def __hash__(self) -> int:
        return hash(repr(self._messages))

    def __repr__(self) -> str:
        return f"History({list(self._messages)!r})"

    def to_dict(self) -> dict[str, Any]:
        """{"messages": [...]}, the JSON form (as DSPy's pydantic History dumps)."""
        return {"messages": [dict(m) for m in self._messages]}
