"""Tests for lmvisor.runtime.correlation: scopes, parents, task isolation."""

from __future__ import annotations

import asyncio

import pytest

from lmvisor.runtime.correlation import (
    correlation_scope,
    current_correlation_id,
    current_scope,
)


class TestCorrelationScope:
    def test_outside_any_scope(self) -> None:
        """With no scope open there is no id."""
        assert current_correlation_id() is None
        assert current_scope() is None

    def test_given_and_generated_ids(self) -> None:
        """A scope uses the given id, or a fresh hex id when none is given."""
        with correlation_scope("abc") as scope:
            assert scope.id == "abc"
            assert current_correlation_id() == "abc"
        with correlation_scope() as first, correlation_scope() as second:
            assert len(first.id) == 32
            int(first.id, 16)
            assert first.id != second.id
        assert current_correlation_id() is None

    def test_nested_scopes_record_parent(self) -> None:
        """A nested scope records the enclosing scope's id as its parent, and restores it."""
        with correlation_scope("outer") as outer:
            assert outer.parent_id is None
            with correlation_scope("inner") as inner:
                assert inner.parent_id == "outer"
                assert current_scope() == inner
            assert current_correlation_id() == "outer"

    def test_scope_restored_after_error(self) -> None:
        """Leaving a scope by an exception restores the outer scope."""
        with correlation_scope("outer"):
            try:
                with correlation_scope("inner"):
                    raise RuntimeError("x")
            except RuntimeError:
                pass
            assert current_correlation_id() == "outer"

    def test_generated_marks_the_ids_lmvisor_made(self) -> None:
        """A scope is `generated` when lmvisor made its id (omitted, or said so), not when given."""
        with correlation_scope("given") as given:
            assert given.generated is False
        with correlation_scope() as made:
            assert made.generated is True
        with correlation_scope("0123456789abcdef-1", generated=True) as marked:
            assert marked.generated is True
            assert marked.id == "0123456789abcdef-1"

    def test_an_open_block_is_not_entered_again(self) -> None:
        """Entering a scope block already open raises, and leaves the open scope in force."""
        block = correlation_scope("once")
        with block:
            with pytest.raises(RuntimeError, match=r"^this correlation scope is already open$"):
                block.__enter__()
            assert current_correlation_id() == "once"
        assert current_correlation_id() is None
        with block:  # left, it opens again
            assert current_correlation_id() == "once"

    async def test_tasks_inherit_and_stay_isolated(self) -> None:
        """Tasks inherit the scope they were started in and never see each other's."""
        seen: dict[str, str | None] = {}

        async def work(name: str) -> None:
            with correlation_scope(name):
                await asyncio.sleep(0)
                seen[name] = current_correlation_id()

        async def child() -> str | None:
            return current_correlation_id()

        with correlation_scope("parent"):
            inherited = await asyncio.create_task(child())
            await asyncio.gather(work("a"), work("b"))
            assert current_correlation_id() == "parent"
        assert inherited == "parent"
        assert seen == {"a": "a", "b": "b"}
