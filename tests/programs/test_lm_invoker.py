"""LMInvoker: which invokers a caller may reuse."""

from __future__ import annotations

import copy

from lmvisor.programs.callbacks import Callback
from lmvisor.programs.lm_history import CallHistory
from lmvisor.programs.lm_invoker import LMInvoker
from lmvisor.testing.scripted_lm import ScriptedLM


class TestServes:
    def test_serves_only_the_same_objects(self) -> None:
        """An invoker serves exactly the LM, hooks and history it was built with, unstreamed."""
        lm, hooks, history = ScriptedLM(), (Callback(),), CallHistory()
        invoker = LMInvoker(lm, hooks, history)
        assert invoker.serves(lm, hooks, history, None)
        assert not invoker.serves(ScriptedLM(), hooks, history, None)
        assert not invoker.serves(lm, (*hooks,), history, None)
        assert not invoker.serves(lm, hooks, None, None)
        assert not invoker.serves(lm, hooks, history, lambda delta: None)

    def test_copies_are_the_invoker_itself(self) -> None:
        """Copying an invoker (it is immutable) returns it, sharing its LM."""
        invoker = LMInvoker(ScriptedLM(), (), None)
        assert copy.copy(invoker) is invoker
        assert copy.deepcopy(invoker) is invoker
