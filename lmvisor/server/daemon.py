"""`lmvisor serve`: the daemon process — event loop, JSON logs, GC settings, signals, drain.

`serve(config)` runs the daemon until it is told to stop and returns the exit
code. In order:

1. refuse a non-loopback bind without a token (`InsecureBind`), pick the loop
   (`server.loop`: uvloop when installed, unless told otherwise), switch
   `logging.mode = "auto"` to JSON lines and configure the process's logging;
2. hold the data directory (`data_lock`: a second daemon, or a CLI run, on the same
   directory is refused with `DataDirInUse`) and bind the listening socket (a busy
   port fails here, before anything starts);
3. open what is served (`host.open_context`: the runtime's tree, the `--app`
   hook) and build the app;
4. apply the GC settings (`server.gc_tuning`): `gc.freeze()` the start-up heap
   and raise the generation-0 threshold to `server.gc_gen0_threshold`;
5. serve with uvicorn (with httptools, `http_protocol`'s protocol: a response's head
   and body in one write, a deadline for request bodies, runs cancelled when their
   client disconnects) until SIGTERM/SIGINT or the root supervisor gives up.

Drain: the first SIGTERM/SIGINT stops accepting connections, marks the daemon
draining (`/readyz` answers 503, event streams end with `end`/`shutdown`), and
lets in-flight requests finish within `server.drain_timeout`; whatever still
runs then is cancelled. A second SIGINT stops waiting at once. Then running
optimization jobs are checkpointed (stopped with their progress stored, to
resume at the next start on the same data directory), queued cache writes and
events are flushed to their files, the tree shuts down in reverse start order,
and `serve` returns 0. If the root supervisor exits while serving (a restart
intensity exceeded at the top), the daemon drains the same way and returns 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sqlite3
from collections.abc import Awaitable, Callable, Generator
from typing import Final, final

import uvicorn
from starlette.types import ASGIApp

from lmvisor.config.loading import replace_value
from lmvisor.config.schema import LmvisorConfig, ServerConfig
from lmvisor.runtime.errors import LmvisorError, SupervisorGaveUp
from lmvisor.runtime.observe.logs import LogMode, get_logger
from lmvisor.runtime.observe.names import SERVER_DRAINING, SERVER_READY, SERVER_STOPPED
from lmvisor.runtime.observe.process_logging import configure_process_logging
from lmvisor.server.app import create_app
from lmvisor.server.auth import check_bind
from lmvisor.server.context import ServerContext
from lmvisor.server.data_lock import DataDirLock
from lmvisor.server.errors import EXIT_FAILURE, EXIT_OK, StartupError
from lmvisor.server.host import RegisterHook, open_context
from lmvisor.server.http_protocol import http_protocol
from lmvisor.server.middleware import refusal_recorder
from lmvisor.services.app_lm import LoopbackMode

__all__ = [
    "Daemon",
    "bind_socket",
    "daemon_config",
    "loop_factory",
    "run_daemon",
    "serve",
    "tune_gc",
]

_BACKLOG: Final = 2048
# Stopping jobs and flushing files at shutdown: each bounded, so a stuck store cannot hang exit.
_CHECKPOINT_TIMEOUT: Final = 30.0
_log = get_logger("lmvisor.server")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: str) -> tuple[LoopFactory | None, str]:
    """The event loop factory for `server.loop` and its name (None: asyncio's default).

    Raises:
        StartupError: `choice` is "uvloop" and uvloop is not installed.
    """
    if choice == "asyncio":
        return None, "asyncio"
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise StartupError(
                "server.loop is 'uvloop' but uvloop is not installed (pip install 'lmvisor[fast]')"
            ) from None
        return None, "asyncio"
    return uvloop.new_event_loop, "uvloop"


def daemon_config(config: LmvisorConfig) -> LmvisorConfig:
    """`config` as the daemon runs it: `logging.mode = "auto"` becomes JSON lines."""
    if config.logging.mode == "auto":
        return replace_value(config, "logging.mode", "json")
    return config


def tune_gc(server: ServerConfig) -> bool:
    """Apply the GC settings when `server.gc_tuning` is on; whether they were applied.

    Everything allocated during start-up (modules, the app, the tree) is moved
    out of the collector's sight by `gc.freeze()`, and generation 0 is
    collected less often, so a busy daemon spends less time in the collector.
    """
    if not server.gc_tuning:
        return False
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(server.gc_gen0_threshold, gen1, gen2)
    return True


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host`:`port` (port 0 picks a free one).

    Raises:
        OSError: the address is busy, unknown or not allowed.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host.strip("[]"), port), family=family, backlog=_BACKLOG)


def serve(
    config: LmvisorConfig,
    *,
    register: RegisterHook | None = None,
    register_name: str = "<hook>",
    loopback_lm: LoopbackMode = "never",
) -> int:
    """Run the daemon in this process until stopped; the exit code (see the module docstring).

    `loopback_lm` is the application's opt-in to lmvisor's loopback LM (`open_app`).

    Blocks. Must run in the main thread (it installs signal handlers).

    Raises:
        InsecureBind, StartupError: before anything starts (exit code 2).
        OSError: the socket cannot be bound (exit code 1).
        StartError, AppHookFailed: the tree or the hook failed to start (exit code 1).
    """
    check_bind(config.server)
    factory, loop_name = loop_factory(config.server.loop)
    config = daemon_config(config)
    mode: LogMode = "console" if config.logging.mode == "console" else "json"
    configure_process_logging(mode, level=config.logging.level)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(
            run_daemon(
                config,
                register=register,
                register_name=register_name,
                loop_name=loop_name,
                loopback_lm=loopback_lm,
            )
        )


async def run_daemon(
    config: LmvisorConfig,
    *,
    register: RegisterHook | None = None,
    register_name: str = "<hook>",
    loop_name: str = "asyncio",
    signals: bool = True,
    loopback_lm: LoopbackMode = "never",
) -> int:
    """Bind, hold the data directory, open the served context, build the app, tune GC, and
    serve; the exit code.

    Raises:
        DataDirInUse: another daemon (or CLI run) holds `config.data_dir`.
    """
    try:
        with contextlib.ExitStack() as holds:
            lock = None
            if config.data_dir is not None:
                lock = holds.enter_context(DataDirLock(config.data_dir))
            sock = holds.enter_context(bind_socket(config.server.host, config.server.port))
            async with open_context(
                config, register=register, register_name=register_name, loopback_lm=loopback_lm
            ) as ctx:
                if lock is not None:
                    ctx.on_ready(lambda url: lock.announce(url=url))
                daemon = Daemon(ctx, create_app(ctx), sock, loop_name=loop_name)
                tuned = tune_gc(config.server)
                return await daemon.run(signals=signals, gc_tuned=tuned)
    except SupervisorGaveUp:
        return EXIT_FAILURE  # drained and logged (`server.root_exited`); the tree is down


@final
class _UvicornServer(uvicorn.Server):
    """uvicorn's server, minus its own signal handling (the daemon owns signals)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn's version re-raises the signal after shutdown, which would
        # kill the process before the tree is shut down and 0 returned.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.ready.set()


@final
class Daemon:
    """One served app on one listening socket, with drain and the root-exit watch.

    Args:
        context: what is served (its `draining` event is set on drain).
        app: the ASGI app (`create_app(context)`).
        sock: a bound, listening socket (`bind_socket`); closed by the server.
    """

    def __init__(
        self, context: ServerContext, app: ASGIApp, sock: socket.socket, *, loop_name: str = ""
    ) -> None:
        self.context = context
        self.loop_name = loop_name or type(asyncio.get_running_loop()).__module__
        self._sock = sock
        self._exit_code = EXIT_OK
        self._server = _UvicornServer(
            uvicorn.Config(
                app,
                lifespan="off",
                log_config=None,
                access_log=False,
                http=http_protocol(
                    body_timeout=context.server.body_timeout,
                    header_timeout=context.server.header_timeout,
                    send_timeout=context.server.send_timeout,
                    refused=refusal_recorder(
                        context.http_metrics, access_log=context.server.access_log
                    ),
                ),
                ws="none",
                proxy_headers=False,
                server_header=False,
                backlog=_BACKLOG,
                # Typed int, but uvicorn only hands it to asyncio.wait_for: a float is kept exact.
                timeout_graceful_shutdown=context.server.drain_timeout,  # type: ignore[arg-type]
            )
        )

    @property
    def url(self) -> str:
        """The base URL the daemon listens on."""
        host, port = self._sock.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def ready(self) -> asyncio.Event:
        """Set once the daemon accepts connections."""
        return self._server.ready

    def drain(self, reason: str) -> None:
        """Stop accepting work and let in-flight requests finish (see the module docstring).

        A second call while draining stops waiting for them.
        """
        if self.context.draining.is_set():
            self._server.force_exit = True
            _log.warning("server.drain_forced", reason=reason)
            return
        self.context.draining.set()
        self._server.should_exit = True
        self.context.runtime.events.emit(SERVER_DRAINING, {"reason": reason})
        _log.info(SERVER_DRAINING, reason=reason, drain_timeout=self.context.server.drain_timeout)

    async def run(self, *, signals: bool = True, gc_tuned: bool = False) -> int:
        """Serve until drained and return the exit code (see the module docstring)."""
        loop = asyncio.get_running_loop()
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.drain, f"signal {sig.name}")
        serving = asyncio.ensure_future(self._server.serve(sockets=[self._sock]))
        ready = asyncio.ensure_future(self._server.ready.wait())
        gave_up = False
        try:
            try:
                await asyncio.wait({ready, serving}, return_when=asyncio.FIRST_COMPLETED)
                if ready.done():
                    self._announce(gc_tuned)
                await asyncio.wait({serving})  # a wait, not an await: a cancel leaves it serving
            except asyncio.CancelledError:
                # Runtime.open cancels its body when the root supervisor gives up:
                # drain, then let the cancellation through (it raises SupervisorGaveUp)
                failure = self.context.runtime.failure
                if failure is None or serving.done():
                    raise
                gave_up = True
                self._root_gave_up(failure.reason)
            await self._finish(serving)
            if not gave_up:  # with the root gone, nothing is left to checkpoint
                await self._checkpoint()
        finally:
            if signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            ready.cancel()
        self.context.runtime.events.emit(SERVER_STOPPED, {"exit_code": self._exit_code})
        _log.info(SERVER_STOPPED, exit_code=self._exit_code)
        if gave_up:
            raise asyncio.CancelledError  # drained: Runtime.open turns this into its error
        return self._exit_code

    def _announce(self, gc_tuned: bool) -> None:
        # Callbacks first: whoever sees `server.ready` finds what they record (the data
        # directory's owner URL, a banner).
        for callback in self.context.ready_callbacks:
            try:
                callback(self.url)
            except Exception as exc:
                _log.exception("server.ready_callback_failed", error=type(exc).__name__)
        data = {"url": self.url, "pid": os.getpid(), "loop": self.loop_name, "gc_tuned": gc_tuned}
        self.context.runtime.events.emit(SERVER_READY, data)
        _log.info(SERVER_READY, **data)

    async def _checkpoint(self) -> None:
        """Before the tree stops: store running jobs' progress, flush cache writes and events."""
        context = self.context
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        if context.has_app:
            steps += [
                ("optimization jobs", context.app.suspend_optimizations),
                ("cache writes", context.app.flush_cache),
            ]
        sink = context.runtime.events.sink
        if sink is not None:
            steps.append(("events", sink.flush))
        for what, step in steps:
            try:
                async with asyncio.timeout(_CHECKPOINT_TIMEOUT):
                    done = await step()
            except (LmvisorError, OSError, RuntimeError, TimeoutError, sqlite3.Error) as exc:
                _log.error("server.checkpoint_failed", step=what, error=repr(exc))
                continue
            _log.info("server.checkpointed", step=what, result=_jsonable(done))

    def _root_gave_up(self, reason: object) -> None:
        self._exit_code = EXIT_FAILURE
        _log.critical("server.root_exited", reason=repr(reason))
        self.drain("the root supervisor exited")

    async def _finish(self, serving: asyncio.Future[None]) -> None:
        try:
            await serving
        except SystemExit:
            # uvicorn exits this way when its start-up fails.
            self._exit_code = EXIT_FAILURE
            return
        if not self.context.draining.is_set():
            self._exit_code = EXIT_FAILURE
            _log.error("server.stopped_unexpectedly")


def _jsonable(value: object) -> object:
    return value if isinstance(value, int | str | list | type(None)) else repr(value)
