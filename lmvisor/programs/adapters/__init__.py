"""Adapters: how a signature becomes chat messages and a completion becomes values."""

from lmvisor.programs.adapters.base import Adapter, AdapterResult, LMInvoke
from lmvisor.programs.adapters.chat import ChatAdapter
from lmvisor.programs.adapters.json_adapter import JSONAdapter

__all__ = ["Adapter", "AdapterResult", "ChatAdapter", "JSONAdapter", "LMInvoke"]
