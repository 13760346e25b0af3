"""Program settings: which LM and adapter a program uses, held in one ContextVar.

`configure(...)` replaces the settings of the current context (at the top of a script:
for everything that runs after). `context(...)` overrides them for a `with` block only;
overrides nest, and because they live in a ContextVar, concurrent tasks never see each
other's. The settings object is immutable: changing a setting makes a new one.

LM calls are recorded in the settings' `CallHistory` (for `inspect_history`). There is
no process-wide history: the first `configure()` or `context()` made where none is set
opens a bounded one, shared by everything under it (nested contexts, tasks started
there); a service running programs for a runtime passes its own with
`context(history=...)`. Outside any configure/context, calls are not recorded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, final

from lmvisor.programs.callbacks import Callback
from lmvisor.programs.lm import LM
from lmvisor.programs.lm_history import CallHistory

if TYPE_CHECKING:
    from lmvisor.programs.adapters.base import Adapter

__all__ = [
    "Settings",
    "active_callbacks",
    "configure",
    "context",
    "current_history",
    "current_settings",
]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What a running program reads: frozen; make a changed copy with `evolve`.

    Attributes:
        lm: the LM predictors call unless they have their own.
        adapter: formats requests and parses completions; None means `ChatAdapter()`.
        callbacks: hooks called around modules, LM calls and adapters.
        lm_params: generation options merged under each predictor's own (temperature...).
        history: where LM calls are recorded for `inspect_history` (None: not recorded).
    """

    lm: LM | None = None
    adapter: Adapter | None = None
    callbacks: tuple[Callback, ...] = ()
    lm_params: Mapping[str, Any] = field(default_factory=dict)
    history: CallHistory | None = None

    def evolve(self, **changes: Any) -> Settings:
        """A copy with `changes` applied.

        Raises:
            TypeError: a name is not a setting.
        """
        for name in changes:
            if name not in _NAMES:
                raise TypeError(f"unknown setting {name!r}")
        if "callbacks" in changes:
            changes["callbacks"] = tuple(changes["callbacks"] or ())
        if "lm_params" in changes:
            changes["lm_params"] = dict(changes["lm_params"] or {})
        return replace(self, **changes)


_NAMES = frozenset(f.name for f in fields(Settings))
_DEFAULT = Settings()
_settings: ContextVar[Settings | None] = ContextVar("lmvisor_program_settings", default=None)


def current_settings() -> Settings:
    """The settings in effect for the running task."""
    return _settings.get() or _DEFAULT


def configure(**changes: Any) -> Settings:
    """Change the settings of the current context and return the new settings.

    Tasks started afterwards from this context inherit them; tasks already running do not.

    Raises:
        TypeError: a name is not a setting.
    """
    new = _with_history(current_settings().evolve(**changes))
    _settings.set(new)
    return new


@contextmanager
def context(**overrides: Any) -> Iterator[Settings]:
    """Override settings for the `with` block (and tasks started in it).

    Raises:
        TypeError: a name is not a setting.
    """
    new = _with_history(current_settings().evolve(**overrides))
    token = _settings.set(new)
    try:
        yield new
    finally:
        _settings.reset(token)


def _with_history(settings: Settings) -> Settings:
    # The scope opened where no history is set gets its own, bounded one.
    if settings.history is not None:
        return settings
    return replace(settings, history=CallHistory())


def current_history() -> CallHistory | None:
    """Where the running task's LM calls are recorded (None outside configure/context)."""
    return current_settings().history


def active_callbacks(extra: Sequence[Callback] = ()) -> tuple[Callback, ...]:
    """The settings' callbacks followed by `extra` (a module's own)."""
    own = current_settings().callbacks
    return (*own, *extra) if extra else own
