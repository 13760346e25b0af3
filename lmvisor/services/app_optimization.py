"""The application's optimization slot: the OptimizationCoordinator's subtree wired to the app.

Jobs run through the app's default LM, resolved at each call (so an app whose default
vendor is not configured still starts, and its jobs fail typed); the model names a job's
program spec holds resolve through `app.lm`, as the ModuleManager resolves them; a job
naming a program id takes it from the ModuleManager and deploys its result there by
hot-swap; jobs and checkpoints live in `<data_dir>/optimization.sqlite3` (memory only
without a data directory).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final, final

from lmvisor.config.schema import LmvisorConfig
from lmvisor.programs.lm import LMCapabilities, LMRequest, LMResponse, LMStreamItem
from lmvisor.runtime.child_spec import ChildSpec
from lmvisor.runtime.errors import LmvisorError
from lmvisor.services.optimization_coordinator import optimization_spec

if TYPE_CHECKING:
    from lmvisor.services.app import App

__all__ = ["optimization_slot"]

_JOBS_FILE: Final = "optimization.sqlite3"


def optimization_slot(app: App, config: LmvisorConfig) -> ChildSpec:
    """The optimization subtree wired to `app` (see the module docstring); started last, after
    the app's programs are restored, since jobs it resumes may name them."""
    store = None if config.data_dir is None else config.data_dir / _JOBS_FILE
    return optimization_spec(
        lm=_DefaultLM(app),
        lm_for=app.lm,
        resolve_program=app.modules.get,
        deploy=app.modules.swap,
        store_path=store,
    )


@final
class _DefaultLM:
    """`app.lm()` resolved at each call, so an app whose default vendor is not configured
    still starts (its optimization jobs then fail with `UnknownProvider`, typed)."""

    __slots__ = ("_app",)

    def __init__(self, app: App) -> None:
        self._app = app

    @property
    def model(self) -> str:
        return self._app.default_model

    @property
    def capabilities(self) -> LMCapabilities:
        try:
            return self._app.lm().capabilities
        except LmvisorError:
            return LMCapabilities()

    async def complete(self, request: LMRequest) -> LMResponse:
        return await self._app.lm().complete(request)

    async def stream(self, request: LMRequest) -> AsyncIterator[LMStreamItem]:
        async for item in self._app.lm().stream(request):
            yield item
