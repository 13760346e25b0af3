"""lmvisor.services: the application tree (`open_app`) and its supervised services.

LM provider actors and the router, the CacheManager (L1 memory, L2 Redis, L3 SQLite) and the
cache-fronted LM, the ModuleManager (registered programs, versions, executions) and the
OptimizationCoordinator (optimization jobs, checkpointed).
"""

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_package

if TYPE_CHECKING:
    from lmvisor.services.app import App as App
    from lmvisor.services.app import ProviderHealth as ProviderHealth
    from lmvisor.services.app import open_app as open_app
    from lmvisor.services.app_lm import LOOPBACK_NOTICE as LOOPBACK_NOTICE
    from lmvisor.services.app_lm import LMChoice as LMChoice
    from lmvisor.services.app_lm import LoopbackMode as LoopbackMode
    from lmvisor.services.app_lm import choose_default_model as choose_default_model
    from lmvisor.services.app_lm import loopback_config as loopback_config
    from lmvisor.services.app_optimization import optimization_slot as optimization_slot
    from lmvisor.services.budget import Budget as Budget
    from lmvisor.services.budget import BudgetStatistics as BudgetStatistics
    from lmvisor.services.cache import CACHE_NAME as CACHE_NAME
    from lmvisor.services.cache import CacheLayer as CacheLayer
    from lmvisor.services.cache import CacheManager as CacheManager
    from lmvisor.services.cache import ClearCache as ClearCache
    from lmvisor.services.cache import FlushCache as FlushCache
    from lmvisor.services.cache import GetCacheStatistics as GetCacheStatistics
    from lmvisor.services.cache import cache_spec as cache_spec
    from lmvisor.services.cache import cache_statistics as cache_statistics
    from lmvisor.services.cache import clear_cache as clear_cache
    from lmvisor.services.cache import flush_cache as flush_cache
    from lmvisor.services.cache import l3_path as l3_path
    from lmvisor.services.cache_entry import CacheEntry as CacheEntry
    from lmvisor.services.cache_entry import CorruptEntry as CorruptEntry
    from lmvisor.services.cache_entry import decode_entry as decode_entry
    from lmvisor.services.cache_entry import decode_response as decode_response
    from lmvisor.services.cache_entry import encode_entry as encode_entry
    from lmvisor.services.cache_entry import encode_response as encode_response
    from lmvisor.services.cache_key import CONTROL_PARAMS as CONTROL_PARAMS
    from lmvisor.services.cache_key import SECRET_PARAMS as SECRET_PARAMS
    from lmvisor.services.cache_key import TRANSPORT_PARAMS as TRANSPORT_PARAMS
    from lmvisor.services.cache_key import cache_wanted as cache_wanted
    from lmvisor.services.cache_key import request_key as request_key
    from lmvisor.services.cache_key import vendor_request as vendor_request
    from lmvisor.services.cache_memory import MemoryTier as MemoryTier
    from lmvisor.services.cache_memory import MemoryTierStatistics as MemoryTierStatistics
    from lmvisor.services.cache_redis import RedisTier as RedisTier
    from lmvisor.services.cache_sqlite import SqliteTier as SqliteTier
    from lmvisor.services.cache_sqlite import SqliteTierStatistics as SqliteTierStatistics
    from lmvisor.services.cache_store import CacheStatistics as CacheStatistics
    from lmvisor.services.cache_store import CacheStore as CacheStore
    from lmvisor.services.cache_store import Flight as Flight
    from lmvisor.services.cache_store import TierStatistics as TierStatistics
    from lmvisor.services.cached_lm import CachedLM as CachedLM
    from lmvisor.services.cached_lm import CachePolicy as CachePolicy
    from lmvisor.services.cached_lm import CacheReport as CacheReport
    from lmvisor.services.cached_lm import cache_policy as cache_policy
    from lmvisor.services.cached_lm import cache_report as cache_report
    from lmvisor.services.cooldown import MAX_TRACKED as MAX_TRACKED
    from lmvisor.services.cooldown import Cooldowns as Cooldowns
    from lmvisor.services.cooldown import CooldownStatistics as CooldownStatistics
    from lmvisor.services.errors import AllStrategiesFailed as AllStrategiesFailed
    from lmvisor.services.errors import AppClosed as AppClosed
    from lmvisor.services.errors import BudgetExceeded as BudgetExceeded
    from lmvisor.services.errors import CacheMiss as CacheMiss
    from lmvisor.services.errors import CorruptRecord as CorruptRecord
    from lmvisor.services.errors import JobNotFinished as JobNotFinished
    from lmvisor.services.errors import JobRunsElsewhere as JobRunsElsewhere
    from lmvisor.services.errors import ModuleAlreadyRegistered as ModuleAlreadyRegistered
    from lmvisor.services.errors import NoDeploymentAvailable as NoDeploymentAvailable
    from lmvisor.services.errors import NoPreviousVersion as NoPreviousVersion
    from lmvisor.services.errors import OptimizationSpecError as OptimizationSpecError
    from lmvisor.services.errors import ServiceError as ServiceError
    from lmvisor.services.errors import ServiceInputError as ServiceInputError
    from lmvisor.services.errors import StoreBusy as StoreBusy
    from lmvisor.services.errors import StoreUnavailable as StoreUnavailable
    from lmvisor.services.errors import UnknownJob as UnknownJob
    from lmvisor.services.errors import UnknownModule as UnknownModule
    from lmvisor.services.errors import UnknownProvider as UnknownProvider
    from lmvisor.services.errors import VersionMoved as VersionMoved
    from lmvisor.services.lm_provider import Complete as Complete
    from lmvisor.services.lm_provider import Drain as Drain
    from lmvisor.services.lm_provider import GetCapabilities as GetCapabilities
    from lmvisor.services.lm_provider import GetStatistics as GetStatistics
    from lmvisor.services.lm_provider import LMProvider as LMProvider
    from lmvisor.services.lm_provider import LMProviderStatistics as LMProviderStatistics
    from lmvisor.services.lm_provider import OpenStream as OpenStream
    from lmvisor.services.lm_provider import ProviderProtections as ProviderProtections
    from lmvisor.services.lm_provider import estimate_tokens as estimate_tokens
    from lmvisor.services.lm_provider import provider_name as provider_name
    from lmvisor.services.lm_provider import provider_spec as provider_spec
    from lmvisor.services.lm_services import LM_GROUP as LM_GROUP
    from lmvisor.services.lm_services import LMServices as LMServices
    from lmvisor.services.lm_services import build_client as build_client
    from lmvisor.services.lm_services import reachable as reachable
    from lmvisor.services.lm_services import start_lm_providers as start_lm_providers
    from lmvisor.services.module_execution import CANCELLED as CANCELLED
    from lmvisor.services.module_execution import Execution as Execution
    from lmvisor.services.module_execution import ExecutionContext as ExecutionContext
    from lmvisor.services.module_execution import prepare_context as prepare_context
    from lmvisor.services.module_execution import run_execution as run_execution
    from lmvisor.services.module_manager import MODULE_TASKS_NAME as MODULE_TASKS_NAME
    from lmvisor.services.module_manager import MODULES_NAME as MODULES_NAME
    from lmvisor.services.module_manager import ModuleManager as ModuleManager
    from lmvisor.services.module_manager import ModuleTable as ModuleTable
    from lmvisor.services.module_manager import Register as Register
    from lmvisor.services.module_manager import Rollback as Rollback
    from lmvisor.services.module_manager import Swap as Swap
    from lmvisor.services.module_manager import Unregister as Unregister
    from lmvisor.services.module_manager import VersionChange as VersionChange
    from lmvisor.services.module_manager import modules_spec as modules_spec
    from lmvisor.services.module_options import FALLBACK_ORDER as FALLBACK_ORDER
    from lmvisor.services.module_options import ModuleOptions as ModuleOptions
    from lmvisor.services.module_options import check_model_name as check_model_name
    from lmvisor.services.module_options import parse_module_options as parse_module_options
    from lmvisor.services.module_stream import StreamSink as StreamSink
    from lmvisor.services.module_stream import stream_program as stream_program
    from lmvisor.services.module_table import ModuleInfo as ModuleInfo
    from lmvisor.services.module_table import ModuleRecord as ModuleRecord
    from lmvisor.services.module_table import ModuleVersion as ModuleVersion
    from lmvisor.services.module_table import PredictorInfo as PredictorInfo
    from lmvisor.services.module_table import spec_of as spec_of
    from lmvisor.services.modules import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
    from lmvisor.services.modules import Modules as Modules
    from lmvisor.services.modules import ProgramLike as ProgramLike
    from lmvisor.services.optimization import COORDINATOR_NAME as COORDINATOR_NAME
    from lmvisor.services.optimization import SUBMIT_TIMEOUT as SUBMIT_TIMEOUT
    from lmvisor.services.optimization import CancelJob as CancelJob
    from lmvisor.services.optimization import GetJob as GetJob
    from lmvisor.services.optimization import GetResult as GetResult
    from lmvisor.services.optimization import ListJobs as ListJobs
    from lmvisor.services.optimization import OptimizationStatus as OptimizationStatus
    from lmvisor.services.optimization import SubmitJob as SubmitJob
    from lmvisor.services.optimization import SuspendJobs as SuspendJobs
    from lmvisor.services.optimization import cancel_optimization as cancel_optimization
    from lmvisor.services.optimization import list_optimizations as list_optimizations
    from lmvisor.services.optimization import optimization_result as optimization_result
    from lmvisor.services.optimization import optimization_status as optimization_status
    from lmvisor.services.optimization import submit_optimization as submit_optimization
    from lmvisor.services.optimization import suspend_optimizations as suspend_optimizations
    from lmvisor.services.optimization_coordinator import (
        OptimizationCoordinator as OptimizationCoordinator,
    )
    from lmvisor.services.optimization_coordinator import optimization_spec as optimization_spec
    from lmvisor.services.optimization_job import OPTIMIZERS as OPTIMIZERS
    from lmvisor.services.optimization_job import JobSpec as JobSpec
    from lmvisor.services.optimization_job import build_optimizer as build_optimizer
    from lmvisor.services.optimization_job import load_examples as load_examples
    from lmvisor.services.optimization_job import parse_job_spec as parse_job_spec
    from lmvisor.services.optimization_job import read_examples as read_examples
    from lmvisor.services.optimization_store import ACTIVE_STATUSES as ACTIVE_STATUSES
    from lmvisor.services.optimization_store import JobRecord as JobRecord
    from lmvisor.services.optimization_store import OptimizationStore as OptimizationStore
    from lmvisor.services.optimization_store import StoreCheckpoint as StoreCheckpoint
    from lmvisor.services.optimization_worker import BUSY_RESTARTS as BUSY_RESTARTS
    from lmvisor.services.optimization_worker import JobContext as JobContext
    from lmvisor.services.optimization_worker import JobFinished as JobFinished
    from lmvisor.services.optimization_worker import JobProgress as JobProgress
    from lmvisor.services.optimization_worker import OptimizationWorker as OptimizationWorker
    from lmvisor.services.optimization_worker import error_data as error_data
    from lmvisor.services.optimization_worker import (
        job_supervisor_spec as job_supervisor_spec,
    )
    from lmvisor.services.optimization_worker import rebuild_student as rebuild_student
    from lmvisor.services.program_id import PROGRAM_ID_PATTERN as PROGRAM_ID_PATTERN
    from lmvisor.services.provider_roster import DRAIN_LIMIT as DRAIN_LIMIT
    from lmvisor.services.provider_roster import LM_PROVIDERS as LM_PROVIDERS
    from lmvisor.services.provider_roster import ProviderRoster as ProviderRoster
    from lmvisor.services.provider_roster import RosterState as RosterState
    from lmvisor.services.provider_roster import provider_roster_spec as provider_roster_spec
    from lmvisor.services.provider_settings import ProviderSettings as ProviderSettings
    from lmvisor.services.router import DEFAULT_CALL_TIMEOUT as DEFAULT_CALL_TIMEOUT
    from lmvisor.services.router import RouterLM as RouterLM
    from lmvisor.services.router import split_model as split_model
else:
    __all__, __getattr__, __dir__ = lazy_package(__name__, __file__)
