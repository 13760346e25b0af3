"""lmvisor: DSPy's programming model on an OTP-style asyncio runtime.

The names here are the everyday surface, re-exported from the subpackages
(`lmvisor.runtime`, `lmvisor.config`, `lmvisor.programs`, `lmvisor.providers`,
`lmvisor.services`, `lmvisor.testing`); each is imported on first use, so
`import lmvisor` stays cheap and configures nothing."""

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_package

if TYPE_CHECKING:
    from lmvisor.config import ConfigError as ConfigError
    from lmvisor.config import LmvisorConfig as LmvisorConfig
    from lmvisor.config import load_config as load_config
    from lmvisor.programs import KNN as KNN
    from lmvisor.programs import LM as LM
    from lmvisor.programs import AdapterParseError as AdapterParseError
    from lmvisor.programs import Audio as Audio
    from lmvisor.programs import BestOfN as BestOfN
    from lmvisor.programs import ChainOfThought as ChainOfThought
    from lmvisor.programs import ChatAdapter as ChatAdapter
    from lmvisor.programs import Embedder as Embedder
    from lmvisor.programs import Example as Example
    from lmvisor.programs import File as File
    from lmvisor.programs import History as History
    from lmvisor.programs import Image as Image
    from lmvisor.programs import InputField as InputField
    from lmvisor.programs import JSONAdapter as JSONAdapter
    from lmvisor.programs import LMRequest as LMRequest
    from lmvisor.programs import LMResponse as LMResponse
    from lmvisor.programs import Module as Module
    from lmvisor.programs import MultiChainComparison as MultiChainComparison
    from lmvisor.programs import MultiHop as MultiHop
    from lmvisor.programs import OutputField as OutputField
    from lmvisor.programs import Parallel as Parallel
    from lmvisor.programs import Predict as Predict
    from lmvisor.programs import Prediction as Prediction
    from lmvisor.programs import ReAct as ReAct
    from lmvisor.programs import Reasoning as Reasoning
    from lmvisor.programs import Refine as Refine
    from lmvisor.programs import Signature as Signature
    from lmvisor.programs import SignatureError as SignatureError
    from lmvisor.programs import Tool as Tool
    from lmvisor.programs import ToolCallResults as ToolCallResults
    from lmvisor.programs import ToolCalls as ToolCalls
    from lmvisor.programs import TwoStepAdapter as TwoStepAdapter
    from lmvisor.programs import XMLAdapter as XMLAdapter
    from lmvisor.programs import configure as configure
    from lmvisor.programs import context as context
    from lmvisor.programs import inspect_history as inspect_history
    from lmvisor.programs import streamify as streamify
    from lmvisor.providers import ProviderError as ProviderError
    from lmvisor.runtime import Actor as Actor
    from lmvisor.runtime import ActorExited as ActorExited
    from lmvisor.runtime import ActorRef as ActorRef
    from lmvisor.runtime import Backoff as Backoff
    from lmvisor.runtime import Call as Call
    from lmvisor.runtime import CallTimeout as CallTimeout
    from lmvisor.runtime import Cast as Cast
    from lmvisor.runtime import ChildSpec as ChildSpec
    from lmvisor.runtime import CircuitOpen as CircuitOpen
    from lmvisor.runtime import Down as Down
    from lmvisor.runtime import DynamicSupervisor as DynamicSupervisor
    from lmvisor.runtime import Exit as Exit
    from lmvisor.runtime import LmvisorError as LmvisorError
    from lmvisor.runtime import MailboxFull as MailboxFull
    from lmvisor.runtime import NameAlreadyRegistered as NameAlreadyRegistered
    from lmvisor.runtime import NameNotRegistered as NameNotRegistered
    from lmvisor.runtime import RateLimited as RateLimited
    from lmvisor.runtime import Runtime as Runtime
    from lmvisor.runtime import RuntimeClosed as RuntimeClosed
    from lmvisor.runtime import StartError as StartError
    from lmvisor.runtime import Supervisor as Supervisor
    from lmvisor.runtime import SupervisorGaveUp as SupervisorGaveUp
    from lmvisor.runtime import TaskSupervisor as TaskSupervisor
    from lmvisor.runtime import correlation_scope as correlation_scope
    from lmvisor.runtime import handler as handler
    from lmvisor.services import AllStrategiesFailed as AllStrategiesFailed
    from lmvisor.services import App as App
    from lmvisor.services import AppClosed as AppClosed
    from lmvisor.services import BudgetExceeded as BudgetExceeded
    from lmvisor.services import LMServices as LMServices
    from lmvisor.services import ModuleOptions as ModuleOptions
    from lmvisor.services import NoDeploymentAvailable as NoDeploymentAvailable
    from lmvisor.services import RouterLM as RouterLM
    from lmvisor.services import open_app as open_app
    from lmvisor.services import start_lm_providers as start_lm_providers
else:
    __all__, __getattr__, __dir__ = lazy_package(__name__, __file__)
