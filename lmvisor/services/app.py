"""The application tree, booted by one call: `async with open_app(config) as app:`.

    root
    ├── system        config service, event store          (Runtime.open)
    ├── cache         CacheManager: L1 memory, L2 Redis, L3 SQLite
    ├── lm_providers  one LMProvider actor per reachable vendor
    ├── modules       task supervisor + ModuleManager
    └── optimization  OptimizationCoordinator and its jobs (`lmvisor.services.app_optimization`)

Children start in that order and stop in reverse. The embedded default needs
nothing installed: L1 in memory and L3 in `<data_dir>/cache.sqlite3`
(`data_dir` defaults to `./.lmvisor`; None keeps everything in memory);
Redis only when `cache.l2_redis_url` is set. Registered programs are kept in
`<data_dir>/modules.sqlite3` with their versions and restored when an app opens
on the same directory (`lmvisor.services.module_store`: programs that can be
written as specs; a Module object of one's own is not kept).

Programs see one `LM`: `app.lm(model)`, the cache in front of the router in
front of the provider actors. `App` is the facade an embedding app, the
daemon's request handlers and the optimizers call: programs (`register`,
`run`, `swap`, `rollback`, `describe`, `list_modules`, `unregister`, `get`),
optimization jobs (`submit_optimization`, `optimization_status`,
`list_optimizations`, `cancel_optimization`, `optimization_result`,
`suspend_optimizations`), the providers' health (`provider_health`), the cache
(`cache_statistics`, `clear_cache`, `flush_cache`), the tree and the events.
Its failures are typed (see `lmvisor.services.modules`).

`loopback_lm` decides whether lmvisor's own loopback LM server answers
instead of vendors: "never" (the default, and what a daemon uses), "if_no_key"
(for scripts and examples: only when no vendor is reachable, and `app.notice`
says so), "always" (tests: whatever a program names, nothing leaves the
machine).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

from lmvisor.config.errors import ConfigError, ConfigProblem
from lmvisor.config.loading import config_from_tree, replace_value
from lmvisor.config.schema import LmvisorConfig
from lmvisor.programs.lm import LM
from lmvisor.programs.module import Module
from lmvisor.runtime.clock import Clock
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.runtime.observe.store import EventStore
from lmvisor.runtime.protection import BreakerState
from lmvisor.runtime.runtime import Runtime
from lmvisor.runtime.tree import TreeNode
from lmvisor.services.app_lm import LOOPBACK_NOTICE, LoopbackMode, choose_default_model
from lmvisor.services.app_lm import loopback_config as _loopback_config
from lmvisor.services.app_optimization import optimization_slot
from lmvisor.services.cache import (
    CACHE_NAME,
    CacheLayer,
    cache_spec,
    cache_statistics,
    clear_cache,
    flush_cache,
)
from lmvisor.services.cache_store import CacheStatistics, CacheStore
from lmvisor.services.cached_lm import CachedLM
from lmvisor.services.errors import AppClosed
from lmvisor.services.lm_provider import provider_name
from lmvisor.services.lm_services import LMServices, start_lm_providers
from lmvisor.services.module_execution import Execution
from lmvisor.services.module_manager import ModuleTable, VersionChange, modules_spec
from lmvisor.services.module_options import ModuleOptions
from lmvisor.services.module_store import ProgramStore
from lmvisor.services.module_stream import StreamSink
from lmvisor.services.module_table import ModuleInfo
from lmvisor.services.modules import DEFAULT_TIMEOUT, Modules, ProgramLike
from lmvisor.services.optimization import (
    COORDINATOR_NAME,
    OptimizationStatus,
    cancel_optimization,
    list_optimizations,
    optimization_result,
    optimization_status,
    submit_optimization,
    suspend_optimizations,
)

if TYPE_CHECKING:
    from lmvisor.testing.lm_server import LMServer

__all__ = ["App", "ProviderHealth", "open_app"]

_log = get_logger(__name__)
_PROGRAMS = "modules.sqlite3"
_SOURCE = "open_app(config=...)"
_MAX_LMS = 256
"""(model, fallbacks) pairs whose cache-fronted LM `App.lm` keeps; when full it starts
again (a `CachedLM` holds no state, so one made again is the same): programs registered
with a new model each must not grow the app for as long as it runs."""


@final
@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """One configured vendor as a readiness check sees it.

    Attributes:
        vendor: the provider's name in `providers`.
        running: its provider actor is alive.
        breaker: its circuit breaker's state: "closed", "half_open" or "open".
    """

    vendor: str
    running: bool
    breaker: str


@final
class App:
    """A running application tree; obtain it from `open_app` only.

    Once its `open_app` block has exited (or its root supervisor gave up), every method that
    would run something (programs, through `app.modules` too, optimization jobs, the cache,
    `lm`, and an LM `lm` handed out before, even for an answer its cache holds) raises
    `AppClosed`;
    `tree()`, `events` and `provider_health()` still show what the app left behind.

    Attributes:
        runtime: the namespace the tree runs in.
        modules: the ModuleManager's client.
        default_model: the model programs use unless they name another.
        notice: what the user should know about the LM in use (a vendor
            swap, the loopback LM), or None.
        loopback_url: the loopback LM server's URL when it answers, else None.
    """

    __slots__ = ("_lms", "_services", "_store", "default_model", "loopback_url", "modules",
                 "notice", "runtime")  # fmt: skip

    def __init__(
        self,
        *,
        runtime: Runtime,
        services: LMServices,
        store: CacheStore,
        table: ModuleTable,
        default_model: str,
        notice: str | None,
        loopback_url: str | None,
    ) -> None:
        self.runtime = runtime
        self.default_model = default_model
        self.notice = notice
        self.loopback_url = loopback_url
        self._services = services
        self._store = store
        self._lms: dict[tuple[str, tuple[str, ...]], CachedLM] = {}
        self.modules = Modules(runtime, table, self.lm)

    # --- the LM programs see ------------------------------------------------------------

    def lm(self, model: str | None = None, *, fallbacks: Sequence[str] = ()) -> CachedLM:
        """The cache-fronted router LM for `model` (the default model when None).

        Raises:
            UnknownProvider: the model names a vendor with no provider running.
            ValueError: a model is not "vendor/model".
        """
        self._check_open("app.lm()")
        key = (model or self.default_model, tuple(fallbacks))
        found = self._lms.get(key)
        if found is None:
            router = self._services.router(key[0], fallbacks=key[1])
            if len(self._lms) >= _MAX_LMS:
                self._lms.clear()
            found = self._lms[key] = CachedLM(router, self._store)
        return found

    def cache_in_front(self, upstream: LM) -> CachedLM:
        """The application's cache in front of any `LM` (your own client, a scripted LM)."""
        self._check_open("app.cache_in_front()")
        return CachedLM(upstream, self._store)

    # --- programs (see `Modules`) -------------------------------------------------------

    async def register(
        self,
        module_id: str,
        program: ProgramLike,
        *,
        options: ModuleOptions | Mapping[str, Any] | None = None,
    ) -> ModuleInfo:
        """Register a program; see `Modules.register`."""
        self._check_open("app.register()")
        return await self.modules.register(module_id, program, options=options)

    def run(
        self,
        module_id: str,
        inputs: Mapping[str, Any],
        *,
        correlation_id: str | None = None,
        timeout: Any = DEFAULT_TIMEOUT,
        stream: StreamSink | None = None,
    ) -> Coroutine[Any, Any, Execution]:
        """Execute a registered program (await it); see `Modules.execute` (`stream`: its
        field chunks). The coroutine is `Modules.execute`'s own: no extra frame per call, so
        on a closed app `AppClosed` is raised by this call itself, before any await."""
        self._check_open("app.run()")
        return self.modules.execute(
            module_id, inputs, correlation_id=correlation_id, timeout=timeout, stream=stream
        )

    async def swap(
        self,
        module_id: str,
        program: ProgramLike | None = None,
        *,
        state: Mapping[str, Any] | None = None,
    ) -> int:
        """Install a new version; see `Modules.swap`."""
        self._check_open("app.swap()")
        return await self.modules.swap(module_id, program, state=state)

    async def swap_change(
        self,
        module_id: str,
        program: ProgramLike | None = None,
        *,
        state: Mapping[str, Any] | None = None,
    ) -> VersionChange:
        """Install a new version; the version installed and the one it replaced (see
        `Modules.swap_change`)."""
        self._check_open("app.swap()")
        return await self.modules.swap_change(module_id, program, state=state)

    async def rollback(self, module_id: str) -> int:
        """Return to the previous version; see `Modules.rollback`."""
        self._check_open("app.rollback()")
        return await self.modules.rollback(module_id)

    async def rollback_change(self, module_id: str) -> VersionChange:
        """Return to the previous version; the version made current and the one it replaced."""
        self._check_open("app.rollback()")
        return await self.modules.rollback_change(module_id)

    async def unregister(self, module_id: str) -> None:
        """Forget a program; see `Modules.unregister`."""
        self._check_open("app.unregister()")
        await self.modules.unregister(module_id)

    async def describe(self, module_id: str) -> ModuleInfo:
        """Describe a program; see `Modules.describe`."""
        self._check_open("app.describe()")
        return await self.modules.describe(module_id)

    async def list_modules(self) -> list[ModuleInfo]:
        """Every registered program; see `Modules.list_modules`."""
        self._check_open("app.list_modules()")
        return await self.modules.list_modules()

    async def get(self, module_id: str, *, version: int | None = None) -> Module:
        """A fresh copy of a program; see `Modules.get`."""
        self._check_open("app.get()")
        return await self.modules.get(module_id, version=version)

    # --- optimization jobs (see `lmvisor.services.optimization`) ------------------------

    async def submit_optimization(self, spec: Mapping[str, Any]) -> str:
        """Submit an optimization job (its JSON spec); returns the job id."""
        self._check_open("app.submit_optimization()")
        return await submit_optimization(self.runtime.via(COORDINATOR_NAME), spec)

    async def optimization_status(self, job_id: str) -> OptimizationStatus:
        """A job's state and progress."""
        self._check_open("app.optimization_status()")
        return await optimization_status(self.runtime.via(COORDINATOR_NAME), job_id)

    async def list_optimizations(self) -> list[OptimizationStatus]:
        """Every job the coordinator knows."""
        self._check_open("app.list_optimizations()")
        return await list_optimizations(self.runtime.via(COORDINATOR_NAME))

    async def cancel_optimization(self, job_id: str) -> OptimizationStatus:
        """Cancel a running job."""
        self._check_open("app.cancel_optimization()")
        return await cancel_optimization(self.runtime.via(COORDINATOR_NAME), job_id)

    async def optimization_result(self, job_id: str) -> Module:
        """The optimized program of a finished job."""
        self._check_open("app.optimization_result()")
        return await optimization_result(self.runtime.via(COORDINATOR_NAME), job_id)

    async def suspend_optimizations(self) -> list[str]:
        """Stop every running job, its progress stored, to resume at the next start (shutdown)."""
        self._check_open("app.suspend_optimizations()")
        return await suspend_optimizations(self.runtime.via(COORDINATOR_NAME))

    # --- providers ----------------------------------------------------------------------

    def provider_health(self) -> dict[str, ProviderHealth]:
        """Each started vendor's provider: its actor alive, its breaker's state (by vendor)."""
        health = {}
        for vendor, settings in list(self._services.settings.items()):
            state = settings.protections.breaker.state
            ref = self.runtime.whereis(provider_name(vendor))
            breaker = "half_open" if state is BreakerState.HALF_OPEN else state.name.lower()
            health[vendor] = ProviderHealth(vendor, ref is not None and ref.alive, breaker)
        return health

    # --- cache, tree, events ------------------------------------------------------------

    async def cache_statistics(self) -> CacheStatistics:
        """The cache's counters and tiers (through the CacheManager)."""
        self._check_open("app.cache_statistics()")
        return await cache_statistics(self.runtime.via(CACHE_NAME))

    async def clear_cache(self, layer: CacheLayer | None = None) -> None:
        """Forget every cached answer of `layer` (every tier when None)."""
        self._check_open("app.clear_cache()")
        await clear_cache(self.runtime.via(CACHE_NAME), layer)

    async def flush_cache(self) -> None:
        """Wait until queued cache writes have reached L2/L3."""
        self._check_open("app.flush_cache()")
        await flush_cache(self.runtime.via(CACHE_NAME))

    def _check_open(self, operation: str) -> None:
        # The runtime's own closed state (its block exited, or its root gave up): the same
        # one that turns a send to a stopped service into `RuntimeClosed`, then `AppClosed`.
        if self.runtime.closed:
            raise AppClosed(namespace=self.runtime.namespace, operation=operation)

    def tree(self) -> TreeNode:
        """A snapshot of the supervision tree."""
        return self.runtime.tree()

    @property
    def events(self) -> EventStore:
        """The runtime's event store (`await app.events.query(correlation_id=...)`)."""
        return self.runtime.events

    def __repr__(self) -> str:
        return f"<App namespace={self.runtime.namespace!r} default_model={self.default_model!r}>"


@asynccontextmanager
async def open_app(
    config: LmvisorConfig | Mapping[str, Any] | None = None,
    *,
    namespace: str | None = None,
    clock: Clock | None = None,
    wall_clock: Callable[[], float] = time.time,
    loopback_lm: LoopbackMode = "never",
    lm_server: LMServer | None = None,
) -> AsyncIterator[App]:
    """Start the application tree; stop it (in reverse order) when the block exits.

    Args:
        config: the configuration (`load_config()`), or a mapping of settings validated as
            `load_config` validates them (`{"data_dir": None}`); the schema's defaults when
            None. `data_dir` is created if missing.
        namespace: the runtime's namespace (a fresh one when omitted).
        clock: monotonic time for breakers, limiters and restarts.
        wall_clock: epoch seconds for cache expiry (tests pass a fake).
        loopback_lm: when the loopback LM answers instead of vendors (module docstring).
        lm_server: a running loopback server to use (implies loopback; the caller stops it).

    Raises:
        ValueError: `loopback_lm` is not "never", "if_no_key" or "always".
        TypeError: `config` is neither an `LmvisorConfig` nor a mapping.
        ConfigError: a setting of a mapping `config` is invalid, or `data_dir` is not a
            directory and cannot be made one (a file, no permission): named by path.
        StartError: a service failed to start; nothing is left running.
    """
    if loopback_lm not in ("never", "if_no_key", "always"):
        raise ValueError(
            f"loopback_lm must be 'never', 'if_no_key' or 'always', got {loopback_lm!r}"
        )
    cfg = _app_config(config)
    async with AsyncExitStack() as stack:
        choice = choose_default_model(cfg)
        notice, url = choice.notice, None
        if (
            lm_server is not None
            or loopback_lm == "always"
            or (loopback_lm == "if_no_key" and choice.model is None)
        ):
            if lm_server is None:
                from lmvisor.testing.lm_server import LMServer

                lm_server = await stack.enter_async_context(LMServer())
            url = lm_server.url
            cfg = _loopback_config(cfg, url)
            notice = LOOPBACK_NOTICE.format(url=url) if loopback_lm != "always" else None
        elif choice.model is not None and choice.model != cfg.modules.default_lm:
            cfg = replace_value(cfg, "modules.default_lm", choice.model)
        runtime = await stack.enter_async_context(Runtime.open(cfg, namespace, clock=clock))
        app = await _start_services(runtime, cfg, wall_clock, notice, url)
        if notice is not None:
            _log.warning("app.lm_notice", notice=notice)
        try:
            yield app
        finally:
            # Running jobs stop first, their progress stored, as the daemon's shutdown does:
            # else a job whose LM calls are refused below could end as failed for good
            # instead of resuming at the next open.
            await _suspend_jobs(runtime)
            # Before the tree stops: an LM held from `app.lm()` is refused from now on, an
            # answer its cache holds included (the runtime closes as its block exits next).
            app._store.close(runtime.namespace)


async def _suspend_jobs(runtime: Runtime) -> None:
    """Suspend the app's running optimization jobs; a failure is logged, never raised (the
    app is closing either way, and a job left running resumes from its journal)."""
    try:
        await suspend_optimizations(runtime.via(COORDINATOR_NAME))
    except Exception as exc:
        _log.warning("app.jobs_not_suspended", error=str(exc))


def _app_config(config: LmvisorConfig | Mapping[str, Any] | None) -> LmvisorConfig:
    if config is None:
        cfg = LmvisorConfig()
    elif isinstance(config, LmvisorConfig):
        cfg = config
    elif isinstance(config, Mapping):
        cfg = config_from_tree(config, source=_SOURCE, action="open_app")
    else:
        raise TypeError(
            "open_app: config must be an LmvisorConfig (load_config()) or a mapping of"
            f" settings, got {type(config).__name__}"
        )
    if cfg.data_dir is not None:
        # Here, once, with the field named: each store would otherwise fail on its own
        # file in its own way (the cache degraded to memory, the jobs' store a StartError).
        try:
            cfg.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = "not a directory" if isinstance(exc, FileExistsError) else exc.strerror or exc
            problem = ConfigProblem("data_dir", f"{str(cfg.data_dir)!r} cannot be used: {why}")
            raise ConfigError(problems=[problem], action="open_app") from None
    return cfg


async def _start_services(
    runtime: Runtime,
    config: LmvisorConfig,
    wall_clock: Callable[[], float],
    notice: str | None,
    url: str | None,
) -> App:
    store = CacheStore(
        metrics=runtime.metrics,
        events=runtime.events.ring,
        wall=wall_clock,
        write_queue=config.cache.write_queue,
    )
    await runtime.start_child(cache_spec(store))
    services = await start_lm_providers(runtime, config)
    table = ModuleTable()
    programs = ProgramStore(None if config.data_dir is None else config.data_dir / _PROGRAMS)
    await runtime.start_child(modules_spec(table, store=programs))
    app = App(
        runtime=runtime,
        services=services,
        store=store,
        table=table,
        default_model=config.modules.default_lm,
        notice=notice,
        loopback_url=url,
    )
    # Before the optimization coordinator: jobs it resumes may name restored programs.
    await app.modules.restore(programs)
    await runtime.start_child(optimization_slot(app, config))
    return app
