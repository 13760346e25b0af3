"""Example and Prediction: inputs/labels, copies, completions and usage."""

from __future__ import annotations

import pytest

from lmvisor.programs.example import Completions, Example, Prediction
from lmvisor.programs.lm import Usage


class TestExample:
    def test_access(self) -> None:
        """Values read as attributes and items; unknown names raise AttributeError."""
        ex = Example(question="q", answer="a")
        assert ex.question == "q"
        assert ex["answer"] == "a"
        assert "question" in ex
        assert len(ex) == 2
        with pytest.raises(AttributeError, match="has no field 'nope'"):
            _ = ex.nope

    def test_with_inputs_inputs_labels(self) -> None:
        """with_inputs marks inputs; inputs() and labels() split the record."""
        ex = Example(question="q", context="c", answer="a").with_inputs("question", "context")
        assert dict(ex.inputs().items()) == {"question": "q", "context": "c"}
        assert dict(ex.labels().items()) == {"answer": "a"}

    def test_inputs_requires_with_inputs(self) -> None:
        """inputs() without with_inputs is a ValueError."""
        with pytest.raises(
            ValueError, match=r"^inputs\(\) needs with_inputs\(\.\.\.\) to be called first$"
        ):
            Example(q="x").inputs()

    def test_copy_is_independent(self) -> None:
        """copy() applies changes without touching the original, keeping input keys."""
        ex = Example(q="x").with_inputs("q")
        new = ex.copy(q="y")
        assert ex.q == "x"
        assert new.q == "y"
        assert new.input_keys == frozenset({"q"})
        assert ex.without("q").keys() == []

    def test_deepcopy(self) -> None:
        """A deep copy shares no values and keeps input keys; a Prediction keeps its usage."""
        import copy

        ex = Example(tags=[1]).with_inputs("tags")
        dup = copy.deepcopy(ex)
        dup.tags.append(2)
        assert ex.tags == [1]
        assert dup.input_keys == frozenset({"tags"})
        pred = Prediction(a=1)
        pred.set_usage(Usage(total_tokens=4))
        assert copy.deepcopy(pred).usage.total_tokens == 4

    def test_reserved_attributes(self) -> None:
        """Names starting with an underscore cannot be set."""
        with pytest.raises(AttributeError, match="cannot set reserved attribute '_x'"):
            Example()._x = 1

    def test_equality_and_dict(self) -> None:
        """Examples with the same values and inputs are equal; to_dict gives plain data."""
        assert Example(a=1) == Example({"a": 1})
        assert Example(a=1).with_inputs("a") != Example(a=1)
        assert Example(a=[Example(b=2)]).to_dict() == {"a": [{"b": 2}]}


class TestPrediction:
    def test_from_completions(self) -> None:
        """The first completion gives the values; all are in `completions`."""
        pred = Prediction.from_completions([{"a": "1"}, {"a": "2"}], usage=Usage(total_tokens=3))
        assert pred.a == "1"
        assert pred.completions.a == ["1", "2"]
        assert pred.completions[1] == {"a": "2"}
        assert len(pred.completions) == 2
        assert pred.usage.total_tokens == 3
        assert pred.get_lm_usage()["total_tokens"] == 3

    def test_empty_completions(self) -> None:
        """No completions is a ValueError."""
        with pytest.raises(ValueError, match=r"^completions must not be empty$"):
            Prediction.from_completions([])

    def test_completions_unknown_field(self) -> None:
        """Asking completions for an unknown field raises AttributeError."""
        with pytest.raises(AttributeError, match="completions have no field 'x'"):
            _ = Completions([{"a": 1}]).x

    def test_copy_keeps_usage(self) -> None:
        """A copied prediction keeps its usage and completions."""
        pred = Prediction(a=1)
        pred.set_usage(Usage(total_tokens=5), cost=0.5)
        new = pred.copy(a=2)
        assert isinstance(new, Prediction)
        assert new.usage.total_tokens == 5
        assert new.cost == 0.5
