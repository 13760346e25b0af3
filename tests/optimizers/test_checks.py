"""Settings and data sets given carelessly are refused at construction, naming the setting."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from lmvisor.optimizers import (
    COPRO,
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    Evaluate,
    LabeledFewShot,
    LocalExecutor,
    MIPROv2,
    OptimizerSettingsError,
)
from lmvisor.programs import Example, Predict, context
from lmvisor.testing import ScriptedLM


def _passes(example: Example, prediction: Any, trace: Any = None) -> bool:
    return True


def _evaluate(**kwargs: Any) -> object:
    devset = [Example(question="q").with_inputs("question")]
    return Evaluate(devset=devset, metric=_passes, **kwargs)


_BUILDERS: dict[str, Callable[..., object]] = {
    "Evaluate": _evaluate,
    "LocalExecutor": LocalExecutor,
    "LabeledFewShot": LabeledFewShot,
    "BootstrapFewShot": lambda **kw: BootstrapFewShot(_passes, **kw),
    "BootstrapFewShotWithRandomSearch": lambda **kw: BootstrapFewShotWithRandomSearch(
        _passes, **kw
    ),
    "COPRO": lambda **kw: COPRO(metric=_passes, **kw),
    "MIPROv2": lambda **kw: MIPROv2(_passes, **kw),
}

_REFUSED: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("Evaluate", {"concurrency": 2.5}, TypeError,
     r"Evaluate\.concurrency must be an int, got 2\.5"),
    ("Evaluate", {"concurrency": "4"}, TypeError,
     r"Evaluate\.concurrency must be an int, got '4'"),
    ("Evaluate", {"max_errors": True}, TypeError, r"Evaluate\.max_errors must be an int, got True"),
    ("Evaluate", {"failure_score": math.nan}, ValueError,
     r"Evaluate\.failure_score must be a finite number, got nan"),
    ("Evaluate", {"failure_score": "0"}, TypeError,
     r"Evaluate\.failure_score must be a number, got '0'"),
    ("Evaluate", {"display_table": -1}, ValueError,
     r"Evaluate\.display_table must be >= 0, got -1"),
    ("LocalExecutor", {"concurrency": 0}, ValueError,
     r"LocalExecutor\.concurrency must be >= 1, got 0"),
    ("LocalExecutor", {"failure_score": math.inf}, ValueError,
     r"LocalExecutor\.failure_score must be a finite number, got inf"),
    ("LabeledFewShot", {"k": "2"}, TypeError, r"LabeledFewShot\.k must be an int, got '2'"),
    ("BootstrapFewShot", {"max_bootstrapped_demos": -1}, ValueError,
     r"BootstrapFewShot\.max_bootstrapped_demos must be >= 0, got -1"),
    ("BootstrapFewShot", {"max_labeled_demos": 2.5}, TypeError,
     r"BootstrapFewShot\.max_labeled_demos must be an int, got 2\.5"),
    ("BootstrapFewShot", {"max_errors": 0}, ValueError,
     r"BootstrapFewShot\.max_errors must be >= 1, got 0"),
    ("BootstrapFewShot", {"metric_threshold": math.nan}, ValueError,
     r"BootstrapFewShot\.metric_threshold must be a finite number, got nan"),
    ("BootstrapFewShotWithRandomSearch", {"max_bootstrapped_demos": 0}, ValueError,
     r"BootstrapFewShotWithRandomSearch\.max_bootstrapped_demos must be >= 1, got 0"),
    ("BootstrapFewShotWithRandomSearch", {"num_candidate_programs": -1}, ValueError,
     r"BootstrapFewShotWithRandomSearch\.num_candidate_programs must be >= 0, got -1"),
    ("BootstrapFewShotWithRandomSearch", {"concurrency": 0}, ValueError,
     r"BootstrapFewShotWithRandomSearch\.concurrency must be >= 1, got 0"),
    ("BootstrapFewShotWithRandomSearch", {"stop_at_score": math.nan}, ValueError,
     r"BootstrapFewShotWithRandomSearch\.stop_at_score must be a finite number, got nan"),
    ("COPRO", {"breadth": 2.0}, TypeError, r"COPRO\.breadth must be an int, got 2\.0"),
    ("COPRO", {"concurrency": -1}, ValueError, r"COPRO\.concurrency must be >= 1, got -1"),
    ("COPRO", {"init_temperature": math.nan}, ValueError,
     r"COPRO\.init_temperature must be a finite number, got nan"),
    ("MIPROv2", {"seed": "x"}, TypeError, r"MIPROv2\.seed must be an int, got 'x'"),
    ("MIPROv2", {"seed": -1}, ValueError, r"MIPROv2\.seed must be >= 0, got -1"),
    ("MIPROv2", {"seed": 2**32}, ValueError,
     r"MIPROv2\.seed must be <= 4294967295, got 4294967296"),
    ("MIPROv2", {"auto": None, "num_candidates": 0}, ValueError,
     r"MIPROv2\.num_candidates must be >= 1, got 0"),
    ("MIPROv2", {"max_bootstrapped_demos": -1}, ValueError,
     r"MIPROv2\.max_bootstrapped_demos must be >= 0, got -1"),
    ("MIPROv2", {"max_bootstrapped_demos": 0}, ValueError,
     r"MIPROv2\.max_bootstrapped_demos must be >= 1 when max_labeled_demos > 0 "),
    ("MIPROv2", {"concurrency": 0}, ValueError, r"MIPROv2\.concurrency must be >= 1, got 0"),
]  # fmt: skip


class TestSettings:
    @pytest.mark.parametrize(("owner", "kwargs", "error", "message"), _REFUSED)
    def test_a_careless_setting_is_refused_by_name(
        self, owner: str, kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """A wrong type is a TypeError and a value out of range a ValueError, both naming
        the owner and the setting, when the object is built (not deep inside a run)."""
        with pytest.raises(error, match=rf"^{message}"):
            _BUILDERS[owner](**kwargs)

    def test_no_shuffled_candidates_need_no_bootstrapped_demos(self) -> None:
        """Random search with no shuffled candidates accepts max_bootstrapped_demos=0."""
        search = BootstrapFewShotWithRandomSearch(
            _passes, num_candidate_programs=0, max_bootstrapped_demos=0
        )
        assert search.max_bootstrapped_demos == 0

    def test_zero_shot_mipro_needs_no_bootstrapped_demos(self) -> None:
        """MIPROv2 with no demos at all (zero-shot) accepts max_bootstrapped_demos=0."""
        mipro = MIPROv2(_passes, max_bootstrapped_demos=0, max_labeled_demos=0)
        assert mipro.max_bootstrapped_demos == 0


class TestDatasets:
    @pytest.mark.parametrize(
        ("trainset", "message"),
        [
            (None, r"^trainset must be a sequence of Examples or mappings, got NoneType$"),
            ("abc", r"^trainset must be a sequence of Examples or mappings, got str$"),
            ([Example(q="x"), "row"], r"^trainset\[1\] must be an Example or a mapping, got str$"),
        ],
    )
    async def test_a_trainset_that_is_not_examples_is_refused(
        self, trainset: Any, message: str
    ) -> None:
        """None, a string, or a row that is no Example or mapping: a TypeError naming it."""
        with pytest.raises(TypeError, match=message):
            await LabeledFewShot(k=2).compile(Predict("question -> answer"), trainset=trainset)

    async def test_a_devset_that_is_not_examples_is_refused(self) -> None:
        """Evaluate names the devset and the bad row's index."""
        refused = r"^devset\[0\] must be an Example or a mapping, got int$"
        with pytest.raises(TypeError, match=refused):
            Evaluate(devset=[3], metric=_passes)  # type: ignore[list-item]
        with pytest.raises(TypeError, match=r"^devset must be a sequence of Examples or mappings"):
            Evaluate(devset=None, metric=_passes)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("optimizer", "message"),
        [
            (COPRO(metric=_passes, breadth=2, depth=1), r"^COPRO: trainset is empty$"),
            (
                BootstrapFewShotWithRandomSearch(_passes, num_candidate_programs=1),
                r"^BootstrapFewShotWithRandomSearch: trainset is empty \(and no valset given\)$",
            ),
        ],
    )
    async def test_an_empty_trainset_is_refused_before_any_lm_call(
        self, optimizer: Any, message: str
    ) -> None:
        """COPRO and random search refuse an empty trainset up front (they used to send
        their proposals first and fail inside an evaluation)."""
        lm = ScriptedLM()
        with context(lm=lm), pytest.raises(OptimizerSettingsError, match=message):
            await optimizer.compile(Predict("question -> answer"), trainset=[])
        assert lm.requests == []


class TestMIPROv2CompileArguments:
    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"num_trials": 0}, ValueError, r"MIPROv2\.num_trials must be >= 1, got 0"),
            ({"num_trials": 2.5}, TypeError, r"MIPROv2\.num_trials must be an int, got 2\.5"),
            ({"minibatch_size": 0}, ValueError, r"MIPROv2\.minibatch_size must be >= 1, got 0"),
            ({"minibatch_full_eval_steps": 0}, ValueError,
             r"MIPROv2\.minibatch_full_eval_steps must be >= 1, got 0"),
            ({"view_data_batch_size": -1}, ValueError,
             r"MIPROv2\.view_data_batch_size must be >= 1, got -1"),
            ({"seed": "x"}, TypeError, r"MIPROv2\.compile seed must be an int, got 'x'"),
        ],
    )  # fmt: skip
    async def test_a_careless_argument_is_refused_before_any_lm_call(
        self, kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """compile's counts and seed are checked first, by name (they ran zero or negative
        trials silently, or failed inside optuna)."""
        lm = ScriptedLM()
        trainset = [Example(question=f"q{i}", answer="a").with_inputs("question") for i in range(4)]
        with context(lm=lm), pytest.raises(error, match=rf"^{message}$"):
            await MIPROv2(_passes, auto=None, num_candidates=2).compile(
                Predict("question -> answer"),
                trainset=trainset,
                **{"num_trials": 2, **kwargs},
            )
        assert lm.requests == []
