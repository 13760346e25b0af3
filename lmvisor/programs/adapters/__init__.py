"""Adapters: how a signature becomes chat messages and a completion becomes values."""

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_package

if TYPE_CHECKING:
    from lmvisor.programs.adapters.base import Adapter as Adapter
    from lmvisor.programs.adapters.base import AdapterResult as AdapterResult
    from lmvisor.programs.adapters.base import LMInvoke as LMInvoke
    from lmvisor.programs.adapters.chat import ChatAdapter as ChatAdapter
    from lmvisor.programs.adapters.json_adapter import JSONAdapter as JSONAdapter
    from lmvisor.programs.adapters.two_step import TwoStepAdapter as TwoStepAdapter
    from lmvisor.programs.adapters.xml_adapter import XMLAdapter as XMLAdapter
else:
    __all__, __getattr__, __dir__ = lazy_package(__name__, __file__)
