"""lmvisor.config: the settings schema and its loading (imports only lmvisor's leaf modules)."""

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_package

if TYPE_CHECKING:
    from lmvisor.config.errors import ConfigError as ConfigError
    from lmvisor.config.errors import ConfigProblem as ConfigProblem
    from lmvisor.config.loading import DEFAULT_CONFIG_FILE as DEFAULT_CONFIG_FILE
    from lmvisor.config.loading import ENV_PREFIX as ENV_PREFIX
    from lmvisor.config.loading import config_from_tree as config_from_tree
    from lmvisor.config.loading import get_value as get_value
    from lmvisor.config.loading import load_config as load_config
    from lmvisor.config.loading import replace_value as replace_value
    from lmvisor.config.schema import SECRET_MASK as SECRET_MASK
    from lmvisor.config.schema import BootstrapConfig as BootstrapConfig
    from lmvisor.config.schema import CacheConfig as CacheConfig
    from lmvisor.config.schema import CircuitBreakerConfig as CircuitBreakerConfig
    from lmvisor.config.schema import CoproConfig as CoproConfig
    from lmvisor.config.schema import EventsConfig as EventsConfig
    from lmvisor.config.schema import InfrastructureConfig as InfrastructureConfig
    from lmvisor.config.schema import LmvisorConfig as LmvisorConfig
    from lmvisor.config.schema import LoggingConfig as LoggingConfig
    from lmvisor.config.schema import ModulesConfig as ModulesConfig
    from lmvisor.config.schema import OptimizationConfig as OptimizationConfig
    from lmvisor.config.schema import ProviderConfig as ProviderConfig
    from lmvisor.config.schema import ProviderKind as ProviderKind
    from lmvisor.config.schema import RateLimiterConfig as RateLimiterConfig
    from lmvisor.config.schema import ServerConfig as ServerConfig
else:
    __all__, __getattr__, __dir__ = lazy_package(__name__, __file__)
