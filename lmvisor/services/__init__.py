"""lmvisor.services: the supervised LM provider actors and the router LM over them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_exports

if TYPE_CHECKING:
    from lmvisor.services.budget import (
        Budget,
        BudgetStatistics,
    )
    from lmvisor.services.cooldown import (
        Cooldowns,
        CooldownStatistics,
    )
    from lmvisor.services.errors import (
        BudgetExceeded,
        NoDeploymentAvailable,
        ServiceError,
        UnknownProvider,
    )
    from lmvisor.services.lm_provider import (
        Complete,
        GetCapabilities,
        LMProvider,
        LMProviderStatistics,
        OpenStream,
        Provider,
        ProviderProtections,
        estimate_tokens,
        provider_name,
        provider_spec,
    )
    from lmvisor.services.lm_services import (
        LMServices,
        build_protections,
        build_provider,
        reachable,
        start_lm_providers,
    )
    from lmvisor.services.router import (
        RouterLM,
        split_model,
    )

__all__ = [
    "Budget",
    "BudgetExceeded",
    "BudgetStatistics",
    "Complete",
    "CooldownStatistics",
    "Cooldowns",
    "GetCapabilities",
    "LMProvider",
    "LMProviderStatistics",
    "LMServices",
    "NoDeploymentAvailable",
    "OpenStream",
    "Provider",
    "ProviderProtections",
    "RouterLM",
    "ServiceError",
    "UnknownProvider",
    "build_protections",
    "build_provider",
    "estimate_tokens",
    "provider_name",
    "provider_spec",
    "reachable",
    "split_model",
    "start_lm_providers",
]

_EXPORTS = {
    "Budget": "lmvisor.services.budget",
    "BudgetExceeded": "lmvisor.services.errors",
    "BudgetStatistics": "lmvisor.services.budget",
    "Complete": "lmvisor.services.lm_provider",
    "CooldownStatistics": "lmvisor.services.cooldown",
    "Cooldowns": "lmvisor.services.cooldown",
    "GetCapabilities": "lmvisor.services.lm_provider",
    "LMProvider": "lmvisor.services.lm_provider",
    "LMProviderStatistics": "lmvisor.services.lm_provider",
    "LMServices": "lmvisor.services.lm_services",
    "NoDeploymentAvailable": "lmvisor.services.errors",
    "OpenStream": "lmvisor.services.lm_provider",
    "Provider": "lmvisor.services.lm_provider",
    "ProviderProtections": "lmvisor.services.lm_provider",
    "RouterLM": "lmvisor.services.router",
    "ServiceError": "lmvisor.services.errors",
    "UnknownProvider": "lmvisor.services.errors",
    "build_protections": "lmvisor.services.lm_services",
    "build_provider": "lmvisor.services.lm_services",
    "estimate_tokens": "lmvisor.services.lm_provider",
    "provider_name": "lmvisor.services.lm_provider",
    "provider_spec": "lmvisor.services.lm_provider",
    "reachable": "lmvisor.services.lm_services",
    "split_model": "lmvisor.services.router",
    "start_lm_providers": "lmvisor.services.lm_services",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
