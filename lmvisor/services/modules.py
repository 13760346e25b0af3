"""`Modules`: the client side of the ModuleManager, what apps, daemon handlers and optimizers call.

Writes (`register`, `swap`, `rollback`, `unregister`) are validated and built
here, in the caller's task (a bad spec fails with `ProgramSpecError` naming
the field, before any message is sent), then applied by the manager. Reads
(`get`, `describe`, `list_modules`) come straight from the module table.
`execute` starts the execution as a task under the manager's task
supervisor and waits for it, bounded by the call's deadline. The task runs in
a context prepared once per LM and cache policy (`prepare_context`, in a copy of
the task supervisor's `task_context`), so an execution sets no settings of its own.

Every method is a coroutine, and every failure is a typed error a request
handler can map to a status: `UnknownModule` (404), `ModuleAlreadyRegistered`
and `NoPreviousVersion` (409), `ProgramSpecError` / `ServiceInputError` (400).
Once the runtime has closed, every method raises `AppClosed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import math
import os
import re
import sqlite3
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from typing import Any, Final, TypeVar, final

from lmvisor._redaction import clipped
from lmvisor.programs.dspy_compat import PREDICTOR_STATE_KEYS
from lmvisor.programs.errors import StateError
from lmvisor.programs.lm import LM
from lmvisor.programs.module import Module
from lmvisor.programs.predict import Predict
from lmvisor.programs.spec import ProgramSpec, build_program, parse_program_spec
from lmvisor.runtime.actor import ActorRef
from lmvisor.runtime.correlation import correlation_scope, current_scope
from lmvisor.runtime.deadline import current_deadline
from lmvisor.runtime.errors import ActorExited, DeadlineExceeded, RuntimeClosed
from lmvisor.runtime.messages import Call
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.runtime.runtime import Runtime
from lmvisor.runtime.task_supervisor import start_task, task_context
from lmvisor.services._cutoffs import ExecutionCutoffs
from lmvisor.services._sqlite import report_skipped
from lmvisor.services.errors import (
    AppClosed,
    CorruptRecord,
    ServiceInputError,
    UnknownModule,
    VersionMoved,
)
from lmvisor.services.module_execution import (
    Execution,
    ExecutionContext,
    prepare_context,
    run_execution,
)
from lmvisor.services.module_manager import (
    MODULE_TASKS_NAME,
    MODULES_NAME,
    ModuleTable,
    Register,
    Restore,
    Rollback,
    Swap,
    Unregister,
    VersionChange,
)
from lmvisor.services.module_options import ModuleOptions, parse_module_options
from lmvisor.services.module_store import ProgramStore, rebuild_program
from lmvisor.services.module_stream import StreamSink
from lmvisor.services.module_table import ModuleInfo, ModuleRecord, spec_of
from lmvisor.services.program_id import PROGRAM_ID_PATTERN

__all__ = ["DEFAULT_TIMEOUT", "Modules", "ProgramLike"]

R = TypeVar("R")

ProgramLike = Module | ProgramSpec | Mapping[str, Any]
"""A program as `register` and `swap` take it: a Module, or a program spec (object or JSON)."""


@final
class _Default:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFAULT_TIMEOUT"


DEFAULT_TIMEOUT: Final = _Default()
"""`execute(timeout=DEFAULT_TIMEOUT)`: `modules.timeout` from the config (None: no deadline)."""

_ID: Final = re.compile(PROGRAM_ID_PATTERN)
# An execution task gets this long past the deadline to finish its fallbacks.
_GRACE: Final = 0.05
_CALL_TIMEOUT: Final = 10.0
# Prepared task contexts kept (one per LM and policy in use); beyond that they are made again.
_MAX_CONTEXTS: Final = 64
# A state swap is applied again this many times at most when other swaps keep coming first.
_STATE_SWAP_TRIES: Final = 8
# A saved file's own key beside the program's parts; and a predictor's parts as listed in an
# error (its other keys are DSPy's older or newer names, accepted but not offered).
_FILE_KEYS: Final = frozenset({"metadata"})
_PREDICTOR_PARTS: Final = PREDICTOR_STATE_KEYS - {"extended_signature", "fields"}
_SHOWN_KEY: Final = 64  # characters of a bad state key quoted in an error
_log: Final = get_logger(__name__)


@final
@dataclass(frozen=True, slots=True)
class _Failed:
    """An execution task's failure, carried back as a value (not a task crash report)."""

    error: BaseException


@final
class _TaskContexts:
    """The contexts executions start in, prepared once per (model, allow_stale) from one
    incarnation of the task supervisor (a restarted one gets new ones: its name is on them).

    Keyed by the model's name, not its LM: an execution that finds its context never asks
    for the LM, which the application gives as the same object for a model every time.
    """

    __slots__ = ("_contexts", "_of")

    def __init__(self) -> None:
        self._of: ActorRef | None = None
        self._contexts: dict[tuple[str, bool], contextvars.Context] = {}

    def find(self, sup: ActorRef, model: str, allow_stale: bool) -> contextvars.Context | None:
        """The context already prepared for `model` and `allow_stale` under `sup`, or None."""
        return self._contexts.get((model, allow_stale)) if self._of is sup else None

    async def make(
        self, sup: ActorRef, model: str, lm: LM, allow_stale: bool
    ) -> contextvars.Context:
        """Prepare (and keep) the context for `model` (its LM `lm`) and `allow_stale` under `sup`.

        Raises:
            ActorExited: `sup` is dead or stopping.
        """
        made = await task_context(sup)
        made.run(prepare_context, lm, allow_stale=allow_stale)
        if self._of is not sup:
            self._of, self._contexts = sup, {}
        elif len(self._contexts) >= _MAX_CONTEXTS:
            self._contexts.clear()
        self._contexts[model, allow_stale] = made
        return made


@final
class Modules:
    """The ModuleManager's client; obtain it from the application (`app.modules`).

    Args:
        runtime: the application's runtime (its registry names the manager).
        table: the manager's module table, read directly.
        lm_for: the application's LM for a model ("vendor/model"), the same object for
            a model every time (the contexts its executions start in are kept by model).
    """

    __slots__ = (
        "_context",
        "_cutoffs",
        "_ids",
        "_manager",
        "_prefix",
        "_runtime",
        "_table",
        "_task_contexts",
        "_tasks",
    )

    def __init__(self, runtime: Runtime, table: ModuleTable, lm_for: Callable[[str], LM]) -> None:
        self._runtime = runtime
        self._table = table
        self._manager = runtime.via(MODULES_NAME)
        self._tasks = runtime.via(MODULE_TASKS_NAME)
        self._context = ExecutionContext(events=runtime.events.ring, lm_for=lm_for)
        # Correlation ids for executions that come without one: unique, and cheaper than uuid4.
        self._prefix = os.urandom(6).hex() + "-"
        self._ids = itertools.count(1)
        self._task_contexts = _TaskContexts()
        self._cutoffs = ExecutionCutoffs()

    # --- writes -------------------------------------------------------------------------

    async def register(
        self,
        module_id: str,
        program: ProgramLike,
        *,
        options: ModuleOptions | Mapping[str, Any] | None = None,
    ) -> ModuleInfo:
        """Register `program` as the first version of `module_id` (the registry keeps its own
        copy): version 1, or for an id unregistered before, the number after its last one.

        Args:
            module_id: lowercase letters, digits, '_', '-', '.' (at most 128).
            program: a Module, or a program spec (`lmvisor.programs.spec`).
            options: its LM and fallbacks (`ModuleOptions`, or their JSON form).

        Raises:
            ServiceInputError: a malformed id or option.
            ProgramSpecError: a malformed spec (the field named).
            UnknownProvider: its model (or fallback model) names a vendor not configured.
            ModuleAlreadyRegistered: the id is taken (by a registration of this app: an id
                restored from the data directory is adopted, see `module_manager`).
        """
        self._check_open("register")
        _check_id(module_id)
        opts = parse_module_options(options)
        built, spec = _build(program, self._context.lm_for)
        lm = opts.lm or (spec.lm if spec is not None else None)
        lm = lm or self._runtime.config.modules.default_lm
        self._context.lm_for(lm)  # an unknown vendor fails here, not at the first execution
        if opts.fallback_lm is not None:
            self._context.lm_for(opts.fallback_lm)
        if spec is None:
            spec = spec_of(built, lm)
        message = Register(module_id=module_id, program=built, spec=spec, lm=lm, options=opts)
        return await self._ask(message, "register")

    async def swap(
        self,
        module_id: str,
        program: ProgramLike | None = None,
        *,
        state: Mapping[str, Any] | None = None,
    ) -> int:
        """Install a new version of `module_id`; returns its number.

        Give a whole new `program`, or only new parameters as `state` (what
        `Module.dump_state` writes: demos, instructions), applied to a copy of
        the current version. Executions already running finish on the old one.

        A version runs on the program's model: a spec naming another `lm` is refused
        (register the program again to move it to another model).

        Raises:
            ServiceInputError: neither or both of `program` and `state` given, bad `state`,
                or a spec whose `lm` is not the program's.
            ProgramSpecError: a malformed spec.
            UnknownModule: nothing is registered as `module_id`.
        """
        return (await self.swap_change(module_id, program, state=state)).version

    async def swap_change(
        self,
        module_id: str,
        program: ProgramLike | None = None,
        *,
        state: Mapping[str, Any] | None = None,
    ) -> VersionChange:
        """`swap`, replying the version installed and the one it replaced (as the manager
        saw them: another swap at the same time cannot make `previous` name its version).

        Raises:
            As `swap`.
        """
        self._check_open("swap")
        if (program is None) == (state is None):
            raise ServiceInputError(field="program", problem="give a program or a state, not both")
        if program is None:
            return await self._swap_state(module_id, state or {})
        built, spec = _build(program, self._context.lm_for)
        _check_same_lm(spec, self._record(module_id))
        if spec is None:
            spec = spec_of(built, self._record(module_id).lm)
        return await self._ask(Swap(module_id=module_id, program=built, spec=spec), "swap")

    async def _swap_state(self, module_id: str, state: Mapping[str, Any]) -> VersionChange:
        """Apply `state` to a copy of the current version and install it; again on the
        newer version when another swap or a rollback came first (`VersionMoved`)."""
        for _ in range(_STATE_SWAP_TRIES - 1):
            with contextlib.suppress(VersionMoved):
                return await self._swap_on_current(module_id, state)
        return await self._swap_on_current(module_id, state)

    async def _swap_on_current(self, module_id: str, state: Mapping[str, Any]) -> VersionChange:
        record = self._record(module_id)
        built = self._with_state(record.current.program, state)
        swap = Swap(
            module_id=module_id,
            program=built,
            spec=spec_of(built, record.lm),
            base=record.current,
        )
        return await self._ask(swap, "swap")

    async def rollback(self, module_id: str) -> int:
        """Return `module_id` to the version current before this one; returns its number.

        Raises:
            UnknownModule: nothing is registered as `module_id`.
            NoPreviousVersion: no earlier version is kept.
        """
        return (await self.rollback_change(module_id)).version

    async def rollback_change(self, module_id: str) -> VersionChange:
        """`rollback`, replying the version made current and the one it replaced.

        Raises:
            As `rollback`.
        """
        self._check_open("rollback")
        return await self._ask(Rollback(module_id=module_id), "rollback")

    async def unregister(self, module_id: str) -> None:
        """Forget `module_id` and its versions; executions already running finish.

        Raises:
            UnknownModule: nothing is registered as `module_id`.
        """
        self._check_open("unregister")
        await self._ask(Unregister(module_id=module_id), "unregister")

    async def restore(self, store: ProgramStore) -> list[str]:
        """Register again every program `store` keeps, versions and current version as kept,
        and where the numbering of each id it kept as unregistered resumes.

        Called once, when the app starts. A program whose rows cannot be decoded, or that no
        longer builds (a malformed spec, a vendor no longer configured), is skipped and
        reported (`store.record_skipped`); a file that cannot be read at all is reported
        the same way (record "*") and nothing is restored. It never stops the app from
        starting.

        Returns:
            The ids restored, by id.
        """
        events = self._runtime.events.ring
        try:
            if not store.hold():
                _log.warning(
                    "modules.store_shared", path=str(store.path),
                    reason="another app keeps programs in this directory: this app serves "
                    "what is kept and keeps nothing it registers, swaps or rolls back",
                )  # fmt: skip
            kept = await store.load(on_corrupt=lambda exc: report_skipped(events, exc))
            marks = await store.next_numbers()
        except (sqlite3.Error, OSError) as exc:
            problem = f"the file {str(store.path)!r} cannot be read, nothing restored: {exc}"
            report_skipped(events, CorruptRecord(store="programs", record="*", problem=problem))
            return []
        programs = []
        for stored in kept:
            try:
                programs.append(rebuild_program(stored, self._context.lm_for))
            except Exception as exc:  # whatever stops it from building, the app still starts
                marks[stored.module_id] = stored.next_number  # registered anew, it continues
                problem = f"cannot be rebuilt: {type(exc).__name__}: {exc}"
                report_skipped(
                    events,
                    CorruptRecord(store="programs", record=stored.module_id, problem=problem),
                )
        if not programs and not marks:
            return []
        message = Restore(programs=tuple(programs), next_numbers=tuple(marks.items()))
        return await self._ask(message, "restore")

    # --- reads --------------------------------------------------------------------------

    async def get(self, module_id: str, *, version: int | None = None) -> Module:
        """A fresh copy of the program (the current version unless `version` is given).

        Raises:
            UnknownModule: nothing is registered as `module_id`.
            ServiceInputError: `version` is not kept.
        """
        self._check_open("get")
        record = self._record(module_id)
        found = record.current if version is None else record.versions.get(version)
        if found is None:
            kept = ", ".join(str(n) for n in sorted(record.versions))
            raise ServiceInputError(field="version", problem=f"not kept (kept: {kept})")
        return found.program.deepcopy()

    async def describe(self, module_id: str) -> ModuleInfo:
        """Type, version, versions kept, predictors (signature, instructions, demos), options.

        Raises:
            UnknownModule: nothing is registered as `module_id`.
        """
        self._check_open("describe")
        return self._record(module_id).info()

    async def list_modules(self) -> list[ModuleInfo]:
        """Every registered program, by id."""
        self._check_open("list_modules")
        records = self._table.records
        return [records[module_id].info() for module_id in sorted(records)]

    # --- execution ----------------------------------------------------------------------

    async def execute(
        self,
        module_id: str,
        inputs: Mapping[str, Any],
        *,
        correlation_id: str | None = None,
        timeout: float | _Default | None = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (a deadline)
        stream: StreamSink | None = None,
    ) -> Execution:
        """Run the current version of `module_id` on `inputs` and return its `Execution`.

        Args:
            module_id: the registered program.
            inputs: its input fields.
            correlation_id: the id its events carry (the caller's scope, else a new one).
            timeout: seconds for the whole execution, fallbacks included
                (`modules.timeout` by default; None: no bound but an outer deadline).
            stream: receives each output field's text (`StreamResponse` chunks) as it
                arrives (`lmvisor.services.module_stream`); must not block.

        Cancelling the caller cancels the execution.

        Raises:
            UnknownModule: nothing is registered as `module_id`.
            ServiceInputError: `inputs` is not an object.
            DeadlineExceeded: the deadline passed first.
            CircuitOpen, RateLimited, AllStrategiesFailed, LmvisorError: see `run_execution`.
            ActorExited: the task supervisor stopped while the execution ran.
        """
        record = self._record(module_id)
        if type(inputs) is not dict and not isinstance(inputs, Mapping):
            raise ServiceInputError(field="inputs", problem="must be an object of input fields")
        version = record.current
        seconds = self._runtime.config.modules.timeout if isinstance(timeout, _Default) else timeout
        at = _deadline_in(seconds)
        ctx = self._context
        args = dict(inputs)
        # A call already in a scope keeps its id; otherwise the execution opens its own.
        made = None
        if correlation_id is None and current_scope() is None:
            made = f"{self._prefix}{next(self._ids)}"

        try:
            sup = self._tasks.resolve()
        except RuntimeClosed as exc:
            raise AppClosed.of(exc, operation="app.modules.execute()") from None
        allow_stale = record.options.allow_stale
        prepared = self._task_contexts.find(sup, record.lm, allow_stale)
        if prepared is None and (lm := self._lm_of(record)) is not None:
            prepared = await self._task_contexts.make(sup, record.lm, lm, allow_stale)

        async def job() -> Execution | _Failed:
            try:  # the task already runs under `at` (start_task's deadline): None here
                return await run_execution(
                    ctx, record, version, args, None, stream, prepared=prepared is not None
                )
            except Exception as exc:
                return _Failed(exc)

        if made is None:
            task = await start_task(
                sup, job, context=prepared, correlation_id=correlation_id, deadline=at
            )
        else:
            # An id made here holds nothing secret: marked generated, the log chain writes it
            # without a redaction pass. The task takes the scope it is started in.
            with correlation_scope(made, generated=True):
                task = await start_task(sup, job, context=prepared, deadline=at)
        outcome = await _join(task, at, self._cutoffs)
        if isinstance(outcome, _Failed):
            raise outcome.error
        return outcome

    # --- helpers ------------------------------------------------------------------------

    async def _ask(self, message: Call[R], verb: str) -> R:
        """`message`'s reply from the manager; `AppClosed` once the runtime has closed."""
        try:
            return await self._manager.call(message, timeout=_CALL_TIMEOUT)
        except RuntimeClosed as exc:
            raise AppClosed.of(exc, operation=f"app.modules.{verb}()") from None

    def _check_open(self, verb: str) -> None:
        """Refuse a read or a write once the runtime has closed and the manager is gone
        (reads touch no actor). While the tree stops the manager still serves: an
        optimization job finishing then deploys its result (refused, the job was saved as
        failed for good) and resolves its program."""
        if self._runtime.closed and self._runtime.whereis(MODULES_NAME) is None:
            raise AppClosed(namespace=self._runtime.namespace, operation=f"app.modules.{verb}()")

    def _lm_of(self, record: ModuleRecord) -> LM | None:
        """The LM `record`'s executions start with; None when it cannot be had: the execution
        then meets that error itself, where its fallbacks can answer it."""
        try:
            return self._context.lm_for(record.lm)
        except Exception:
            return None

    def _record(self, module_id: str) -> ModuleRecord:
        record = self._table.records.get(module_id)
        if record is None:
            raise UnknownModule(module_id=module_id)
        return record

    @staticmethod
    def _with_state(current: Module, state: Mapping[str, Any]) -> Module:
        program = current.deepcopy()
        _check_state_parts(program, state)
        try:
            program.load_state(state)
        except StateError as exc:
            raise ServiceInputError(field=f"state.{exc.where}", problem=exc.problem) from None
        return program

    def __repr__(self) -> str:
        return f"Modules({sorted(self._table.records)})"


def _check_id(module_id: Any) -> None:
    if not isinstance(module_id, str) or not _ID.fullmatch(module_id):
        raise ServiceInputError(
            field="module_id",
            problem="must be 1-128 of lowercase letters, digits, '_', '-', '.', starting with"
            " a letter or digit",
        )


def _check_state_parts(program: Module, state: Any) -> None:
    """Refuse a state with a part the program does not have (`"demo"` for `"demos"`, at the
    top or inside a predictor's entry): loading ignores it, so the swap would install a
    version without the change meant."""
    if not isinstance(state, Mapping):
        return  # load_state names that problem
    params = dict(program.named_parameters())
    if set(params) == {"self"}:  # a bare predictor: the state is its own
        _check_keys(state, PREDICTOR_STATE_KEYS | _FILE_KEYS, _PREDICTOR_PARTS, "state")
        return
    _check_keys(state, set(params) | _FILE_KEYS, set(params), "state")
    for name, part in state.items():
        if isinstance(params.get(name), Predict) and isinstance(part, Mapping):
            _check_keys(part, PREDICTOR_STATE_KEYS, _PREDICTOR_PARTS, f"state.{name}")


def _check_keys(state: Mapping[Any, Any], allowed: Set[str], parts: Set[str], where: str) -> None:
    unknown = sorted(str(key) for key in state if key not in allowed)
    if unknown:
        raise ServiceInputError(
            field=f"{where}.{clipped(unknown[0], _SHOWN_KEY)}",
            problem=f"not a part of this program's state (its parts: {', '.join(sorted(parts))})",
        )


def _check_same_lm(spec: ProgramSpec | None, record: ModuleRecord) -> None:
    """Refuse a swapped-in spec naming a model neither the program runs on nor one of its
    kept versions' specs named: it would be dropped without a word (and a misspelt one
    never checked). A spec registered under `options.lm` may name its own model."""
    if spec is None or spec.lm is None or spec.lm == record.lm:
        return
    named = {v.spec.lm for v in record.versions.values() if v.spec is not None}
    if spec.lm not in named:
        raise ServiceInputError(
            field="program.lm",
            problem=f"a swap keeps the program's model {record.lm!r}; "
            "unregister and register it again to change the model",
        )


def _build(program: ProgramLike, lm_for: Callable[[str], LM]) -> tuple[Module, ProgramSpec | None]:
    if isinstance(program, Module):
        return program.deepcopy(), None
    if isinstance(program, ProgramSpec | Mapping):
        spec = parse_program_spec(program)
        return build_program(spec, lm_for=lm_for), spec
    raise ServiceInputError(field="program", problem="must be a Module or a program spec")


def _deadline_in(seconds: float | None) -> float | None:
    """The absolute deadline `seconds` from now, never later than the caller's own."""
    outer = current_deadline()
    if seconds is None:
        return outer
    if math.isnan(seconds) or seconds < 0:
        raise ServiceInputError(field="timeout", problem="must be >= 0 seconds")
    at = asyncio.get_running_loop().time() + seconds
    return at if outer is None else min(outer, at)


async def _join(
    task: asyncio.Task[Execution | _Failed], at: float | None, cutoffs: ExecutionCutoffs
) -> Execution | _Failed:
    """Wait for the execution; past the deadline (and a short grace) `cutoffs` cancels it."""
    if at is None:
        cutoff = None
    else:
        cutoff = at + _GRACE
        cutoffs.watch(task, cutoff)
    try:
        return await task
    except asyncio.CancelledError:
        me = asyncio.current_task()
        if me is not None and me.cancelling():
            raise
        if cutoff is not None and asyncio.get_running_loop().time() >= cutoff:
            raise DeadlineExceeded(operation="module execution") from None
        raise ActorExited(actor=MODULE_TASKS_NAME, reason="execution task cancelled") from None
    finally:
        if cutoff is not None:
            cutoffs.forget(task)
