"""Tool: schema from type hints, argument validation, sync and async functions."""

from __future__ import annotations

import pydantic
import pytest

from lmvisor.programs.tool import Tool


def add(a: int, b: int = 2) -> int:
    """Add two numbers."""
    return a + b


class Point(pydantic.BaseModel):
    x: int


def plot(point: Point) -> str:
    return str(point.x)


async def fetch(url: str) -> str:
    """Fetch a page."""
    return f"page {url}"


class TestTool:
    def test_schema(self) -> None:
        """Name, description and argument schema come from the function."""
        tool = Tool(add)
        assert tool.name == "add"
        assert tool.desc == "Add two numbers."
        assert tool.args == {"a": {"type": "integer"}, "b": {"type": "integer", "default": 2}}
        assert tool.required == ["a"]
        assert tool.to_openai()["function"]["parameters"]["required"] == ["a"]

    async def test_call_coerces(self) -> None:
        """Arguments are validated and coerced before the call."""
        assert await Tool(add)(a="3") == 5

    async def test_async_function(self) -> None:
        """Async functions are awaited."""
        assert await Tool(fetch)(url="x") == "page x"

    async def test_bad_arguments(self) -> None:
        """Missing, unknown or mistyped arguments are a ValueError naming the tool."""
        with pytest.raises(ValueError, match=r"^invalid arguments for tool 'add'"):
            await Tool(add)(b=1)
        with pytest.raises(ValueError, match=r"^invalid arguments for tool 'add'"):
            await Tool(add)(a=1, c=2)
        with pytest.raises(ValueError, match=r"^invalid arguments for tool 'add'"):
            await Tool(add)(a="x")

    def test_overrides_and_str(self) -> None:
        """name/desc can be overridden; str() describes the tool for prompts."""
        tool = Tool(add, name="plus", desc="Sum.")
        assert str(tool).startswith(
            "plus, whose description is <desc>Sum.</desc>. It takes arguments"
        )

    def test_model_argument_schema_is_inlined(self) -> None:
        """A pydantic-model argument's schema is inlined (no dangling $ref), as in DSPy."""

        assert Tool(plot).args == {
            "point": {
                "properties": {"x": {"title": "X", "type": "integer"}},
                "required": ["x"],
                "title": "Point",
                "type": "object",
            }
        }

    def test_str_is_one_line(self) -> None:
        """str() keeps a multi-line description on one line, as DSPy's prompt does."""
        tool = Tool(add, desc="Add.\nTwo numbers.")
        assert str(tool) == (
            "add, whose description is <desc>Add.  Two numbers.</desc>. "
            "It takes arguments {'a': {'type': 'integer'}, 'b': {'type': 'integer', 'default': 2}}."
        )

    def test_not_callable(self) -> None:
        """A non-callable is a TypeError."""
        with pytest.raises(TypeError, match=r"^func must be callable$"):
            Tool(3)  # type: ignore[arg-type]
