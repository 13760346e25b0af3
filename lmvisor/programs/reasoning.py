"""`Reasoning`: a str-like output type carrying an LM's reasoning, as DSPy's.

With an LM that reasons natively (`LMCapabilities.reasoning`), an adapter asks for
reasoning with `reasoning_effort` (default "low"), leaves the field out of the prompt and
fills it from the reasoning content the vendor returns. Otherwise the field is an ordinary
text output, named "str" in prompts as DSPy names it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, ClassVar, Self, final

from lmvisor.programs._type_docs import REASONING_DESCRIPTION
from lmvisor.programs.custom_types import Type

__all__ = ["Reasoning"]


@final
class Reasoning(Type):
    """Reasoning text; compares equal to a str of the same content and acts like one."""

    __slots__ = ("content",)
    __prompt_name__: ClassVar[str | None] = "str"

    def __init__(self, content: str) -> None:
        if not isinstance(content, str):
            raise TypeError("Reasoning content must be a str")
        self.content = content

    def __repr__(self) -> str:
        return repr(self.content)

    def __str__(self) -> str:
        return self.content

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reasoning):
            return self.content == other.content
        if isinstance(other, str):
            return self.content == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.content)

    def __len__(self) -> int:
        return len(self.content)

    def __iter__(self) -> Iterator[str]:
        return iter(self.content)

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and item in self.content

    def __add__(self, other: object) -> Any:
        if isinstance(other, Reasoning):
            return Reasoning(self.content + other.content)
        if isinstance(other, str):
            return self.content + other
        return NotImplemented

    def __getattr__(self, name: str) -> Any:
        # str's methods (strip, split, lower...) act on the content, as in DSPy.
        if not name.startswith("_") and hasattr(str, name):
            return getattr(self.content, name)
        raise AttributeError(f"'Reasoning' object has no attribute {name!r}")

    def format(self) -> str:
        """The reasoning text itself."""
        return self.content

    def to_dict(self) -> dict[str, str]:
        """`{"content": ...}`, the JSON form."""
        return {"content": self.content}

    @classmethod
    def validate(cls, value: Any) -> Self:
        """From a str, `{"content": str}` or a Reasoning.

        Raises:
            ValueError: none of those.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, dict) and isinstance(value.get("content"), str):
            return cls(value["content"])
        raise ValueError(f"not a valid Reasoning value: {value!r}"[:200])

    @classmethod
    def pydantic_model(cls) -> Any:
        """The JSON shape `{"content": str}`, described as DSPy describes it."""
        return _model()


@functools.cache
def _model() -> Any:
    import pydantic

    return pydantic.create_model("Reasoning", __doc__=REASONING_DESCRIPTION, content=(str, ...))
