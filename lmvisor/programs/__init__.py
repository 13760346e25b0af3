"""lmvisor.programs: DSPy's programming model — signatures, modules, adapters — async-native.

Usable without any service: a program talks to any object satisfying the `LM` protocol.
"""

from lmvisor.programs.adapters import (
    Adapter,
    ChatAdapter,
    JSONAdapter,
    TwoStepAdapter,
    XMLAdapter,
)
from lmvisor.programs.best_of_n import BestOfN, Refine
from lmvisor.programs.callbacks import Callback
from lmvisor.programs.chain_of_thought import ChainOfThought
from lmvisor.programs.custom_types import Type
from lmvisor.programs.embeddings import KNN, Embedder, Embeddings
from lmvisor.programs.errors import (
    AdapterParseError,
    ConstraintError,
    LMNotConfigured,
    MediaError,
    ProgramError,
    SignatureError,
    StateError,
)
from lmvisor.programs.example import Completions, Example, Prediction
from lmvisor.programs.fields import Field, FieldSpec, InputField, OutputField
from lmvisor.programs.generation_options import GENERATION_OPTIONS
from lmvisor.programs.history import History
from lmvisor.programs.lm import (
    LM,
    LMCapabilities,
    LMDelta,
    LMDone,
    LMRequest,
    LMResponse,
    LMStreamItem,
    ToolCall,
    Usage,
)
from lmvisor.programs.lm_history import CallHistory, HistoryEntry, inspect_history
from lmvisor.programs.media import Audio, File, Image
from lmvisor.programs.module import Module, Parameter
from lmvisor.programs.multi_chain_comparison import MultiChainComparison
from lmvisor.programs.multihop import MultiHop
from lmvisor.programs.parallel import Parallel, ParallelResult
from lmvisor.programs.predict import Predict
from lmvisor.programs.react import ReAct
from lmvisor.programs.reasoning import Reasoning
from lmvisor.programs.settings import Settings, configure, context, current_settings
from lmvisor.programs.signature import (
    Signature,
    SignatureMeta,
    compose_signatures,
    ensure_signature,
    make_signature,
)
from lmvisor.programs.spec import (
    MODULE_TYPES,
    ProgramSpec,
    ProgramSpecError,
    build_program,
    parse_program_spec,
    program_spec,
)
from lmvisor.programs.streaming import (
    StatusMessage,
    StatusMessageProvider,
    StreamListener,
    StreamResponse,
    streamify,
)
from lmvisor.programs.tool import Tool
from lmvisor.programs.tool_calls import ToolCallResults, ToolCalls
from lmvisor.programs.trace import TraceEntry, trace

__all__ = [
    "GENERATION_OPTIONS",
    "KNN",
    "LM",
    "MODULE_TYPES",
    "Adapter",
    "AdapterParseError",
    "Audio",
    "BestOfN",
    "CallHistory",
    "Callback",
    "ChainOfThought",
    "ChatAdapter",
    "Completions",
    "ConstraintError",
    "Embedder",
    "Embeddings",
    "Example",
    "Field",
    "FieldSpec",
    "File",
    "History",
    "HistoryEntry",
    "Image",
    "InputField",
    "JSONAdapter",
    "LMCapabilities",
    "LMDelta",
    "LMDone",
    "LMNotConfigured",
    "LMRequest",
    "LMResponse",
    "LMStreamItem",
    "MediaError",
    "Module",
    "MultiChainComparison",
    "MultiHop",
    "OutputField",
    "Parallel",
    "ParallelResult",
    "Parameter",
    "Predict",
    "Prediction",
    "ProgramError",
    "ProgramSpec",
    "ProgramSpecError",
    "ReAct",
    "Reasoning",
    "Refine",
    "Settings",
    "Signature",
    "SignatureError",
    "SignatureMeta",
    "StateError",
    "StatusMessage",
    "StatusMessageProvider",
    "StreamListener",
    "StreamResponse",
    "Tool",
    "ToolCall",
    "ToolCallResults",
    "ToolCalls",
    "TraceEntry",
    "TwoStepAdapter",
    "Type",
    "Usage",
    "XMLAdapter",
    "build_program",
    "compose_signatures",
    "configure",
    "context",
    "current_settings",
    "ensure_signature",
    "inspect_history",
    "make_signature",
    "parse_program_spec",
    "program_spec",
    "streamify",
    "trace",
]
