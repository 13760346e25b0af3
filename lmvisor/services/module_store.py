"""Registered programs kept in SQLite, so an app reopened on its data directory serves them again.

The ModuleManager writes here after every change it makes (register, swap, rollback,
unregister), one change at a time, each committed before the next; `open_app` reads the
store back once the manager runs. The file is `<data_dir>/modules.sqlite3`; with no data
directory nothing is kept (the programs live in memory only).

What is kept, per program: its model, its options (JSON form), every version it keeps
(number, spec, creation time), the order versions were made current (the rollback
history; its last entry is the current version) and the next version number. So after a
reopen the same versions serve, a rollback goes back where it would have, and new
versions continue the numbering. An id unregistered (or taken out of the store) leaves
its next version number behind in `retired`, so registering it again, after a restart
too, continues the numbering rather than reusing a number. A file written before
`retired` existed is read as it is: the table is added when the file is opened.

Only programs that can be written down are kept: each kept version needs a spec
(`lmvisor.programs.spec.program_spec`: a built-in Predict or ChainOfThought, or anything
registered as a spec) and the options must be JSON (a fallback program with a spec, a
default answer of JSON values). A program registered as an arbitrary Python object (a
Module class of one's own) is not kept; swapping such a version into a kept program takes
the program out of the store, since restoring it without that version would serve an
older one.

One app at a time keeps programs in a directory: the first to open the file holds its
writer's lock (`<file>.writer`, an `flock` released with the app or its process). Another
app opened on the same directory meanwhile restores what is kept and serves it, but keeps
nothing itself (`durable` is False; a warning says so at start): two apps each writing what
their own table held lost each other's programs and versions without a word.

Reading back never fails the app: a row that cannot be decoded, or a program that no
longer builds (its vendor is not configured any more, say), is skipped and reported as a
`store.record_skipped` event and a warning; the row stays for inspection until the id is
registered again.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, final

from lmvisor.programs.lm import LM
from lmvisor.programs.spec import ProgramSpecError, build_program, parse_program_spec, program_spec
from lmvisor.services._file_lock import lock_file
from lmvisor.services._sqlite import SqliteFile, dump_json, json_value, text
from lmvisor.services.errors import CorruptRecord
from lmvisor.services.module_options import ModuleOptions, parse_module_options
from lmvisor.services.module_table import ModuleRecord, ModuleVersion

__all__ = [
    "MAX_RETIRED",
    "ProgramStore",
    "RestoredProgram",
    "StoredProgram",
    "StoredVersion",
    "rebuild_program",
    "retire",
    "stored_program",
]

MAX_RETIRED: Final = 10_000
"""Unregistered ids whose next version number is kept (the last ones unregistered)."""


def retire(marks: dict[str, int], module_id: str, next_number: int) -> None:
    """Keep `next_number` as where `module_id`'s numbering resumes, as its newest mark,
    dropping the oldest beyond `MAX_RETIRED`."""
    marks.pop(module_id, None)
    marks[module_id] = next_number
    while len(marks) > MAX_RETIRED:
        del marks[next(iter(marks))]


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS programs (
    module_id TEXT PRIMARY KEY,
    lm TEXT NOT NULL,
    options TEXT NOT NULL,
    history TEXT NOT NULL,
    next_number INTEGER NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    module_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    spec TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (module_id, number)
);
CREATE TABLE IF NOT EXISTS retired (
    module_id TEXT PRIMARY KEY,
    next_number INTEGER NOT NULL
);
"""
_STORE: Final = "programs"


@final
@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One kept version: its number, its spec (JSON form) and when it was made."""

    number: int
    spec: Mapping[str, Any]
    created: float


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class StoredProgram:
    """One program as kept (see the module docstring)."""

    module_id: str
    lm: str
    options: Mapping[str, Any]
    versions: tuple[StoredVersion, ...]
    history: tuple[int, ...]
    next_number: int


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class RestoredProgram:
    """A kept program built again, ready for the manager to install."""

    module_id: str
    lm: str
    options: ModuleOptions
    versions: tuple[ModuleVersion, ...]
    history: tuple[int, ...]
    next_number: int


def stored_program(record: ModuleRecord) -> StoredProgram | str:
    """What the store keeps of a registered program, or the reason it cannot be kept."""
    versions = []
    for number in sorted(record.versions):
        version = record.versions[number]
        if version.spec is None:
            return f"version {number} is a program object with no spec"
        versions.append(StoredVersion(number, version.spec.to_dict(), version.created_at))
    options = _options_json(record.options)
    if isinstance(options, str):
        return options
    return StoredProgram(
        module_id=record.module_id,
        lm=record.lm,
        options=options,
        versions=tuple(versions),
        history=tuple(record.history),
        next_number=record.next_number,
    )


def _options_json(options: ModuleOptions) -> dict[str, Any] | str:
    fallback = None
    if options.fallback is not None:
        try:
            fallback = program_spec(options.fallback).to_dict()
        except (TypeError, ProgramSpecError) as exc:
            return f"the fallback program has no spec ({exc})"
    return {
        "lm": options.lm,
        "allow_stale": options.allow_stale,
        "fallback": fallback,
        "fallback_lm": options.fallback_lm,
        "default": None if options.default is None else dict(options.default),
    }


def rebuild_program(stored: StoredProgram, lm_for: Callable[[str], LM]) -> RestoredProgram:
    """Build every kept version again (and the options' fallback).

    Raises:
        ProgramSpecError: a kept spec no longer builds.
        ServiceInputError: the kept options are malformed.
        UnknownProvider: the program's model (or fallback model) names a vendor not configured.
    """
    lm_for(stored.lm)
    options = parse_module_options(stored.options)
    if options.fallback_lm is not None:
        lm_for(options.fallback_lm)
    versions = []
    for kept in stored.versions:
        spec = parse_program_spec(kept.spec)
        program = build_program(spec, lm_for=lm_for)
        versions.append(ModuleVersion(kept.number, program, spec, kept.created))
    return RestoredProgram(
        module_id=stored.module_id,
        lm=stored.lm,
        options=options,
        versions=tuple(versions),
        history=stored.history,
        next_number=stored.next_number,
    )


@final
class ProgramStore:
    """The kept programs (see the module docstring).

    Args:
        path: the SQLite file (its directory is created); None keeps nothing.
    """

    def __init__(self, path: str | Path | None) -> None:
        self._file = None if path is None else SqliteFile(path, _SCHEMA)
        self.path = None if self._file is None else self._file.path
        self._writer: int | None = None  # the writer's lock, while held
        self._shared = False  # another app holds it: this store only reads

    @property
    def durable(self) -> bool:
        """Whether programs registered here are kept (a file, and this app its writer)."""
        return self._file is not None and not self._shared

    def hold(self) -> bool:
        """Take the file's writer's lock; False when another app holds it, after which this
        store only reads (see the module docstring). Without a file, or without `fcntl`
        (Windows), True.

        Raises:
            OSError: the lock file cannot be created.
        """
        if self.path is None or self._writer is not None or sys.platform == "win32":
            return not self._shared
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = lock_file(Path(f"{self.path}.writer"))
        self._shared = self._writer is None
        return not self._shared

    async def save(self, program: StoredProgram, *, fresh: bool = False) -> None:
        """Keep `program` (committed before returning); `fresh` forgets what the id had.

        Versions are never changed once made, so only new ones are written; versions the
        program no longer keeps are deleted.

        Raises:
            TypeError, ValueError: a spec or the options are not JSON.
            sqlite3.Error, OSError: the file cannot be written.
        """
        if self._file is None or self._shared:
            return
        header = (
            program.module_id, program.lm, dump_json(program.options),
            dump_json(list(program.history)), program.next_number, time.time(),
        )  # fmt: skip
        rows = [
            (program.module_id, v.number, dump_json(v.spec), v.created) for v in program.versions
        ]
        kept = [v.number for v in program.versions]
        await self._file.run(lambda db: _write(db, header, rows, kept, fresh=fresh))

    async def delete(self, module_id: str, *, next_number: int) -> None:
        """Forget `module_id`, keeping `next_number` as where its numbering resumes if it is
        registered again (committed before returning).

        Raises:
            sqlite3.Error, OSError: the file cannot be written.
        """
        if self._file is None or self._shared:
            return

        def work(db: sqlite3.Connection) -> None:
            with db:
                db.execute("DELETE FROM versions WHERE module_id = ?", (module_id,))
                db.execute("DELETE FROM programs WHERE module_id = ?", (module_id,))
                # Deleted and inserted, not updated: the row's rowid then says which ids
                # were unregistered last, and only the newest MAX_RETIRED are kept.
                (number,) = db.execute(
                    "SELECT max(?, coalesce((SELECT next_number FROM retired WHERE module_id = ?"
                    " AND typeof(next_number) = 'integer'), 1))",
                    (next_number, module_id),
                ).fetchone()
                db.execute("DELETE FROM retired WHERE module_id = ?", (module_id,))
                db.execute("INSERT INTO retired VALUES (?, ?)", (module_id, number))
                db.execute(  # by count: re-inserts leave rowid gaps
                    "DELETE FROM retired WHERE rowid <= (SELECT rowid FROM retired"
                    " ORDER BY rowid DESC LIMIT 1 OFFSET ?)",
                    (MAX_RETIRED,),
                )

        await self._file.run(work)

    async def load(
        self, *, on_corrupt: Callable[[CorruptRecord], None] | None = None
    ) -> list[StoredProgram]:
        """Every kept program that decodes, by id; each one that does not goes to `on_corrupt`.

        Raises:
            sqlite3.Error, OSError: the file cannot be opened or read.
        """
        if self._file is None:
            return []
        heads, versions = await self._file.run(_read)
        found: list[StoredProgram] = []
        for head in heads:
            try:
                found.append(_decode(head, versions))
            except CorruptRecord as exc:
                if on_corrupt is not None:
                    on_corrupt(exc)
        return found

    async def next_numbers(self) -> dict[str, int]:
        """Where the numbering of each unregistered id resumes (`delete`), by id; a row
        that is not an id and a number above 1 is left out.

        Raises:
            sqlite3.Error, OSError: the file cannot be opened or read.
        """
        if self._file is None:
            return {}
        rows = await self._file.run(
            lambda db: db.execute(
                "SELECT module_id, next_number FROM retired ORDER BY rowid"
            ).fetchall()
        )
        found = {}
        for raw, number in rows:
            if isinstance(raw, bytes) and _is_int(number) and number > 1:
                try:
                    found[raw.decode()] = number
                except UnicodeDecodeError:
                    continue
        return found

    async def close(self) -> None:
        """Close the file (a later call reopens it) and drop the writer's lock."""
        if self._file is not None:
            await self._file.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            os.close(writer)  # closing the only descriptor drops the flock

    def __repr__(self) -> str:
        return f"ProgramStore({str(self.path) if self.path else 'nothing kept'})"


def _write(
    db: sqlite3.Connection,
    header: tuple[Any, ...],
    rows: list[tuple[Any, ...]],
    kept: list[int],
    *,
    fresh: bool,
) -> None:
    module_id = header[0]
    with db:
        if fresh:
            db.execute("DELETE FROM versions WHERE module_id = ?", (module_id,))
        else:
            marks = ",".join("?" * len(kept))
            db.execute(
                f"DELETE FROM versions WHERE module_id = ? AND number NOT IN ({marks})",
                (module_id, *kept),
            )
        db.executemany("INSERT OR IGNORE INTO versions VALUES (?, ?, ?, ?)", rows)
        db.execute("INSERT OR REPLACE INTO programs VALUES (?, ?, ?, ?, ?, ?)", header)
        db.execute("DELETE FROM retired WHERE module_id = ?", (module_id,))


def _read(db: sqlite3.Connection) -> tuple[list[tuple[Any, ...]], dict[Any, list[tuple[Any, ...]]]]:
    heads = db.execute("SELECT * FROM programs ORDER BY module_id").fetchall()
    versions: dict[Any, list[tuple[Any, ...]]] = {}
    for row in db.execute("SELECT * FROM versions ORDER BY module_id, number"):
        versions.setdefault(row[0], []).append(row)
    return heads, versions


def _decode(head: tuple[Any, ...], versions: Mapping[Any, list[tuple[Any, ...]]]) -> StoredProgram:
    """One program from its rows, checked, or `CorruptRecord` naming what is wrong."""
    module_id = text(head[0], store=_STORE, record="?")

    def bad(problem: str) -> CorruptRecord:
        return CorruptRecord(store=_STORE, record=module_id, problem=problem)

    lm = text(head[1], store=_STORE, record=module_id)
    options = json_value(head[2], store=_STORE, record=module_id)
    history = json_value(head[3], store=_STORE, record=module_id)
    if not isinstance(options, dict):
        raise bad("options is not an object")
    if not isinstance(history, list) or not history or not all(_is_int(n) for n in history):
        raise bad("history is not a list of version numbers")
    kept = tuple(_version(row, module_id) for row in versions.get(head[0], ()))
    numbers = {v.number for v in kept}
    if not set(history) <= numbers:
        raise bad(f"history names versions that are not kept ({sorted(set(history) - numbers)})")
    if not _is_int(head[4]) or head[4] <= max(numbers):
        raise bad("next_number is not above every kept version")
    return StoredProgram(
        module_id=module_id, lm=lm, options=options, versions=kept,
        history=tuple(history), next_number=head[4],
    )  # fmt: skip


def _version(row: tuple[Any, ...], module_id: str) -> StoredVersion:
    try:
        spec = json_value(row[2], store=_STORE, record=module_id)
    except CorruptRecord as exc:
        problem = f"version {row[1]!r}: {exc.problem}"
        raise CorruptRecord(store=_STORE, record=module_id, problem=problem) from exc
    if not _is_int(row[1]) or not isinstance(spec, dict):
        problem = f"version {row[1]!r}: not a numbered spec object"
        raise CorruptRecord(store=_STORE, record=module_id, problem=problem)
    created = row[3]
    if not isinstance(created, int | float) or isinstance(created, bool):
        problem = f"version {row[1]!r}: created is not a time"
        raise CorruptRecord(store=_STORE, record=module_id, problem=problem)
    return StoredVersion(row[1], spec, float(created))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
