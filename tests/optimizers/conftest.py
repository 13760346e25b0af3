"""Shared data for the optimizer tests."""

from __future__ import annotations

import pytest

from lmvisor.programs import Example


@pytest.fixture
def trainset() -> list[Example]:
    """50 arithmetic questions with their answers, `question` marked as the input."""
    return [
        Example(question=f"What is {i} plus {i}?", answer=str(2 * i)).with_inputs("question")
        for i in range(50)
    ]
