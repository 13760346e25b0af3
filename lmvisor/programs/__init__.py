"""lmvisor.programs: DSPy's programming model — signatures, modules, adapters — async-native.

Usable without any service: a program talks to any object satisfying the `LM` protocol.
"""

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_package

if TYPE_CHECKING:
    from lmvisor.programs.adapters import Adapter as Adapter
    from lmvisor.programs.adapters import ChatAdapter as ChatAdapter
    from lmvisor.programs.adapters import JSONAdapter as JSONAdapter
    from lmvisor.programs.adapters import TwoStepAdapter as TwoStepAdapter
    from lmvisor.programs.adapters import XMLAdapter as XMLAdapter
    from lmvisor.programs.best_of_n import BestOfN as BestOfN
    from lmvisor.programs.best_of_n import Refine as Refine
    from lmvisor.programs.callbacks import Callback as Callback
    from lmvisor.programs.chain_of_thought import ChainOfThought as ChainOfThought
    from lmvisor.programs.custom_types import Type as Type
    from lmvisor.programs.embeddings import KNN as KNN
    from lmvisor.programs.embeddings import Embedder as Embedder
    from lmvisor.programs.embeddings import Embeddings as Embeddings
    from lmvisor.programs.errors import AdapterParseError as AdapterParseError
    from lmvisor.programs.errors import ConstraintError as ConstraintError
    from lmvisor.programs.errors import LMNotConfigured as LMNotConfigured
    from lmvisor.programs.errors import MediaError as MediaError
    from lmvisor.programs.errors import ProgramError as ProgramError
    from lmvisor.programs.errors import SignatureError as SignatureError
    from lmvisor.programs.errors import StateError as StateError
    from lmvisor.programs.example import Completions as Completions
    from lmvisor.programs.example import Example as Example
    from lmvisor.programs.example import Prediction as Prediction
    from lmvisor.programs.fields import Field as Field
    from lmvisor.programs.fields import FieldSpec as FieldSpec
    from lmvisor.programs.fields import InputField as InputField
    from lmvisor.programs.fields import OutputField as OutputField
    from lmvisor.programs.generation_options import GENERATION_OPTIONS as GENERATION_OPTIONS
    from lmvisor.programs.history import History as History
    from lmvisor.programs.lm import LM as LM
    from lmvisor.programs.lm import MAX_MODEL_NAME as MAX_MODEL_NAME
    from lmvisor.programs.lm import LMCapabilities as LMCapabilities
    from lmvisor.programs.lm import LMDelta as LMDelta
    from lmvisor.programs.lm import LMDone as LMDone
    from lmvisor.programs.lm import LMRequest as LMRequest
    from lmvisor.programs.lm import LMResponse as LMResponse
    from lmvisor.programs.lm import LMStreamItem as LMStreamItem
    from lmvisor.programs.lm import ToolCall as ToolCall
    from lmvisor.programs.lm import Usage as Usage
    from lmvisor.programs.lm import model_name_problem as model_name_problem
    from lmvisor.programs.lm_history import CallHistory as CallHistory
    from lmvisor.programs.lm_history import HistoryEntry as HistoryEntry
    from lmvisor.programs.lm_history import inspect_history as inspect_history
    from lmvisor.programs.media import Audio as Audio
    from lmvisor.programs.media import File as File
    from lmvisor.programs.media import Image as Image
    from lmvisor.programs.module import Module as Module
    from lmvisor.programs.module import Parameter as Parameter
    from lmvisor.programs.multi_chain_comparison import MultiChainComparison as MultiChainComparison
    from lmvisor.programs.multihop import MultiHop as MultiHop
    from lmvisor.programs.parallel import Parallel as Parallel
    from lmvisor.programs.parallel import ParallelResult as ParallelResult
    from lmvisor.programs.predict import Predict as Predict
    from lmvisor.programs.react import ReAct as ReAct
    from lmvisor.programs.reasoning import Reasoning as Reasoning
    from lmvisor.programs.settings import Settings as Settings
    from lmvisor.programs.settings import configure as configure
    from lmvisor.programs.settings import context as context
    from lmvisor.programs.settings import current_settings as current_settings
    from lmvisor.programs.signature import Signature as Signature
    from lmvisor.programs.signature import SignatureMeta as SignatureMeta
    from lmvisor.programs.signature import compose_signatures as compose_signatures
    from lmvisor.programs.signature import ensure_signature as ensure_signature
    from lmvisor.programs.signature import make_signature as make_signature
    from lmvisor.programs.spec import MODULE_TYPES as MODULE_TYPES
    from lmvisor.programs.spec import ProgramSpec as ProgramSpec
    from lmvisor.programs.spec import ProgramSpecError as ProgramSpecError
    from lmvisor.programs.spec import build_program as build_program
    from lmvisor.programs.spec import parse_program_spec as parse_program_spec
    from lmvisor.programs.spec import program_spec as program_spec
    from lmvisor.programs.streaming import StatusMessage as StatusMessage
    from lmvisor.programs.streaming import StatusMessageProvider as StatusMessageProvider
    from lmvisor.programs.streaming import StreamListener as StreamListener
    from lmvisor.programs.streaming import StreamResponse as StreamResponse
    from lmvisor.programs.streaming import streamify as streamify
    from lmvisor.programs.tool import Tool as Tool
    from lmvisor.programs.tool_calls import ToolCallResults as ToolCallResults
    from lmvisor.programs.tool_calls import ToolCalls as ToolCalls
    from lmvisor.programs.trace import TraceEntry as TraceEntry
    from lmvisor.programs.trace import trace as trace
else:
    __all__, __getattr__, __dir__ = lazy_package(__name__, __file__)
