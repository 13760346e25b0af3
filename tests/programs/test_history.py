"""History: an immutable list of earlier conversation turns."""

from __future__ import annotations

import pytest

from lmvisor.programs.fields import InputField
from lmvisor.programs.history import History
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.programs.signature import Signature
from lmvisor.testing.scripted_lm import ScriptedLM


class TestHistory:
    def test_append_is_persistent(self) -> None:
        """append returns a new history and leaves the original unchanged."""
        first = History([{"question": "a", "answer": "b"}])
        second = first.append({"question": "c", "answer": "d"})
        assert len(first) == 1
        assert len(second) == 2
        assert second.to_dict() == {
            "messages": [{"question": "a", "answer": "b"}, {"question": "c", "answer": "d"}]
        }
        assert first == History([{"question": "a", "answer": "b"}])

    def test_rejects_non_mappings(self) -> None:
        """Each message must be a mapping of field values."""
        with pytest.raises(
            TypeError, match=r"^history message 1 must be a mapping of field values$"
        ):
            History([{"a": 1}, "text"])  # type: ignore[list-item]

    async def test_history_input(self) -> None:
        """A predictor with a History input can be called with it, as chat turns."""
        sig = Signature("question -> answer").append("history", InputField(), History)
        lm = ScriptedLM()
        with context(lm=lm):
            await Predict(sig)(
                question="and now?", history=History([{"question": "hi", "answer": "yo"}])
            )
        assert [m["role"] for m in lm.requests[0].messages] == [
            "system",
            "user",
            "assistant",
            "user",
        ]
