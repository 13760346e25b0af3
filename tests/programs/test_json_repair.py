"""Tests for lmvisor.programs._json_repair: lenient JSON with its work bounded."""

from __future__ import annotations

import cProfile
import sys

import pytest

from lmvisor.programs._json_repair import repair_json
from lmvisor.programs.adapters import ChatAdapter, JSONAdapter
from lmvisor.programs.errors import AdapterParseError
from lmvisor.programs.signature import make_signature

# Unbalanced braces that cost json_repair quadratic time: 4 kB held the loop ~5 s.
HOSTILE = "{1]a" * 1000


class TestRepairJson:
    @pytest.mark.parametrize(
        ("text", "read"),
        [
            ('{"a": 1, "b": [1, 2,]}', {"a": 1, "b": [1, 2]}),
            ("{'a': True, 'b': None}", {"a": True, "b": None}),
            ('{a: "x"}', {"a": "x"}),
            ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
            ('{"answer": "cut off', {"answer": "cut off"}),
        ],
    )
    def test_slightly_broken_json_is_read_as_json_repair_reads_it(
        self, text: str, read: object
    ) -> None:
        """Text LMs write (trailing commas, Python literals, bare keys, fences, a cut-off
        answer) reads as json_repair reads it."""
        assert repair_json(text) == read

    def test_a_long_real_repair_stays_within_the_budget(self) -> None:
        """A long list of objects missing its closing bracket is repaired whole."""
        text = "[" + '{"a": 1, "b": [1, 2, 3], "c": \'x\'},' * 2000
        assert repair_json(text) == [{"a": 1, "b": [1, 2, 3], "c": "x"}] * 2000

    def test_text_that_would_cost_quadratic_time_is_given_up(self) -> None:
        """Unbalanced braces that take json_repair quadratic time are given up once the
        repair has done work linear in the text (counted, not timed)."""
        with pytest.raises(ValueError, match=r"^not JSON that can be repaired in linear time"):
            repair_json(HOSTILE)

    def test_a_huge_number_in_broken_json_is_refused_before_the_repair(self) -> None:
        """A run of 100,000 digits in text that is not valid JSON (json_repair reads it a
        character at a time, in quadratic time) is refused with a ValueError saying so."""
        with pytest.raises(ValueError, match=r"^not JSON, and holds a run of over 32768 number"):
            repair_json('{"x": ' + "9" * 100_000)

    def test_valid_json_with_a_long_number_run_reads_as_json(self) -> None:
        """Valid JSON whose compact list runs past the limit still reads, as json.loads
        reads it."""
        numbers = list(range(20_000))
        assert repair_json(str(numbers).replace(" ", "")) == numbers

    def test_a_running_profiler_is_left_in_place(self) -> None:
        """With cProfile running, a repair leaves its hook in place (and runs unbounded)."""
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            hook = sys.getprofile()
            assert repair_json("{'a': 1}") == {"a": 1}
            assert sys.getprofile() is hook
        finally:
            profiler.disable()
        assert sys.getprofile() is None


class TestAdaptersOnHostileText:
    def test_a_json_completion_is_a_parse_error(self) -> None:
        """A completion of hostile braces is an AdapterParseError from JSONAdapter."""
        with pytest.raises(AdapterParseError):
            JSONAdapter().parse(make_signature("q -> a"), HOSTILE)

    def test_a_typed_chat_field_is_a_parse_error(self) -> None:
        """A list-typed output field whose text is hostile braces is an AdapterParseError."""
        completion = f"[[ ## a ## ]]\n{HOSTILE}\n\n[[ ## completed ## ]]"
        with pytest.raises(AdapterParseError):
            ChatAdapter().parse(make_signature("q -> a: list[int]"), completion)

    def test_a_json_completion_with_a_huge_number_is_a_parse_error(self) -> None:
        """A JSONAdapter completion holding a 100,000-digit number is an AdapterParseError."""
        with pytest.raises(AdapterParseError):
            JSONAdapter().parse(make_signature("q -> a: int"), '{"a": ' + "9" * 100_000 + "}")
