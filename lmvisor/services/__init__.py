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
        Abandon,
        Complete,
        GetCapabilities,
        GetStatistics,
        LMProvider,
        LMProviderStatistics,
        OpenStream,
        ProviderProtections,
        estimate_tokens,
        provider_name,
        provider_spec,
    )
    from lmvisor.services.lm_services import (
        LM_PROVIDERS,
        LMServices,
        build_client,
        reachable,
        start_lm_providers,
    )
    from lmvisor.services.router import (
        DEFAULT_CALL_TIMEOUT,
        RouterLM,
        split_model,
    )

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "LM_PROVIDERS",
    "Abandon",
    "Budget",
    "BudgetExceeded",
    "BudgetStatistics",
    "Complete",
    "CooldownStatistics",
    "Cooldowns",
    "GetCapabilities",
    "GetStatistics",
    "LMProvider",
    "LMProviderStatistics",
    "LMServices",
    "NoDeploymentAvailable",
    "OpenStream",
    "ProviderProtections",
    "RouterLM",
    "ServiceError",
    "UnknownProvider",
    "build_client",
    "estimate_tokens",
    "provider_name",
    "provider_spec",
    "reachable",
    "split_model",
    "start_lm_providers",
]

_EXPORTS = {
    "DEFAULT_CALL_TIMEOUT": "lmvisor.services.router",
    "LM_PROVIDERS": "lmvisor.services.lm_services",
    "Abandon": "lmvisor.services.lm_provider",
    "Budget": "lmvisor.services.budget",
    "BudgetExceeded": "lmvisor.services.errors",
    "BudgetStatistics": "lmvisor.services.budget",
    "Complete": "lmvisor.services.lm_provider",
    "CooldownStatistics": "lmvisor.services.cooldown",
    "Cooldowns": "lmvisor.services.cooldown",
    "GetCapabilities": "lmvisor.services.lm_provider",
    "GetStatistics": "lmvisor.services.lm_provider",
    "LMProvider": "lmvisor.services.lm_provider",
    "LMProviderStatistics": "lmvisor.services.lm_provider",
    "LMServices": "lmvisor.services.lm_services",
    "NoDeploymentAvailable": "lmvisor.services.errors",
    "OpenStream": "lmvisor.services.lm_provider",
    "ProviderProtections": "lmvisor.services.lm_provider",
    "RouterLM": "lmvisor.services.router",
    "ServiceError": "lmvisor.services.errors",
    "UnknownProvider": "lmvisor.services.errors",
    "build_client": "lmvisor.services.lm_services",
    "estimate_tokens": "lmvisor.services.lm_provider",
    "provider_name": "lmvisor.services.lm_provider",
    "provider_spec": "lmvisor.services.lm_provider",
    "reachable": "lmvisor.services.lm_services",
    "split_model": "lmvisor.services.router",
    "start_lm_providers": "lmvisor.services.lm_services",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
