"""Callbacks: hooks a user registers to watch modules, LM calls and adapters.

Hooks cover modules, LM calls, tools and adapters. Subclass `Callback` and override the
hooks you need; register instances with
`configure(callbacks=[...])`, `context(callbacks=[...])` or `Module(callbacks=...)`.
Every start hook gets a `call_id` that its matching end hook gets too. A hook that
raises is logged and ignored: watching a program never breaks it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

__all__ = ["Callback", "new_call_id", "notify"]


class Callback:
    """No-op hooks; override the ones you need."""

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """A module is about to run with `inputs`."""

    def on_module_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None
    ) -> None:
        """A module returned `outputs` or raised `exception`."""

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An LM is about to be called; `inputs["request"]` is the `LMRequest`."""

    def on_lm_end(self, call_id: str, outputs: Any | None, exception: BaseException | None) -> None:
        """An LM call returned an `LMResponse` or raised."""

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """A tool is about to run with `inputs` (its arguments)."""

    def on_tool_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None
    ) -> None:
        """A tool returned `outputs` or raised."""

    def on_adapter_format_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An adapter is about to format a signature, demos and inputs into messages."""

    def on_adapter_format_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None
    ) -> None:
        """An adapter produced messages or raised."""

    def on_adapter_parse_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An adapter is about to parse a completion."""

    def on_adapter_parse_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None
    ) -> None:
        """An adapter parsed a completion into values or raised."""


def new_call_id() -> str:
    """A fresh id pairing a start hook with its end hook."""
    return os.urandom(16).hex()


def notify(callbacks: Iterable[Callback], hook: str, *args: Any) -> None:
    """Call `hook` on each callback; a failing hook is logged, never raised."""
    for callback in callbacks:
        try:
            getattr(callback, hook)(*args)
        except Exception as exc:
            from lmvisor.runtime.observe.logs import get_logger

            get_logger("lmvisor.programs").warning(
                "programs.callback_failed",
                callback=type(callback).__name__,
                hook=hook,
                error=repr(exc),
            )
