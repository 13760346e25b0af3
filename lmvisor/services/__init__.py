"""lmvisor.services: the supervised LM provider actors and the router LM over them."""

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_package

if TYPE_CHECKING:
    from lmvisor.services.budget import Budget as Budget
    from lmvisor.services.budget import BudgetStatistics as BudgetStatistics
    from lmvisor.services.cooldown import Cooldowns as Cooldowns
    from lmvisor.services.cooldown import CooldownStatistics as CooldownStatistics
    from lmvisor.services.errors import BudgetExceeded as BudgetExceeded
    from lmvisor.services.errors import NoDeploymentAvailable as NoDeploymentAvailable
    from lmvisor.services.errors import ServiceError as ServiceError
    from lmvisor.services.errors import UnknownProvider as UnknownProvider
    from lmvisor.services.lm_provider import Complete as Complete
    from lmvisor.services.lm_provider import GetCapabilities as GetCapabilities
    from lmvisor.services.lm_provider import LMProvider as LMProvider
    from lmvisor.services.lm_provider import LMProviderStatistics as LMProviderStatistics
    from lmvisor.services.lm_provider import OpenStream as OpenStream
    from lmvisor.services.lm_provider import Provider as Provider
    from lmvisor.services.lm_provider import ProviderProtections as ProviderProtections
    from lmvisor.services.lm_provider import estimate_tokens as estimate_tokens
    from lmvisor.services.lm_provider import provider_name as provider_name
    from lmvisor.services.lm_provider import provider_spec as provider_spec
    from lmvisor.services.lm_services import LMServices as LMServices
    from lmvisor.services.lm_services import build_protections as build_protections
    from lmvisor.services.lm_services import build_provider as build_provider
    from lmvisor.services.lm_services import reachable as reachable
    from lmvisor.services.lm_services import start_lm_providers as start_lm_providers
    from lmvisor.services.router import RouterLM as RouterLM
    from lmvisor.services.router import split_model as split_model
else:
    __all__, __getattr__, __dir__ = lazy_package(__name__, __file__)
