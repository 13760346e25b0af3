"""Evaluate: bounded concurrency, error isolation, max_errors, deadlines, reports."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from lmvisor.optimizers import Evaluate, TooManyErrors
from lmvisor.programs import Example, Module, Prediction
from lmvisor.runtime.deadline import deadline
from lmvisor.runtime.errors import DeadlineExceeded
from lmvisor.runtime.observe.logs import capture_logs


class Echo(Module):
    """Answers with the question; fails on questions containing 'boom'; tracks concurrency."""

    def __init__(self, delay: float = 0.0, jitter: bool = False) -> None:
        super().__init__()
        self.delay, self.jitter = delay, jitter
        self.in_flight = self.peak = 0
        self.rng = random.Random(1)

    async def forward(self, **inputs: Any) -> Prediction:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.rng.random() * 0.002 if self.jitter else self.delay)
            if "boom" in inputs["question"]:
                raise RuntimeError(f"bad input {inputs['question']}")
            return Prediction(answer=inputs["question"].upper())
        finally:
            self.in_flight -= 1


def _rows(n: int, bad: set[int] = frozenset()) -> list[Example]:  # type: ignore[assignment]
    return [
        Example(question=("boom " if i in bad else "") + f"q{i}", answer=f"Q{i}").with_inputs(
            "question"
        )
        for i in range(n)
    ]


def exact(example: Example, prediction: Prediction) -> bool:
    return bool(prediction.answer == example.answer)


class TestEvaluate:
    async def test_scores_as_a_percentage_in_devset_order(self) -> None:
        """The score is DSPy's percentage and rows keep the devset's order."""
        devset = _rows(8)
        devset[3] = devset[3].copy(answer="wrong")
        result = await Evaluate(devset=devset, metric=exact, display_progress=False)(
            Echo(jitter=True)
        )
        assert result.score == 87.5
        assert [row.index for row in result.rows] == list(range(8))
        assert result.scores == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
        assert result.rows[0].prediction is not None

    async def test_same_data_same_score(self) -> None:
        """Completion order varies with latency, the score does not."""
        devset = _rows(40)
        scores = {
            (
                await Evaluate(devset=devset, metric=lambda e, p: len(p.answer) / 10)(
                    Echo(jitter=True)
                )
            ).score
            for _ in range(3)
        }
        assert len(scores) == 1

    async def test_concurrency_bounds_examples_in_flight(self) -> None:
        """No more than `concurrency` examples run at once."""
        program = Echo(delay=0.001)
        await Evaluate(devset=_rows(30), metric=exact, concurrency=4)(program)
        assert program.peak == 4

    async def test_failing_example_is_an_error_row(self) -> None:
        """A failing example is isolated: a typed error row scored at failure_score."""
        evaluate = Evaluate(devset=_rows(5, {2}), metric=exact, failure_score=0.0)
        result = await evaluate(Echo())
        row = result.rows[2]
        assert row.error is not None and row.error.type == "RuntimeError"
        assert row.error.message == "bad input boom q2"
        assert result.errors == 1 and result.score == 80.0

    async def test_async_metric(self) -> None:
        """An async metric is awaited."""

        async def metric(example: Example, prediction: Prediction, trace: Any = None) -> float:
            await asyncio.sleep(0)
            return 0.5

        result = await Evaluate(devset=_rows(4), metric=metric)(Echo())
        assert result.score == 50.0

    async def test_max_errors_stops_with_the_first_causes(self) -> None:
        """At max_errors failures the run stops and names the first causes."""
        evaluate = Evaluate(
            devset=_rows(20, set(range(20))), metric=exact, max_errors=3, concurrency=1
        )
        with pytest.raises(
            TooManyErrors,
            match=r"^stopped after 3 failing examples \(max_errors=3\); first causes: example 0: "
            r"RuntimeError: bad input boom q0; example 1",
        ):
            await evaluate(Echo())

    async def test_timeout_per_example(self) -> None:
        """`timeout` bounds each example."""
        result = await Evaluate(devset=_rows(2), metric=exact, timeout=0.01)(Echo(delay=1.0))
        assert result.errors == 2
        assert result.rows[0].error is not None
        assert result.rows[0].error.message.startswith(
            "deadline exceeded during evaluation of example 0"
        )

    async def test_bad_metric_value_is_an_error_row(self) -> None:
        """A metric returning a non-number makes that row an error."""
        result = await Evaluate(devset=_rows(1), metric=lambda e, p: "yes")(Echo())
        assert result.rows[0].error is not None
        assert result.rows[0].error.code == "metric_error"

    async def test_save_json_and_csv(self, tmp_path: Path) -> None:
        """Results save as JSON and CSV with the metric's column."""
        result = await Evaluate(devset=_rows(3, {1}), metric=exact)(Echo())
        result.save(tmp_path / "r.json")
        result.save(tmp_path / "r.csv")
        data = json.loads((tmp_path / "r.json").read_text())
        assert data[0]["exact"] == 1.0 and data[0]["pred_answer"] == "Q0"
        assert data[1]["error"] == "RuntimeError: bad input boom q1"
        with (tmp_path / "r.csv").open() as handle:
            assert len(list(csv.DictReader(handle))) == 3
        with pytest.raises(
            ValueError, match=r"^cannot save results to .*: use a \.json or \.csv path$"
        ):
            result.save(tmp_path / "r.txt")

    async def test_table_prints(self, capsys: pytest.CaptureFixture[str]) -> None:
        """display_table prints a rich table after the run."""
        await Evaluate(devset=_rows(2), metric=exact, display_table=True)(Echo())
        assert "Evaluation (exact)" in capsys.readouterr().out

    async def test_empty_devset_is_refused(self) -> None:
        """An empty devset is a ValueError."""
        with pytest.raises(ValueError, match=r"^Evaluate needs at least one example"):
            await Evaluate(devset=[], metric=exact)(Echo())

    def test_bad_settings(self) -> None:
        """Concurrency and max_errors must be positive."""
        with pytest.raises(ValueError, match=r"^Evaluate.concurrency must be >= 1, got 0$"):
            Evaluate(devset=[], metric=exact, concurrency=0)


class _Said(Module):
    """Answers every question with the same text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    async def forward(self, **inputs: Any) -> Prediction:
        return Prediction(answer=self.text)


class TestCarelessMetrics:
    async def test_a_scored_prediction_counts_as_its_score(self) -> None:
        """A metric returning Prediction(score=..., feedback=...) scores as DSPy's Evaluate
        sums it: by its score."""

        def graded(example: Example, prediction: Prediction) -> Prediction:
            return Prediction(score=0.25 * int(example.question[1:]), feedback="partial")

        result = await Evaluate(devset=_rows(4), metric=graded, display_progress=False)(Echo())
        assert (result.score, result.errors) == (37.5, 0)

    async def test_an_int_too_large_for_a_float_is_a_metric_error_row(self) -> None:
        """10**400 is an error row naming the metric, never an OverflowError row."""
        result = await Evaluate(
            devset=_rows(1), metric=lambda e, p: 10**400, display_progress=False
        )(Echo())
        error = result.rows[0].error
        assert error is not None and (error.type, error.code) == ("MetricError", "metric_error")
        assert result.score == 0.0

    async def test_nan_is_never_averaged_in(self) -> None:
        """A NaN from the metric is an error row scoring failure_score; the mean is finite."""
        values = iter([1.0, float("nan"), 1.0])
        result = await Evaluate(
            devset=_rows(3), metric=lambda e, p: next(values), concurrency=1,
            display_progress=False,
        )(Echo())  # fmt: skip
        assert (result.score, result.errors) == (66.67, 1)


class TestSave:
    async def _result(self, text: str) -> Any:
        return await Evaluate(devset=_rows(1), metric=exact, display_progress=False)(_Said(text))

    async def test_text_utf8_cannot_hold_is_escaped_and_round_trips_in_json(
        self, tmp_path: Path
    ) -> None:
        """A lone surrogate is written as its \\uXXXX escape: JSON reads it back unchanged."""
        result = await self._result("bad \ud800 byte")
        result.save(tmp_path / "r.json")
        result.save(tmp_path / "r.csv")
        assert json.loads((tmp_path / "r.json").read_text())[0]["pred_answer"] == "bad \ud800 byte"
        assert "bad \\ud800 byte" in (tmp_path / "r.csv").read_text(encoding="utf-8")

    async def test_an_existing_file_is_replaced_whole(self, tmp_path: Path) -> None:
        """Saving over a file replaces it (no temporary file is left beside it)."""
        target = tmp_path / "r.json"
        target.write_text("old results")
        (await self._result("new")).save(target)
        assert json.loads(target.read_text())[0]["pred_answer"] == "new"
        assert os.listdir(tmp_path) == ["r.json"]

    async def test_a_directory_is_refused_and_left_alone(self, tmp_path: Path) -> None:
        """A path that is a directory is an OSError naming it; nothing is written."""
        folder = tmp_path / "r.json"
        folder.mkdir()
        with pytest.raises(IsADirectoryError, match=r"^cannot save results to '.*r\.json': it is"):
            (await self._result("x")).save(folder)
        assert (os.listdir(tmp_path), os.listdir(folder)) == (["r.json"], [])

    async def test_a_missing_folder_names_the_target(self, tmp_path: Path) -> None:
        """A missing folder is a FileNotFoundError naming the file asked for."""
        with pytest.raises(FileNotFoundError, match=r"r\.csv'$"):
            (await self._result("x")).save(tmp_path / "missing" / "r.csv")

    @pytest.mark.parametrize(
        ("text", "cell"),
        [
            ("=1+2", "'=1+2"),
            ("+x", "'+x"),
            ("- item", "'- item"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("-3", "-3"),
            ("+1.5e3", "+1.5e3"),
        ],
    )
    async def test_csv_cells_a_spreadsheet_would_run_are_neutralized(
        self, tmp_path: Path, text: str, cell: str
    ) -> None:
        """A CSV text cell starting with = + - @ tab or CR gets a leading quote, unless it
        reads as a number (an answer "-3" round-trips); JSON keeps the text exactly."""
        result = await self._result(text)
        result.save(tmp_path / "r.csv")
        result.save(tmp_path / "r.json")
        with (tmp_path / "r.csv").open(newline="", encoding="utf-8") as handle:
            row = next(csv.DictReader(handle))
        assert (row["pred_answer"], row["exact"]) == (cell, "0.0")
        assert json.loads((tmp_path / "r.json").read_text())[0]["pred_answer"] == text

    async def test_a_save_over_a_file_keeps_its_permissions(self, tmp_path: Path) -> None:
        """Saving over an existing results file keeps its mode (a private 0600 file became
        world-readable through the temporary file's default mode)."""
        target = tmp_path / "r.json"
        target.write_text("old")
        target.chmod(0o600)
        (await self._result("x")).save(target)
        assert (
            target.stat().st_mode & 0o777,
            json.loads(target.read_text())[0]["pred_answer"],
        ) == (
            0o600,
            "x",
        )

    async def test_csv_keeps_newlines_quotes_and_commas(self, tmp_path: Path) -> None:
        """Newlines, quotes and commas in a cell read back unchanged."""
        text = 'one, "two"\nthree'
        (await self._result(text)).save(tmp_path / "r.csv")
        with (tmp_path / "r.csv").open(newline="", encoding="utf-8") as handle:
            assert next(csv.DictReader(handle))["pred_answer"] == text


class TestNestedValues:
    async def test_a_value_too_deep_to_record_is_a_value_error(self, tmp_path: Path) -> None:
        """An example holding lists nested 100,000 deep scores, but saving or printing it
        is a ValueError naming the row, never a RecursionError; nothing is written."""
        deep: list[Any] = []
        inner = deep
        for _ in range(100_000):
            inner.append([])
            inner = inner[0]
        devset = [Example(question="q0", answer="Q0", blob=deep).with_inputs("question")]
        result = await Evaluate(devset=devset, metric=exact, display_progress=False)(Echo())
        assert result.score == 100.0
        refused = r"^evaluation row 0: a value is nested too deeply to record$"
        for name in ("r.json", "r.csv"):
            with pytest.raises(ValueError, match=refused):
                result.save(tmp_path / name)
        with pytest.raises(ValueError, match=refused):
            result.print_table()
        assert os.listdir(tmp_path) == []
        with capture_logs() as logs:
            shown = await Evaluate(
                devset=devset, metric=exact, display_progress=False, display_table=True
            )(Echo())
        assert shown.score == 100.0  # the run's result is returned, not lost to the table
        [line] = [e for e in logs if e["event"] == "evaluate.table_not_printed"]
        assert line["problem"] == "evaluation row 0: a value is nested too deeply to record"


class TestCallersDeadline:
    async def test_the_callers_deadline_ends_the_run_typed(self) -> None:
        """An example failing because the caller's deadline passed ends the whole run with
        DeadlineExceeded: not max_errors of counted failures (TooManyErrors), nor a result
        of failure scores with a large max_errors."""
        evaluate = Evaluate(
            devset=_rows(40), metric=exact, display_progress=False, max_errors=1000, concurrency=4
        )
        async with asyncio.timeout(30):  # a safety net: a hang fails rather than waits
            with (
                deadline(0.05),
                pytest.raises(DeadlineExceeded, match=r"^deadline exceeded during evaluation$"),
            ):
                await evaluate(Echo(delay=3600.0))
