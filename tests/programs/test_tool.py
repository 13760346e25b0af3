"""Tool: schema from type hints, argument validation, sync and async functions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pydantic
import pytest

from lmvisor.programs.tool import Tool
from lmvisor.runtime.deadline import deadline
from lmvisor.runtime.errors import DeadlineExceeded


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


def configure(name: str, **options: int) -> str:
    return f"{name} {sorted(options.items())}"


def lookup(city: str) -> str:
    return city


async def stuck(city: str) -> str:
    await asyncio.sleep(3600)
    return city


class Node(pydantic.BaseModel):
    value: int
    kids: list[Node] = []


def count_nodes(tree: Node) -> int:
    return 1 + sum(count_nodes(kid) for kid in tree.kids)


class _Sentinel:
    def __repr__(self) -> str:
        return "<sentinel>"


_SENTINEL = _Sentinel()


class TestCarelessTools:
    async def test_kwargs_receive_unnamed_arguments(self) -> None:
        """A function taking **kwargs gets the arguments it does not name, as in DSPy."""
        tool = Tool(configure)
        assert tool.args == {"name": {"type": "string"}}
        assert await tool(name="db", size=3, port=5) == "db [('port', 5), ('size', 3)]"

    async def test_many_bad_arguments_make_a_short_message(self) -> None:
        """10,000 unknown arguments name the first five problems and count the rest."""
        args = {f"a{i}": i for i in range(10_000)}
        with pytest.raises(ValueError) as caught:
            await Tool(lookup)(**args)
        assert str(caught.value) == (
            "invalid arguments for tool 'lookup': city: Field required; "
            "a0: Extra inputs are not permitted; a1: Extra inputs are not permitted; "
            "a2: Extra inputs are not permitted; a3: Extra inputs are not permitted; "
            "and 9996 more"
        )

    def test_generator_functions_are_refused(self) -> None:
        """A generator (sync or async) is no tool: it would hand the LM a generator object."""

        async def pages(url: str) -> AsyncIterator[str]:
            yield url

        def lines(path: str) -> Iterator[str]:
            yield path

        for func in (pages, lines):
            with pytest.raises(TypeError, match=r"^tool '(pages|lines)' is a generator function"):
                Tool(func)

    async def test_hung_tool_ends_at_the_deadline(self) -> None:
        """An async tool still running at the call's deadline is cancelled, with a typed error."""
        with (
            deadline(0.01),
            pytest.raises(DeadlineExceeded, match=r"^deadline exceeded during tool 'stuck'$"),
        ):
            await Tool(stuck)(city="x")

    async def test_own_timeout_is_not_the_deadline(self) -> None:
        """A tool's own TimeoutError under a distant deadline stays the tool's error."""

        async def impatient() -> str:
            raise TimeoutError("upstream slow")

        with deadline(3600), pytest.raises(TimeoutError, match=r"^upstream slow$"):
            await Tool(impatient)()

    def test_recursive_model_schema_resolves(self) -> None:
        """A recursive model's remaining $ref resolves against the parameters' own $defs."""
        tool = Tool(count_nodes)
        params = tool.to_openai()["function"]["parameters"]
        assert tool.args["tree"]["properties"]["kids"]["items"] == {"$ref": "#/$defs/Node"}
        assert params["$defs"]["Node"]["properties"]["kids"]["items"] == {"$ref": "#/$defs/Node"}
        assert "$defs" not in Tool(plot).parameters

    async def test_recursive_model_argument(self) -> None:
        """A recursive model argument is validated, nested levels included."""
        tree = {"value": 1, "kids": [{"value": 2, "kids": [{"value": 3}]}]}
        assert await Tool(count_nodes)(tree=tree) == 3

    def test_default_json_cannot_show(self) -> None:
        """A default no JSON can show is kept in `args` (the prompt shows it as DSPy's does)
        and goes to the wire by its repr, so the tools still serialize."""

        def pick(choice: Any = _SENTINEL) -> str:
            return str(choice)

        tool = Tool(pick)
        assert tool.args == {"choice": {"default": _SENTINEL}}
        assert "It takes arguments {'choice': {'default': <sentinel>}}." in str(tool)
        sent = json.loads(json.dumps(tool.to_openai()))
        assert sent["function"]["parameters"]["properties"] == {"choice": {"default": "<sentinel>"}}
