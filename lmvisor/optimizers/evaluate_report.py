"""What Evaluate shows and writes: the progress bar, the result table, JSON and CSV files.

The progress bar (rich) shows done/total, the running score, errors and the ETA on
stderr, and only when asked to or when stderr is a terminal. A result record merges the
example's fields and the prediction's (clashing names become `example_x` / `pred_x`, as
in DSPy), then the metric's score under its name and the error, if any.

Saving writes the whole file or nothing: the text is built in memory, written to a
temporary file beside the target and renamed over it, so a failed save leaves an existing
file as it was (and a replaced file keeps its permissions). Text UTF-8 cannot hold (a lone
surrogate from a decoded byte string) is written as its `\\u` escape (`\\udc80`). A CSV is for
spreadsheets, which run a cell beginning with `=`, `+`, `-`, `@`, a tab or a carriage
return as a formula (CSV injection): such a text cell is written with a leading `'`,
which spreadsheets show as text; numbers, and text that reads as one ("-3"), are written
as they are, and JSON keeps every value exactly.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from lmvisor.optimizers.evaluate import EvaluationRow

__all__ = ["ProgressDisplay", "print_table", "result_records", "save_records"]

_CELL_WORDS = 25
_TOO_DEEP = "(nested too deeply to show)"
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


@final
class ProgressDisplay:
    """A rich progress bar for one evaluation, or a silent stand-in."""

    __slots__ = ("_done", "_errors", "_progress", "_summed", "_task")

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress = progress
        self._task = task
        self._done = 0
        self._errors = 0
        self._summed = 0.0

    @classmethod
    def open(cls, total: int, show: bool | None) -> ProgressDisplay:
        """Start a bar for `total` examples; None shows it only when stderr is a terminal."""
        if show is False:
            return cls(None, None)
        from rich.console import Console  # lazily: rich costs import time

        console = Console(stderr=True)
        if show is None and not console.is_terminal:
            return cls(None, None)
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("[bold]Evaluate"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("score {task.fields[score]:.1f}%  errors {task.fields[errors]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        task = progress.add_task("evaluate", total=total, score=0.0, errors=0)
        progress.start()
        return cls(progress, task)

    def advance(self, score: float, *, failed: bool) -> None:
        """Count one finished example."""
        self._done += 1
        self._summed += score
        self._errors += failed
        if self._progress is not None and self._task is not None:
            running = 100 * self._summed / self._done
            self._progress.update(self._task, advance=1, score=running, errors=self._errors)

    def close(self) -> None:
        """Stop drawing (the last state stays on screen)."""
        if self._progress is not None:
            self._progress.stop()


def _plain(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return value


def result_records(rows: Sequence[EvaluationRow], metric: str) -> list[dict[str, Any]]:
    """One JSON-ready dict per row (see the module docstring).

    Raises:
        ValueError: a row holds a value nested too deeply to record.
    """
    records = []
    for row in rows:
        try:
            example = row.example.to_dict()
            predicted = {} if row.prediction is None else row.prediction.to_dict()
        except RecursionError:
            raise ValueError(
                f"evaluation row {row.index}: a value is nested too deeply to record"
            ) from None
        record: dict[str, Any] = {}
        for key, value in example.items():
            record[f"example_{key}" if key in predicted else key] = _plain(value)
        for key, value in predicted.items():
            record[f"pred_{key}" if key in example else key] = _plain(value)
        record[metric] = row.score
        record["error"] = None if row.error is None else str(row.error)
        records.append(record)
    return records


def save_records(records: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Write records as JSON (`.json`) or CSV (`.csv`, columns in first-seen order), whole
    or not at all (see the module docstring); an existing file is replaced.

    Raises:
        ValueError: another suffix, or a value nested too deeply to write.
        OSError: the file cannot be written (a directory, a missing or unwritable folder);
            an existing file is left unchanged.
    """
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise ValueError(f"cannot save results to {str(path)!r}: use a .json or .csv path")
    try:
        if suffix == ".json":
            text = json.dumps(list(records), indent=2, ensure_ascii=False, default=str)
        else:
            text = _csv_text(records)
    except RecursionError:
        raise ValueError(
            f"cannot save results to {str(path)!r}: a value is nested too deeply to write"
        ) from None
    # In JSON a lone surrogate's `\u` escape (`\udc80`) is the JSON escape of the same string.
    _replace_file(path, text.encode("utf-8", errors="backslashreplace"))


def _csv_text(records: Sequence[Mapping[str, Any]]) -> str:
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(columns))
    writer.writeheader()
    for record in records:
        writer.writerow({k: _csv_cell(v) for k, v in record.items()})
    return buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(_cell_text(value))
    if not text.startswith(_FORMULA_STARTS) or _is_number(text):
        return text  # "-3" is an answer a spreadsheet reads as a number, not a formula
    return "'" + text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _replace_file(path: Path, data: bytes) -> None:
    target = Path(os.path.realpath(path))  # a symlink's target gets the text, as open() would
    if target.is_dir():
        raise IsADirectoryError(f"cannot save results to {str(path)!r}: it is a directory")
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        descriptor = os.open(temporary, _CREATE, 0o666)  # the umask applies, as for open()
    except OSError as exc:  # name the file the caller asked for, not the temporary one
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            with contextlib.suppress(FileNotFoundError):  # an existing file keeps its mode
                os.fchmod(handle.fileno(), stat.S_IMODE(os.stat(target).st_mode))
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename: a crash leaves old or new
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _cell_text(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def _truncated(value: Any) -> str:
    try:
        words = str(_cell_text(value)).split()
    except RecursionError:
        return _TOO_DEEP
    text = " ".join(words[:_CELL_WORDS])
    return text + "..." if len(words) > _CELL_WORDS else text


def print_table(records: Sequence[Mapping[str, Any]], metric: str, *, limit: int | None) -> None:
    """Print records as a rich table on stdout, cells cut to 25 words."""
    from rich.console import Console
    from rich.table import Table

    shown = list(records if limit is None else records[:limit])
    columns: dict[str, None] = {}
    for record in shown:
        columns.update(dict.fromkeys(record))
    table = Table(title=f"Evaluation ({metric})", show_lines=False)
    for column in columns:
        table.add_column(column, style="bold green" if column == metric else None)
    for record in shown:
        table.add_row(*(_truncated(record.get(column, "")) for column in columns))
    console = Console()
    console.print(table)
    hidden = len(records) - len(shown)
    if hidden > 0:
        console.print(f"... {hidden} more rows not shown ...")
