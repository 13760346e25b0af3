"""The ModuleManager: registered programs, their versions, and executions under a task supervisor.

The application tree's `modules` child is a one_for_one supervisor of two
workers: `tasks` (a `TaskSupervisor`, registered as "module_tasks") and
`manager` (this actor, registered as "modules"). The manager owns the module
table and is its only writer: `Register`, `Swap`, `Rollback` and `Unregister`
are handled one at a time, so versions are numbered without races. The
table outlives the manager's incarnations (a restarted manager keeps every
program).

Executions never pass through the manager's mailbox (it never blocks on a
program): `Modules.execute` reads the current version from the table, then
starts the execution as a task under `tasks` and waits for it. A swap while
executions run installs a new version object; the executions already
started finish on the version they began with, and every later one uses the
new version.

Each program has its own breaker (`infrastructure.circuit_breakers[<id>]`,
else the `default` entry; it counts what the runtime's breakers count, plus
retries that gave up) and, when `infrastructure.rate_limiters[<id>]` is
set, its own limiter. The manager subscribes to `infrastructure` changes and
reconfigures a program's protections in place when their config changes (executions
waiting in its limiter are re-timed, an open breaker stays open), without a
restart. Its events (`module.registered`, `module.swapped`,
`module.rolled_back`, `module.unregistered`) say what changed.

With a durable `ProgramStore` (`lmvisor.services.module_store`), every change
is written there before the next message is handled, so an app reopened on
the same data directory restores each program (`Restore`, sent by
`Modules.restore` at start) with all its versions and its current version.
Registering a restored id (code that registers its programs at every start)
adopts it rather than failing: the same program leaves it unchanged, a
different one becomes its next version.

Version numbers of an id never repeat: an id unregistered and registered again
continues after the last number it had (the table keeps that mark, and a durable
store keeps it across restarts), so an execution still running on an old version
never emits events that read like the new program's.
A program that cannot be written as a spec (a Module object of one's own) is
not kept; a write that fails is logged (`modules.persist_failed`) and the
change stays in memory.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, final

from lmvisor.config.schema import CircuitBreakerConfig, LmvisorConfig, RateLimiterConfig
from lmvisor.programs.module import Module
from lmvisor.programs.spec import ProgramSpec
from lmvisor.runtime.actor import Actor, ErrorReply, handler
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.config_service import ConfigChanged, subscribe_config
from lmvisor.runtime.errors import LmvisorError, RetryExhausted
from lmvisor.runtime.messages import Call
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.runtime.observe.names import (
    BREAKER_STATE_CHANGED,
    MODULE_REGISTERED,
    MODULE_ROLLED_BACK,
    MODULE_SWAPPED,
    MODULE_UNREGISTERED,
)
from lmvisor.runtime.protection.breaker import BreakerState, CircuitBreaker, counts_as_failure
from lmvisor.runtime.protection.limiter import RateLimiter
from lmvisor.runtime.supervisor import Supervisor
from lmvisor.runtime.task_supervisor import TaskSupervisor
from lmvisor.services.errors import ModuleAlreadyRegistered, UnknownModule, VersionMoved
from lmvisor.services.module_options import ModuleOptions
from lmvisor.services.module_store import (
    ProgramStore,
    RestoredProgram,
    retire,
    stored_program,
)
from lmvisor.services.module_table import ModuleInfo, ModuleRecord, ModuleVersion

__all__ = [
    "MODULES_NAME",
    "MODULE_TASKS_NAME",
    "ModuleManager",
    "ModuleTable",
    "Register",
    "Restore",
    "Rollback",
    "Swap",
    "Unregister",
    "VersionChange",
    "modules_spec",
]

MODULES_NAME: Final = "modules"
"""The registry name of the ModuleManager."""
MODULE_TASKS_NAME: Final = "module_tasks"
"""The registry name of the task supervisor executions run under."""

_log = get_logger(__name__)


@final
class ModuleTable:
    """The registered programs by id; shared by the manager's incarnations and its readers.

    `next_numbers` holds, for each id unregistered and not registered again, the version
    number its next registration starts at: the `MAX_RETIRED` ids unregistered last (a
    daemon registering and dropping ids of its own making must not grow for good; an id
    forgotten that long ago has no execution left that its old numbers could be confused with).
    """

    __slots__ = ("next_numbers", "records")

    def __init__(self) -> None:
        self.records: dict[str, ModuleRecord] = {}
        self.next_numbers: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"ModuleTable({sorted(self.records)})"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Register(Call[ModuleInfo]):
    """Register `program` (already built and copied) as the first version of `module_id`:
    1, or the number after the last one the id had before it was unregistered."""

    module_id: str
    program: Module
    spec: ProgramSpec | None
    lm: str
    options: ModuleOptions


@final
@dataclass(frozen=True, slots=True)
class VersionChange:
    """What a swap or a rollback did: the version it made current and the one it replaced,
    both read by the manager as it made the change (so concurrent changes never mix them)."""

    version: int
    previous: int


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Swap(Call[VersionChange]):
    """Install `program` as the next version of `module_id`; replies the change.

    `base`: the version `program` was made from (a state swap), refused with
    `VersionMoved` when another one is current by the time this arrives, so two
    state swaps at once never install one built without the other's change. Compared
    by identity, not number: the version object read is the one it was built from.
    """

    module_id: str
    program: Module
    spec: ProgramSpec | None
    base: ModuleVersion | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Rollback(Call[VersionChange]):
    """Return `module_id` to the version current before; replies the change."""

    module_id: str


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Unregister(Call[None]):
    """Forget `module_id` and all its versions (running executions finish)."""

    module_id: str


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Restore(Call[list[str]]):
    """Install programs read back from the store (ids already taken are left alone), and
    the next version numbers of ids kept as unregistered; replies the ids installed."""

    programs: tuple[RestoredProgram, ...]
    next_numbers: tuple[tuple[str, int], ...] = ()


@final
class ModuleManager(Actor):
    """Owns the module table; see the module docstring.

    Args:
        table: the module table (shared by the manager's incarnations).
        store: where programs are kept across restarts (None: nowhere).
        wall: epoch seconds for version times.
    """

    def __init__(
        self,
        table: ModuleTable,
        *,
        store: ProgramStore | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self._store = store if store is not None else ProgramStore(None)
        self._wall = wall

    async def started(self) -> None:
        await subscribe_config(self.runtime.via("config"), self.ref, "infrastructure")
        # An update accepted while no incarnation listened (a restart) was never heard:
        # the table outlives the manager, so its protections are brought up to date here.
        config = self.runtime.config
        for record in self._table.records.values():
            self._protect(record, config)

    async def terminate(self, reason: object) -> None:
        await self._store.close()

    @handler
    async def register(self, msg: Register) -> ModuleInfo | ErrorReply:
        records = self._table.records
        existing = records.get(msg.module_id)
        if existing is not None and existing.restored:
            return await self._adopt(existing, msg)
        if existing is not None:
            return ErrorReply(ModuleAlreadyRegistered(module_id=msg.module_id))
        config = self.runtime.config
        number = self._table.next_numbers.pop(msg.module_id, 1)
        version = ModuleVersion(number, msg.program, msg.spec, self._wall())
        record = ModuleRecord.first(
            msg.module_id,
            version,
            lm=msg.lm,
            options=msg.options,
            breaker=self._breaker(msg.module_id, _breaker_config(config, msg.module_id)),
            figures=self.runtime.metrics.module(msg.module_id),
        )
        self._protect(record, config)
        records[msg.module_id] = record
        self._emit(MODULE_REGISTERED, record, version=number)
        await self._keep(record, fresh=True)
        return record.info()

    @handler
    async def restore(self, msg: Restore) -> list[str]:
        marks = self._table.next_numbers
        for module_id, number in msg.next_numbers:
            if module_id not in self._table.records and number > marks.get(module_id, 1):
                retire(marks, module_id, number)
        installed = []
        for program in msg.programs:
            if program.module_id in self._table.records:
                continue
            record = self._restored_record(program)
            self._table.records[program.module_id] = record
            self._emit(MODULE_REGISTERED, record, version=record.current.number, restored=True)
            installed.append(program.module_id)
        return installed

    @handler
    async def swap(self, msg: Swap) -> VersionChange | ErrorReply:
        record = self._table.records.get(msg.module_id)
        if record is None:
            return ErrorReply(UnknownModule(module_id=msg.module_id))
        previous = record.current.number
        if msg.base is not None and msg.base is not record.current:
            moved = VersionMoved(module_id=msg.module_id, base=msg.base.number, current=previous)
            return ErrorReply(moved)
        keep = self.runtime.config.modules.max_versions
        version = record.add_version(msg.program, msg.spec, self._wall(), keep=keep)
        self._emit(MODULE_SWAPPED, record, version=version.number, previous=previous)
        await self._keep(record)
        return VersionChange(version.number, previous)

    @handler
    async def rollback(self, msg: Rollback) -> VersionChange | ErrorReply:
        record = self._table.records.get(msg.module_id)
        if record is None:
            return ErrorReply(UnknownModule(module_id=msg.module_id))
        previous = record.current.number
        try:
            version = record.rollback()
        except Exception as exc:
            return ErrorReply(exc)
        self._emit(MODULE_ROLLED_BACK, record, version=version.number, previous=previous)
        await self._keep(record)
        return VersionChange(version.number, previous)

    @handler
    async def unregister(self, msg: Unregister) -> ErrorReply | None:
        record = self._table.records.pop(msg.module_id, None)
        if record is None:
            return ErrorReply(UnknownModule(module_id=msg.module_id))
        retire(self._table.next_numbers, msg.module_id, record.next_number)
        self.runtime.events.ring.emit(MODULE_UNREGISTERED, {"module_id": msg.module_id})
        # Its series go with it: ids registered and dropped one after another would
        # otherwise grow `/metrics` for as long as the daemon runs.
        metrics = self.runtime.metrics
        metrics.forget_module(msg.module_id)
        metrics.forget_protection(record.breaker.name)
        await self._forget(msg.module_id, record.next_number)
        return None

    @handler
    def changed(self, msg: ConfigChanged) -> None:
        for record in self._table.records.values():
            self._protect(record, msg.config)

    async def _adopt(self, record: ModuleRecord, msg: Register) -> ModuleInfo:
        """A register of a restored id: the same program leaves it as it is, another one
        becomes its next version (restored versions stay for rollback); the model and
        options are the ones given. Registering it again afterwards is a duplicate."""
        record.restored = False
        record.lm, record.options = msg.lm, msg.options
        if not _same_program(record.current, msg):
            previous = record.current.number
            keep = self.runtime.config.modules.max_versions
            version = record.add_version(msg.program, msg.spec, self._wall(), keep=keep)
            self._emit(MODULE_SWAPPED, record, version=version.number, previous=previous)
        await self._keep(record)
        return record.info()

    # --- persistence ------------------------------------------------------------------

    async def _keep(self, record: ModuleRecord, *, fresh: bool = False) -> None:
        """Write `record` to the store, or take it out when it cannot be written down."""
        if not self._store.durable:
            return
        stored = stored_program(record)
        if isinstance(stored, str):
            _log.info("modules.not_persisted", module_id=record.module_id, reason=stored)
            await self._forget(record.module_id, record.next_number)
            return
        try:
            await self._store.save(stored, fresh=fresh)
        except (sqlite3.Error, OSError, TypeError, ValueError) as exc:
            _log.error("modules.persist_failed", module_id=record.module_id, error=str(exc))

    async def _forget(self, module_id: str, next_number: int) -> None:
        try:
            await self._store.delete(module_id, next_number=next_number)
        except (sqlite3.Error, OSError) as exc:
            _log.error("modules.persist_failed", module_id=module_id, error=str(exc))

    def _restored_record(self, program: RestoredProgram) -> ModuleRecord:
        config = self.runtime.config
        record = ModuleRecord.from_store(
            program.module_id, program.versions, program.history,
            next_number=program.next_number, lm=program.lm, options=program.options,
            breaker=self._breaker(program.module_id, _breaker_config(config, program.module_id)),
            figures=self.runtime.metrics.module(program.module_id),
        )  # fmt: skip
        self._protect(record, config)
        return record

    # --- protections --------------------------------------------------------------------

    def _protect(self, record: ModuleRecord, config: LmvisorConfig) -> None:
        """(Re)build the program's breaker and limiter where their config changed."""
        breaker_cfg = _breaker_config(config, record.module_id)
        limiter_cfg = config.infrastructure.rate_limiters.get(record.module_id)
        old_breaker, old_limiter = record.protection_config
        if old_breaker is not None and breaker_cfg != old_breaker:
            # In place: an open breaker stays open (a rebuilt one closed on any edit).
            record.breaker.reconfigure(**breaker_cfg.model_dump())
        if limiter_cfg != old_limiter:
            limiter = record.limiter
            if limiter is not None and limiter_cfg is not None:
                # In place: executions waiting in it are re-timed, where a new limiter
                # left them sleeping out the old rate.
                limiter.reconfigure(
                    limit=limiter_cfg.limit,
                    period=limiter_cfg.scale,
                    token_limit=limiter_cfg.tokens,
                )
            else:
                if limiter is not None:
                    limiter.lift()  # executions waiting in it go on, as later ones will
                record.limiter = None if limiter_cfg is None else self._limiter(record, limiter_cfg)
        record.protection_config = (breaker_cfg, limiter_cfg)

    def _breaker(self, module_id: str, cfg: CircuitBreakerConfig) -> CircuitBreaker:
        runtime = self.runtime
        breaker = CircuitBreaker(
            f"module:{module_id}",
            clock=runtime.clock,
            is_failure=_counts_against_module,
            **cfg.model_dump(),
        )
        breaker.add_listener(runtime.metrics.breaker_changed)
        breaker.add_listener(self._breaker_event)
        return breaker

    def _limiter(self, record: ModuleRecord, cfg: RateLimiterConfig) -> RateLimiter:
        limiter = RateLimiter(
            f"module:{record.module_id}",
            limit=cfg.limit,
            period=cfg.scale,
            token_limit=cfg.tokens,
            clock=self.runtime.clock,
        )
        limiter.add_rejection_listener(self.runtime.metrics.limiter_rejected)
        return limiter

    def _breaker_event(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        data = {"breaker": breaker.name, "old": old.name.lower(), "new": new.name.lower()}
        self.runtime.events.ring.emit(BREAKER_STATE_CHANGED, data)

    def _emit(self, kind: str, record: ModuleRecord, **data: Any) -> None:
        payload = {"module_id": record.module_id, "module_type": record.module_type, **data}
        self.runtime.events.ring.emit(kind, payload)

    def format_status(self) -> object:
        return {"modules": sorted(self._table.records)}


def _same_program(current: ModuleVersion, msg: Register) -> bool:
    """Whether `msg` registers the program `current` already is (its spec, model aside)."""
    if current.spec is None or msg.spec is None:
        return False
    mine, theirs = current.spec.to_dict(), msg.spec.to_dict()
    mine.pop("lm"), theirs.pop("lm")
    return mine == theirs


def _counts_against_module(exc: BaseException) -> bool:
    """The breaker's rule, plus retries that gave up: the LM behind the program kept failing.

    A caller's own mistake (a missing input, a malformed value: a plain ValueError or
    TypeError) never counts: one client's bad requests must not open the circuit on all.
    """
    if isinstance(exc, ValueError | TypeError) and not isinstance(exc, LmvisorError):
        return False
    return counts_as_failure(exc) or isinstance(exc, RetryExhausted)


def _breaker_config(config: LmvisorConfig, module_id: str) -> CircuitBreakerConfig:
    entries = config.infrastructure.circuit_breakers
    return entries.get(module_id) or entries.get("default") or CircuitBreakerConfig()


def modules_spec(
    table: ModuleTable, *, store: ProgramStore | None = None, id: str = "modules"
) -> ChildSpec:
    """The application tree's `modules` child: the task supervisor, then the manager.

    Args:
        table: the module table the manager owns.
        store: where programs are kept across restarts (None: nowhere).
        id: the child's id in its parent.
    """

    def start() -> Supervisor:
        return Supervisor(
            [
                ChildSpec("tasks", TaskSupervisor, name=MODULE_TASKS_NAME),
                ChildSpec("manager", lambda: ModuleManager(table, store=store), name=MODULES_NAME),
            ],
            strategy="one_for_one",
        )

    return ChildSpec(id, start, type="supervisor")
