"""A runtime is one namespace: its registry, clock, config, observability and root supervisor.

``async with Runtime.open(config, namespace) as runtime:`` starts a root
one_for_one supervisor whose first child is the `system` supervisor (the
config service, registered as "config", and the event store, registered as
"event_store"); `start_child` adds children after it; on exit the tree shuts
down in reverse start order, then any actor spawned outside the tree, and no
task of the runtime is left running.

If the root supervisor gives up (its restart intensity is exceeded, as when
a permanent child keeps crashing), nothing is left to restart the tree, so
the owner learns at once, as an Erlang node stops when a permanent
application does: the task running the `async with` body is cancelled and
`Runtime.open` raises `SupervisorGaveUp` naming the child and its last exit
reason. `wait_closed()` gives the same answer to any other task.

Each runtime owns its config, `Metrics` registry, `RuntimeLogging` chain,
lifecycle `Reporter`, `EventStore` and named `Protections`: two runtimes in
one process share nothing. Inside an actor, and inside the `async with`
block, library loggers (`observe.logs.get_logger`) write through this
runtime's chain, and `current_runtime()` finds it from actors and the tasks
they own. Code that holds a runtime and wants the same elsewhere (a test
fixture, an embedding app's request handler) enters `runtime.as_current()`.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import uuid
from collections.abc import AsyncIterator, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, final

from lmvisor.config.schema import LmvisorConfig
from lmvisor.runtime._process import _Process
from lmvisor.runtime.actor import Actor, ActorRef, ActorStatus
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.clock import Clock, SystemClock
from lmvisor.runtime.config_service import ConfigHolder, config_service_spec
from lmvisor.runtime.errors import RuntimeClosed, StartError, SupervisorGaveUp
from lmvisor.runtime.observe.logs import RuntimeLogging, set_route, use_route
from lmvisor.runtime.observe.metrics import Metrics, RuntimeFigures
from lmvisor.runtime.observe.reports import Reporter
from lmvisor.runtime.observe.store import EventStore, event_store_spec
from lmvisor.runtime.protection.named import Protections
from lmvisor.runtime.registry import Registry, Via
from lmvisor.runtime.supervisor import (
    ChildInfo,
    Supervisor,
    delete_child,
    restart_child,
    start_child,
    terminate_child,
    which_children,
)
from lmvisor.runtime.tree import TreeNode, build_tree

__all__ = ["Runtime", "RuntimeStatistics", "current_runtime"]

_current: ContextVar[Runtime | None] = ContextVar("lmvisor_runtime", default=None)
_FACTORY = object()
_ORPHAN_SHUTDOWN = 5.0


def current_runtime() -> Runtime | None:
    """The runtime of the actor (or actor-owned task) running now, or None outside one."""
    return _current.get()


@final
@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    """How many actors are alive in the runtime, and its registry's size."""

    namespace: str
    actors: int
    names: int


@final
class Runtime:
    """One isolated namespace of actors; obtain it from `Runtime.open` only."""

    __slots__ = ("_closed", "_config", "_context", "_count", "_done", "_failure", "_loop",
                 "_owner", "_owner_cancels", "_procs", "_root", "_root_proc", "_stopping",
                 "clock", "events", "logging", "metrics", "namespace", "protections",
                 "registry", "reports")  # fmt: skip

    def __init__(
        self, token: object, *, config: LmvisorConfig, namespace: str, clock: Clock
    ) -> None:
        if token is not _FACTORY:
            raise TypeError("Runtime is created by Runtime.open(), not constructed directly")
        self._config = ConfigHolder(config)
        self.namespace = namespace
        self.clock = clock
        self.registry = Registry(namespace)
        self.logging = _logging_for(config, namespace)
        self.metrics = Metrics()
        self.metrics.set_runtime_source(self._figures)
        self.events = EventStore.from_config(config.events, namespace=namespace, clock=clock)
        self.protections = Protections(config.infrastructure, clock=clock)
        self.protections.observe(metrics=self.metrics, events=self.events.ring)
        self._procs: dict[_Process, None] = {}
        self._count = 0
        self._closed = False
        self._stopping = False
        self._root: ActorRef | None = None
        self._root_proc: _Process | None = None
        self._failure: SupervisorGaveUp | None = None
        self._owner: asyncio.Task[Any] | None = None
        self._owner_cancels = 0
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self.reports = Reporter(logging=self.logging, events=self.events.ring, loop=self._loop)
        self.events.add_flush_hook(self.reports.flush)
        self._context = contextvars.copy_context()
        self._context.run(_current.set, self)
        self._context.run(set_route, self.logging)

    @property
    def config(self) -> LmvisorConfig:
        """The configuration now in force (updates through the config service show here)."""
        return self._config.config

    def _figures(self) -> RuntimeFigures:
        restarts: dict[str, int] = {}
        depth: dict[str, int] = {}
        _collect(self.tree(), restarts, depth)
        return RuntimeFigures(actors_alive=len(self._procs), restarts=restarts, mailbox_depth=depth)

    @staticmethod
    @asynccontextmanager
    async def open(
        config: LmvisorConfig | None = None,
        namespace: str | None = None,
        *,
        clock: Clock | None = None,
    ) -> AsyncIterator[Runtime]:
        """Start a runtime, its root supervisor and its system services; stop all on exit.

        Args:
            config: the validated configuration (`lmvisor.config.load_config`);
                the schema's defaults when None (no file or environment is read).
            namespace: the namespace name (a fresh unique one when omitted).
            clock: time for restart windows, backoff and breakers (`SystemClock`
                by default).

        Shutdown on exit stops the root (children in reverse start order, each
        bounded by its spec's shutdown), then actors spawned outside the tree.

        If the root supervisor gives up meanwhile, the task that entered the
        block is cancelled there; the tree is shut down and `SupervisorGaveUp`
        is raised in place of that cancellation (a cancellation from elsewhere
        still propagates as `CancelledError`).

        Raises:
            ValueError: `namespace` is not a non-empty str.
            TypeError: `config` is not an `LmvisorConfig` (a dict of settings goes through
                `load_config(**settings)` or `lmvisor.open_app`, which validate it).
            StartError: a system service failed to start (say, the event
                store's SQLite file cannot be opened); nothing is left running.
            SupervisorGaveUp: the root supervisor gave up while the block ran.
        """
        if namespace is not None and (not isinstance(namespace, str) or not namespace.strip()):
            raise ValueError(f"Runtime.open: namespace must be a non-empty str, got {namespace!r}")
        if config is not None and not isinstance(config, LmvisorConfig):
            raise TypeError(
                "Runtime.open: config must be an LmvisorConfig (load_config(...) validates"
                f" settings), got {type(config).__name__}"
            )
        ns = namespace if namespace is not None else f"ns-{uuid.uuid4().hex[:12]}"
        cfg = config if config is not None else LmvisorConfig()
        runtime = Runtime(_FACTORY, config=cfg, namespace=ns, clock=clock or SystemClock())
        with use_route(runtime.logging):
            try:
                runtime._root = await runtime.spawn(Supervisor(), name=None)
                runtime._watch_root(asyncio.current_task())
                await runtime.start_child(runtime._system_spec())
                try:
                    yield runtime
                except asyncio.CancelledError:
                    runtime._raise_failure_for_cancel()
                    raise
                if runtime._failure is not None:
                    raise runtime._failure  # the body outlived (or swallowed) its cancellation
            finally:
                await runtime._shutdown()

    def _watch_root(self, owner: asyncio.Task[Any] | None) -> None:
        self._owner = owner
        self._owner_cancels = 0 if owner is None else owner.cancelling()
        self._root_proc = self.root._proc
        if self._root_proc.status is ActorStatus.DEAD:
            self._root_died()

    def _root_died(self) -> None:
        """The root began to exit (its `exiting`); outside an orderly close, it gave up."""
        if self._stopping:
            return
        self.registry.close()  # nothing restarts the tree: names will not come back
        root = self.root._proc
        gave_up = getattr(root.actor, "_gave_up", None)
        if gave_up is not None:
            self._failure = gave_up.error("root")
        else:
            self._failure = SupervisorGaveUp(
                supervisor="root", child_id=None, reason=root.exit_reason
            )
        if not self._done.done():
            self._done.set_result(None)
        owner = self._owner
        if owner is not None and not owner.done():
            owner.cancel(f"runtime {self.namespace!r}: the root supervisor gave up")
        else:
            self._owner = None  # nobody to cancel: the failure is raised on exit instead

    def _raise_failure_for_cancel(self) -> None:
        """Turn the cancellation this runtime caused into its `SupervisorGaveUp`."""
        owner, failure = self._owner, self._failure
        if failure is None or owner is None or owner is not asyncio.current_task():
            return
        self._owner = None
        if owner.uncancel() <= self._owner_cancels:
            raise failure

    @contextmanager
    def as_current(self) -> Iterator[Runtime]:
        """Make this the current runtime inside the block, as it is inside its actors.

        There (and in tasks started there) `current_runtime()` returns it and library
        loggers write through its chain. Blocks nest: on exit the runtime current
        before (or none) is current again. Enter and exit in one context: one task, or
        a fixture that pytest-asyncio sets up and tears down in the same context.

        Raises:
            RuntimeClosed: the runtime is closed (a `RuntimeError`).
        """
        if self._closed:
            raise RuntimeClosed(namespace=self.namespace, operation="as_current()")
        token = _current.set(self)
        try:
            with use_route(self.logging):
                yield self
        finally:
            _restore(token)

    @property
    def closed(self) -> bool:
        """True once the runtime is closed or closing: its `Runtime.open` block has exited
        (its tree may still be stopping) or its root supervisor gave up. A name that
        resolves to nothing then raises `RuntimeClosed`, not `NameNotRegistered`."""
        return self.registry._closed  # not its property: `App.run` reads this on every run

    @property
    def failure(self) -> SupervisorGaveUp | None:
        """Why the runtime stopped on its own (its root supervisor gave up), or None."""
        return self._failure

    async def wait_closed(self) -> None:
        """Wait until the runtime has closed: its block exited and its tree is down.

        Returns at once if it is closed already. Cancelling the waiter does
        not affect the runtime.

        Raises:
            SupervisorGaveUp: the root supervisor gave up (raised as soon as
                it does, before the tree's shutdown completes).
        """
        await asyncio.shield(self._done)
        if self._failure is not None:
            raise self._failure

    def _system_spec(self) -> ChildSpec:
        store, holder = self.events, self._config

        def system() -> Supervisor:
            # Both incarnations share the holder and the store, so accepted config
            # updates and recent events survive a restart of either service.
            return Supervisor(
                [config_service_spec(holder), event_store_spec(lambda: store)],
                strategy="one_for_one",
            )

        return ChildSpec("system", system, type="supervisor")

    # --- processes ---

    def _new_process(self, actor: Actor) -> _Process:
        if self._closed:
            raise RuntimeClosed(namespace=self.namespace, operation="spawning an actor")
        proc: _Process | None = getattr(actor, "_lmv_process", None)  # no property: spawn is hot
        if proc is not None:
            state = "is already running" if proc.status is not ActorStatus.DEAD else "already ran"
            raise ValueError(
                f"{type(actor).__qualname__} instance {state}; an actor instance runs once"
            )
        self._count += 1
        return _Process(self, actor, self._count)

    def _forget(self, proc: _Process) -> None:
        self._procs.pop(proc, None)

    def spawn_nowait(self, actor: Actor, *, name: Hashable | None = None) -> ActorRef:
        """Start `actor` outside the supervision tree without waiting for `started()`.

        The runtime stops it on exit. If `started()` fails, the actor exits
        with that exception (seen by links and monitors).

        Raises:
            NameAlreadyRegistered: `name` is taken (a `ValueError`).
            ValueError: `actor` is already running.
            RuntimeClosed: the runtime is closed (a `RuntimeError`).
        """
        proc = self._new_process(actor)
        if name is not None:
            self.registry.register(name, proc.ref)
        proc.start(None)
        if proc.ready is not None:
            proc.ready.add_done_callback(_retrieve)
        return proc.ref

    async def spawn(self, actor: Actor, *, name: Hashable | None = None) -> ActorRef:
        """Start `actor` outside the supervision tree and wait for its `started()`.

        Raises:
            StartError: `started()` raised (cause chained); its name is freed.
            NameAlreadyRegistered: `name` is taken (a `ValueError`).
            ValueError: `actor` is already running.
            RuntimeClosed: the runtime is closed (a `RuntimeError`).
        """
        proc = self._new_process(actor)
        if name is not None:
            self.registry.register(name, proc.ref)
        proc.start(None)
        try:
            await proc.wait_started()
        except Exception as exc:
            raise StartError(supervisor=self.namespace, child_id=proc.name, reason=exc) from exc
        return proc.ref

    # --- the root supervisor ---

    @property
    def root(self) -> ActorRef:
        """The root supervisor's ref."""
        assert self._root is not None
        return self._root

    async def start_child(self, spec: ChildSpec) -> ActorRef:
        """Start `spec` under the root supervisor; see `supervisor.start_child`."""
        return await start_child(self.root, spec)

    async def terminate_child(self, child: str | ActorRef) -> None:
        """Stop a root child without restart; see `supervisor.terminate_child`."""
        await terminate_child(self.root, child)

    async def restart_child(self, child_id: str) -> ActorRef:
        """Start a stopped root child again; see `supervisor.restart_child`."""
        return await restart_child(self.root, child_id)

    async def delete_child(self, child_id: str) -> None:
        """Forget a stopped root child's spec; see `supervisor.delete_child`."""
        await delete_child(self.root, child_id)

    async def which_children(self) -> list[ChildInfo]:
        """The root's children; see `supervisor.which_children`."""
        return await which_children(self.root)

    # --- names and inspection ---

    def whereis(self, name: Hashable) -> ActorRef | None:
        """The live actor registered as `name`, or None."""
        return self.registry.whereis(name)

    def via(self, name: Hashable) -> Via:
        """An address for `name` that follows restarts; see `Registry.via`."""
        return self.registry.via(name)

    def tree(self) -> TreeNode:
        """A snapshot of the whole supervision tree, read from statistics only."""
        return build_tree("root", self.root)

    def statistics(self) -> RuntimeStatistics:
        """Live actor count and registered names."""
        return RuntimeStatistics(
            namespace=self.namespace,
            actors=len(self._procs),
            names=self.registry.statistics().names,
        )

    async def _shutdown(self) -> None:
        self._stopping = True
        self.registry.close()
        if self._root is not None:
            await self._root.stop("shutdown", timeout=None)
        while self._procs:
            # actors outside the tree: ask all to stop, newest first, then wait for each
            procs = list(reversed(self._procs))
            for proc in procs:
                proc.request_stop("shutdown")
            for proc in procs:
                await proc.wait_done(_ORPHAN_SHUTDOWN)
                self._procs.pop(proc, None)
        self.reports.close()
        self._closed = True
        if not self._done.done():
            self._done.set_result(None)

    def __repr__(self) -> str:
        return f"<Runtime namespace={self.namespace!r} actors={len(self._procs)}>"


def _logging_for(config: LmvisorConfig, namespace: str) -> RuntimeLogging:
    mode = config.logging.mode
    if mode == "auto":
        mode = "console" if sys.stderr.isatty() else "json"
    return RuntimeLogging(namespace=namespace, mode=mode, level=config.logging.level)


def _collect(node: TreeNode, restarts: dict[str, int], depth: dict[str, int]) -> None:
    if node.kind == "supervisor":
        restarts[node.id] = sum(child.restarts for child in node.children)
    if node.mailbox_depth:
        depth[node.id] = node.mailbox_depth
    for child in node.children:
        _collect(child, restarts, depth)


def _restore(token: Token[Runtime | None]) -> None:
    try:
        _current.reset(token)
    except ValueError:
        # exited in another context than it was entered in: restore by value
        old = token.old_value
        _current.set(None if old is Token.MISSING else old)


def _retrieve(fut: Any) -> None:
    if not fut.cancelled():
        fut.exception()
