"""lmvisor.testing: the loopback LM server, the scripted LM, and capture helpers for tests.

The pytest plugin (`lmvisor.testing.plugin`, registered as an entry point)
gives each test a fresh runtime namespace.
"""

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_package

if TYPE_CHECKING:
    from lmvisor.testing.capture import capture_events as capture_events
    from lmvisor.testing.capture import capture_logs as capture_logs
    from lmvisor.testing.lm_server import DEFAULT_MODELS as DEFAULT_MODELS
    from lmvisor.testing.lm_server import FaultRule as FaultRule
    from lmvisor.testing.lm_server import LMServer as LMServer
    from lmvisor.testing.lm_server import LMServerStats as LMServerStats
    from lmvisor.testing.scripted_lm import Reply as Reply
    from lmvisor.testing.scripted_lm import ScriptedLM as ScriptedLM
    from lmvisor.testing.scripted_lm import ScriptExhausted as ScriptExhausted
else:
    __all__, __getattr__, __dir__ = lazy_package(__name__, __file__)
