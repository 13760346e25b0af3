"""Registered programs kept across restarts (lmvisor.services.module_store): the store alone,
and an app closed and reopened on the same data directory."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from lmvisor.config.schema import LmvisorConfig
from lmvisor.programs.chain_of_thought import ChainOfThought
from lmvisor.programs.module import Module
from lmvisor.programs.predict import Predict
from lmvisor.runtime.observe.logs import capture_logs
from lmvisor.runtime.observe.names import STORE_RECORD_SKIPPED
from lmvisor.services import module_store
from lmvisor.services.app import open_app
from lmvisor.services.errors import CorruptRecord, ModuleAlreadyRegistered, UnknownModule
from lmvisor.services.module_store import ProgramStore, StoredProgram, StoredVersion
from lmvisor.testing.lm_server import LMServer

QA = {"module": "Predict", "signature": "question -> answer", "instructions": "v1"}


def _config(data_dir: Path | None) -> LmvisorConfig:
    return LmvisorConfig.model_validate({"logging": {"level": "error"}, "data_dir": data_dir})


def _stored(module_id: str = "qa", numbers: tuple[int, ...] = (1, 2)) -> StoredProgram:
    return StoredProgram(
        module_id=module_id,
        lm="openai/gpt-4o-mini",
        options={"allow_stale": True},
        versions=tuple(
            StoredVersion(n, {**QA, "instructions": f"v{n}"}, float(n)) for n in numbers
        ),
        history=numbers,
        next_number=max(numbers) + 1,
    )


def _raw(path: Path, sql: str, *args: Any) -> None:
    """Write behind the store's back, as a damaged disk or a foreign writer would."""
    with sqlite3.connect(path) as db:
        db.execute(sql, args)
    db.close()


class Custom(Module):
    """A program class of one's own: it has no spec."""

    def __init__(self) -> None:
        super().__init__()
        self.predict = Predict("question -> answer")

    async def forward(self, question: str) -> Any:
        return await self.predict(question=question)


class TestProgramStore:
    async def test_round_trip(self, tmp_path: Path) -> None:
        """What is saved loads back equal, from a new store on the same file too."""
        store = ProgramStore(tmp_path / "modules.sqlite3")
        await store.save(_stored("b"))
        await store.save(_stored("a", (1,)))
        assert await store.load() == [_stored("a", (1,)), _stored("b")]
        await store.close()
        again = ProgramStore(tmp_path / "modules.sqlite3")
        assert [p.module_id for p in await again.load()] == ["a", "b"]
        await again.close()

    async def test_versions_follow_what_the_program_keeps(self, tmp_path: Path) -> None:
        """Pruned versions are deleted; `fresh` forgets every earlier version of the id."""
        store = ProgramStore(tmp_path / "modules.sqlite3")
        await store.save(_stored("qa", (1, 2, 3)))
        await store.save(_stored("qa", (2, 3, 4)))
        (kept,) = await store.load()
        assert [v.number for v in kept.versions] == [2, 3, 4]
        await store.save(_stored("qa", (1,)), fresh=True)
        (kept,) = await store.load()
        assert [v.number for v in kept.versions] == [1]
        await store.delete("qa", next_number=2)
        assert await store.load() == []
        await store.close()

    async def test_a_deleted_id_keeps_where_its_numbering_resumes(self, tmp_path: Path) -> None:
        """`delete` keeps the highest next number across reopens; a save of the id drops it."""
        path = tmp_path / "modules.sqlite3"
        store = ProgramStore(path)
        await store.save(_stored("qa", (1, 2, 3, 4)))
        await store.delete("qa", next_number=5)
        await store.delete("qa", next_number=3)  # never lower: the mark only rises
        await store.delete("zz", next_number=2)
        await store.close()
        again = ProgramStore(path)
        assert await again.next_numbers() == {"qa": 5, "zz": 2}
        await again.save(_stored("qa", (5,)), fresh=True)
        assert await again.next_numbers() == {"zz": 2}
        _raw(path, "INSERT INTO retired VALUES ('bad', 'x')")
        _raw(path, "INSERT INTO retired VALUES (?, 4)", b"\xff")
        assert await again.next_numbers() == {"zz": 2}
        await again.close()

    async def test_only_the_ids_unregistered_last_keep_their_marks(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The file keeps the marks of the `MAX_RETIRED` ids deleted last (an id deleted again
        counts as new, keeping its highest mark), in the order they were deleted."""
        monkeypatch.setattr(module_store, "MAX_RETIRED", 3)
        path = tmp_path / "modules.sqlite3"
        store = ProgramStore(path)
        for name, number in (("a", 2), ("b", 7), ("c", 2), ("b", 3), ("d", 4)):
            await store.delete(name, next_number=number)
        assert list((await store.next_numbers()).items()) == [("c", 2), ("b", 7), ("d", 4)]
        for number in range(5, 15):  # one id retired again and again leaves rowid gaps
            await store.delete("d", next_number=number)
        assert list((await store.next_numbers()).items()) == [("c", 2), ("b", 7), ("d", 14)]
        await store.close()

    async def test_a_file_in_the_layout_before_retired_is_read_and_extended(
        self, tmp_path: Path
    ) -> None:
        """A file written with only `programs` and `versions` loads as it was and gains the
        `retired` table on open; opening it again changes nothing more."""
        path = tmp_path / "modules.sqlite3"
        writer = ProgramStore(path)
        await writer.save(_stored("qa"))
        await writer.close()
        _raw(path, "DROP TABLE retired")  # what main's layout wrote
        for _ in range(2):
            store = ProgramStore(path)
            assert await store.load() == [_stored("qa")]
            assert await store.next_numbers() == {}
            await store.close()
        with sqlite3.connect(path) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        db.close()
        assert {"programs", "versions", "retired"} <= tables
        store = ProgramStore(path)
        await store.delete("qa", next_number=3)
        assert await store.next_numbers() == {"qa": 3}
        await store.close()

    async def test_nothing_kept_without_a_path(self, tmp_path: Path) -> None:
        """With no data directory the store keeps nothing and touches no file."""
        store = ProgramStore(None)
        assert not store.durable
        await store.save(_stored())
        assert await store.load() == []
        await store.close()

    @pytest.mark.parametrize(
        ("sql", "args", "problem"),
        [
            ("UPDATE programs SET options = ?", (b"\xff{",), "not UTF-8"),
            ("UPDATE programs SET history = '[1, 7]'", (), "history names versions that are not"),
            ("UPDATE programs SET history = '[]'", (), "history is not a list of version numbers"),
            ("UPDATE programs SET next_number = 2", (), "next_number is not above every kept"),
            ("UPDATE versions SET spec = '[1' WHERE number = 2", (), "version 2: not JSON"),
            ("UPDATE versions SET spec = '[1]' WHERE number = 2", (), "version 2: not a numbered"),
            ("UPDATE versions SET created = 'now' WHERE number = 1", (), "version 1: created is"),
        ],
    )
    async def test_corrupt_rows_are_reported_not_loaded(
        self, tmp_path: Path, sql: str, args: tuple[Any, ...], problem: str
    ) -> None:
        """A damaged program goes to on_corrupt as a CorruptRecord naming it; others load."""
        path = tmp_path / "modules.sqlite3"
        store = ProgramStore(path)
        await store.save(_stored("qa"))
        await store.save(_stored("zz"))
        where = " AND " if "WHERE" in sql else " WHERE "
        _raw(path, f"{sql}{where}module_id = 'qa'", *args)
        skipped: list[CorruptRecord] = []
        assert [p.module_id for p in await store.load(on_corrupt=skipped.append)] == ["zz"]
        ((store_name, record, found),) = [(e.store, e.record, e.problem) for e in skipped]
        assert (store_name, record) == ("programs", "qa")
        assert found.startswith(problem)
        await store.close()


class TestRestartKeepsPrograms:
    async def test_versions_and_current_version_survive_a_reopen(
        self, lm_server: LMServer, tmp_path: Path
    ) -> None:
        """Register, swap, roll back, close; reopened, the same versions serve and numbering
        goes on."""
        config = _config(tmp_path / "data")
        async with open_app(config, lm_server=lm_server) as app:
            await app.register("qa", QA, options={"allow_stale": True})
            await app.register("cot", ChainOfThought("question -> answer"))
            assert await app.swap("qa", {**QA, "instructions": "v2"}) == 2
            assert await app.swap("qa", state={"demos": [{"question": "q", "answer": "a"}]}) == 3
            assert await app.rollback("qa") == 2
            before = {m.module_id: m.to_dict() for m in await app.list_modules()}
            states = {v: (await app.get("qa", version=v)).dump_state() for v in (1, 2, 3)}
            assert [len(states[v]["demos"]) for v in (1, 2, 3)] == [0, 0, 1]
            answer = (await app.run("qa", {"question": "hello?"})).prediction.answer
        async with open_app(config, lm_server=lm_server) as again:
            after = {m.module_id: m.to_dict() for m in await again.list_modules()}
            assert after == before
            for version, state in states.items():
                assert (await again.get("qa", version=version)).dump_state() == state
            assert (await again.run("qa", {"question": "hello?"})).prediction.answer == answer
            assert await again.rollback("qa") == 1
            assert await again.swap("qa", QA) == 4
            restored = again.runtime.events.ring.query(type="module.registered")
            assert {e.data["module_id"]: e.data.get("restored") for e in restored} == {
                "cot": True,
                "qa": True,
            }
        async with open_app(config, lm_server=lm_server) as third:
            info = await third.describe("qa")
            assert (info.version, info.versions) == (4, (1, 2, 3, 4))

    async def test_registering_a_restored_id_adopts_it(
        self, lm_server: LMServer, tmp_path: Path
    ) -> None:
        """Code that registers at every start keeps working: the same program leaves the
        restored one as it is, another becomes its next version; a second register fails."""
        config = _config(tmp_path / "data")
        async with open_app(config, lm_server=lm_server) as app:
            await app.register("qa", ChainOfThought("question -> answer"))
            await app.register("other", QA)
        async with open_app(config, lm_server=lm_server) as again:
            info = await again.register("qa", ChainOfThought("question -> answer"))
            assert (info.version, info.versions) == (1, (1,))
            info = await again.register("other", {**QA, "instructions": "changed"}, options={})
            assert (info.version, info.versions) == (2, (1, 2))
            with pytest.raises(ModuleAlreadyRegistered):
                await again.register("qa", ChainOfThought("question -> answer"))
        async with open_app(config, lm_server=lm_server) as third:
            assert (await third.describe("other")).version == 2
            assert await third.rollback("other") == 1

    @pytest.mark.parametrize("kept", [True, False])
    async def test_an_id_registered_again_never_reuses_a_version_number(
        self, lm_server: LMServer, tmp_path: Path, kept: bool
    ) -> None:
        """Unregister and register again continue the id's numbering, in one app and, with a
        data directory, after a reopen too; its events say so."""
        config = _config(tmp_path / "data" if kept else None)
        async with open_app(config, lm_server=lm_server) as app:
            await app.register("qa", QA)
            assert await app.swap("qa", {**QA, "instructions": "v2"}) == 2
            await app.unregister("qa")
            info = await app.register("qa", QA)
            assert (info.version, info.versions) == (3, (3,))
            assert await app.swap("qa", {**QA, "instructions": "v4"}) == 4
            assert (await app.run("qa", {"question": "which?"})).version == 4
            await app.unregister("qa")
            registered = app.runtime.events.ring.query(type="module.registered")
            assert [e.data["version"] for e in registered] == [1, 3]
        async with open_app(config, lm_server=lm_server) as again:
            info = await again.register("qa", QA)
            assert info.version == (5 if kept else 1)
            await again.register("new", QA)
            assert (await again.describe("new")).version == 1

    async def test_an_app_keeps_the_marks_of_the_ids_unregistered_last(
        self, lm_server: LMServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Ids registered and dropped without end hold at most `MAX_RETIRED` marks: the
        oldest id's numbering starts over, the newest ones' continue."""
        monkeypatch.setattr(module_store, "MAX_RETIRED", 2)
        async with open_app(_config(None), lm_server=lm_server) as app:
            for module_id in ("a", "b", "c"):
                await app.register(module_id, QA)
                await app.swap(module_id, {**QA, "instructions": "v2"})
                await app.unregister(module_id)
            versions = [(await app.register(m, QA)).version for m in ("a", "b", "c")]
            assert versions == [1, 3, 3]

    async def test_unregistered_and_unwritable_programs_are_not_restored(
        self, lm_server: LMServer, tmp_path: Path
    ) -> None:
        """Unregistering forgets a program; a program object of one's own is never kept."""
        config = _config(tmp_path / "data")
        async with open_app(config, lm_server=lm_server) as app:
            await app.register("gone", QA)
            await app.unregister("gone")
            await app.register("custom", Custom())
            await app.register("swapped", QA)
            await app.swap("swapped", Custom())  # its versions can no longer all be written
            await app.register("kept", QA)
        async with open_app(config, lm_server=lm_server) as again:
            assert [m.module_id for m in await again.list_modules()] == ["kept"]
            for module_id in ("gone", "custom", "swapped"):
                with pytest.raises(UnknownModule):
                    await again.describe(module_id)

    async def test_a_corrupt_program_is_skipped_and_the_app_starts(
        self, lm_server: LMServer, tmp_path: Path
    ) -> None:
        """An undecodable row and a spec that no longer builds are skipped with an event."""
        config = _config(tmp_path / "data")
        async with open_app(config, lm_server=lm_server) as app:
            for module_id in ("broken", "stale", "fine"):
                await app.register(module_id, QA)
        path = tmp_path / "data" / "modules.sqlite3"
        _raw(path, "UPDATE programs SET options = '{' WHERE module_id = 'broken'")
        _raw(path, "UPDATE versions SET spec = ? WHERE module_id = 'stale'", '{"module": "X"}')
        async with open_app(config, lm_server=lm_server) as again:
            assert [m.module_id for m in await again.list_modules()] == ["fine"]
            skipped = again.runtime.events.ring.query(type=STORE_RECORD_SKIPPED)
            problems = {e.data["record"]: e.data["problem"] for e in skipped}
            assert set(problems) == {"broken", "stale"}
            assert problems["broken"].startswith("not JSON")
            assert problems["stale"].startswith("cannot be rebuilt: ProgramSpecError")
            await again.register("broken", QA)  # the id is free again, its old rows replaced
        async with open_app(config, lm_server=lm_server) as third:
            assert [m.module_id for m in await third.list_modules()] == ["broken", "fine"]

    async def test_an_unreadable_file_restores_nothing_but_the_app_starts(
        self, lm_server: LMServer, tmp_path: Path
    ) -> None:
        """A file that is not a database is reported (record "*"); the app serves without it."""
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        (data_dir / "modules.sqlite3").write_bytes(b"this is not a database" * 100)
        async with open_app(_config(data_dir), lm_server=lm_server) as app:
            (event,) = app.runtime.events.ring.query(type=STORE_RECORD_SKIPPED)
            assert (event.data["store"], event.data["record"]) == ("programs", "*")
            assert event.data["problem"] == (
                f"the file {str(data_dir / 'modules.sqlite3')!r} cannot be read, nothing"
                " restored: file is not a database"
            )
            await app.register("qa", QA)  # not kept (the write fails and is logged), but served
            assert (await app.run("qa", {"question": "hi"})).prediction.answer

    async def test_a_foreign_programs_table_is_refused_and_left_alone(
        self, lm_server: LMServer, tmp_path: Path
    ) -> None:
        """A `programs` table of another layout restores nothing, is reported, is not written."""
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        with sqlite3.connect(data_dir / "modules.sqlite3") as db:
            db.execute("CREATE TABLE programs (name TEXT, body BLOB)")
            db.execute("INSERT INTO programs VALUES ('theirs', x'00')")
        db.close()
        async with open_app(_config(data_dir), lm_server=lm_server) as app:
            (event,) = app.runtime.events.ring.query(type=STORE_RECORD_SKIPPED)
            assert event.data["problem"].endswith(
                "table 'programs' has another layout (no column module_id, lm, options,"
                " history, next_number, updated)"
            )
            await app.register("qa", QA)
        with sqlite3.connect(data_dir / "modules.sqlite3") as db:
            assert db.execute("SELECT name FROM programs").fetchall() == [("theirs",)]
        db.close()

    async def test_memory_only_app_keeps_nothing(self, lm_server: LMServer, tmp_path: Path) -> None:
        """Without a data directory programs live in memory: a new app starts empty."""
        async with open_app(_config(None), lm_server=lm_server) as app:
            await app.register("qa", QA)
        async with open_app(_config(None), lm_server=lm_server) as again:
            assert await again.list_modules() == []


class TestTwoAppsOnOneDirectory:
    async def test_the_first_app_keeps_programs_the_second_only_reads(
        self, lm_server: LMServer, tmp_path: Path
    ) -> None:
        """A second app on the directory serves what is kept and keeps nothing (with a
        warning); it used to write its own table over the first app's, losing programs and
        versions of both without a word. The lock goes with the first app."""
        async with open_app(_config(tmp_path), lm_server=lm_server) as first:
            await first.register("qa", QA)
            with capture_logs() as logs:
                warn = LmvisorConfig.model_validate(
                    {"logging": {"level": "warning"}, "data_dir": tmp_path}
                )
                async with open_app(warn, lm_server=lm_server) as second:
                    assert (await second.describe("qa")).version == 1  # restored, served
                    await second.register("qb", QA)  # runs here, not kept
                    await second.swap("qa", {**QA, "instructions": "second's"})
            assert [e["event"] for e in logs if e["event"] == "modules.store_shared"] == [
                "modules.store_shared"
            ]
            await first.swap("qa", {**QA, "instructions": "v2"})
        async with open_app(_config(tmp_path), lm_server=lm_server) as reopened:
            assert [m.module_id for m in await reopened.list_modules()] == ["qa"]
            info = await reopened.describe("qa")
            assert (info.version, info.predictors[0].instructions) == (2, "v2")
            await reopened.register("qc", QA)  # the writer now: kept
        async with open_app(_config(tmp_path), lm_server=lm_server) as again:
            assert [m.module_id for m in await again.list_modules()] == ["qa", "qc"]
