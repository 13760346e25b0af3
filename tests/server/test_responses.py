"""Tests for lmvisor.server.responses: JSON answers that never fail to render."""

from __future__ import annotations

import orjson

from lmvisor.server.responses import dump_json, utf8_safe


class TestDumpJson:
    def test_lone_surrogates_are_written_as_their_escape(self) -> None:
        """A lone surrogate in a value, a key or a str()-ed object is written as its escape
        (orjson refuses it, and the answer was a 500 for every caller of a listing)."""

        class Odd:
            def __str__(self) -> str:
                return "odd\ud800"

        rendered = orjson.loads(dump_json({"k\udfff": ["x\ud800", Odd()], "n": 1}))
        assert rendered == {"k\\udfff": ["x\\ud800", "odd\\ud800"], "n": 1}

    def test_text_that_is_utf8_is_left_as_it_is(self) -> None:
        """Valid text, a surrogate pair's character included, passes unchanged."""
        assert utf8_safe("héllo \U0001f600") == "héllo \U0001f600"
        assert orjson.loads(dump_json({"a": "\U0001f600"})) == {"a": "\U0001f600"}
