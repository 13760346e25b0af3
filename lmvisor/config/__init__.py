"""lmvisor.config: the settings schema and its loading (a leaf: imports nothing from lmvisor)."""

from lmvisor.config.errors import ConfigError, ConfigProblem
from lmvisor.config.loading import (
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    get_value,
    load_config,
    replace_value,
)
from lmvisor.config.schema import (
    BootstrapConfig,
    CacheConfig,
    CircuitBreakerConfig,
    CoproConfig,
    EventsConfig,
    InfrastructureConfig,
    LmvisorConfig,
    LoggingConfig,
    ModulesConfig,
    OptimizationConfig,
    ProviderConfig,
    ProviderKind,
    RateLimiterConfig,
    ServerConfig,
)

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "BootstrapConfig",
    "CacheConfig",
    "CircuitBreakerConfig",
    "ConfigError",
    "ConfigProblem",
    "CoproConfig",
    "EventsConfig",
    "InfrastructureConfig",
    "LmvisorConfig",
    "LoggingConfig",
    "ModulesConfig",
    "OptimizationConfig",
    "ProviderConfig",
    "ProviderKind",
    "RateLimiterConfig",
    "ServerConfig",
    "get_value",
    "load_config",
    "replace_value",
]
