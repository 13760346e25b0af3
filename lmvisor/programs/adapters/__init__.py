"""Adapters: how a signature becomes chat messages and a completion becomes values."""

from lmvisor.programs.adapters.base import Adapter, AdapterResult, LMInvoke
from lmvisor.programs.adapters.chat import ChatAdapter
from lmvisor.programs.adapters.json_adapter import JSONAdapter
from lmvisor.programs.adapters.two_step import TwoStepAdapter
from lmvisor.programs.adapters.xml_adapter import XMLAdapter

__all__ = [
    "Adapter",
    "AdapterResult",
    "ChatAdapter",
    "JSONAdapter",
    "LMInvoke",
    "TwoStepAdapter",
    "XMLAdapter",
]
