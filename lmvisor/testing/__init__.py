"""lmvisor.testing: the loopback LM server, the scripted LM, and capture helpers for tests.

The pytest plugin (`lmvisor.testing.plugin`, registered as an entry point)
gives each test a fresh runtime namespace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_exports

if TYPE_CHECKING:
    from lmvisor.testing.capture import (
        capture_events,
        capture_logs,
    )
    from lmvisor.testing.lm_server import (
        DEFAULT_MODELS,
        FaultRule,
        LMServer,
        LMServerStats,
    )
    from lmvisor.testing.scripted_lm import (
        Reply,
        ScriptedLM,
        ScriptExhausted,
    )

__all__ = [
    "DEFAULT_MODELS",
    "FaultRule",
    "LMServer",
    "LMServerStats",
    "Reply",
    "ScriptExhausted",
    "ScriptedLM",
    "capture_events",
    "capture_logs",
]

_EXPORTS = {
    "DEFAULT_MODELS": "lmvisor.testing.lm_server",
    "FaultRule": "lmvisor.testing.lm_server",
    "LMServer": "lmvisor.testing.lm_server",
    "LMServerStats": "lmvisor.testing.lm_server",
    "Reply": "lmvisor.testing.scripted_lm",
    "ScriptExhausted": "lmvisor.testing.scripted_lm",
    "ScriptedLM": "lmvisor.testing.scripted_lm",
    "capture_events": "lmvisor.testing.capture",
    "capture_logs": "lmvisor.testing.capture",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
