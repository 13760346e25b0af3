"""Tests for lmvisor.config.schema: defaults, validation, immutability, secrets."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from lmvisor.config import ConfigError, load_config
from lmvisor.config.schema import (
    _MAX_MODEL_NAME,
    CircuitBreakerConfig,
    LmvisorConfig,
    ProviderConfig,
    RateLimiterConfig,
)
from lmvisor.programs.lm import MAX_MODEL_NAME


class TestDefaults:
    def test_tree_defaults_match_the_seed(self) -> None:
        """The defaults mirror the seed's configuration tree."""
        config = LmvisorConfig()
        assert config.optimization.copro.breadth == 10
        assert config.optimization.copro.depth == 3
        assert config.optimization.copro.temperature == 1.4
        assert config.optimization.copro.max_iterations == 50
        assert config.optimization.bootstrap.max_bootstrapped_demos == 4
        assert config.optimization.bootstrap.max_labeled_demos == 16
        assert config.server.host == "127.0.0.1"
        assert config.modules.default_adapter == "chat"

    def test_default_providers(self) -> None:
        """openai, anthropic and an unconfigured OpenAI-compatible `local` entry ship by default."""
        providers = LmvisorConfig().providers
        assert sorted(providers) == ["anthropic", "local", "openai"]
        assert providers["openai"].kind == "openai"
        assert providers["anthropic"].kind == "anthropic"
        assert providers["local"].kind == "openai_compatible"
        assert providers["local"].base_url is None
        assert all(p.api_key is None for p in providers.values())

    def test_default_breaker_entry(self) -> None:
        """A `default` breaker entry exists; no rate limiter is configured by default."""
        infra = LmvisorConfig().infrastructure
        assert infra.circuit_breakers == {"default": CircuitBreakerConfig()}
        assert infra.rate_limiters == {}

    def test_construction_reads_no_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Building the model directly ignores LMVISOR_ variables: loading is load_config's job."""
        monkeypatch.setenv("LMVISOR_SERVER__PORT", "1234")
        assert LmvisorConfig().server.port == 8750


class TestValidation:
    def test_unknown_key_is_rejected(self) -> None:
        """A misspelt key is an error, not a silently ignored setting."""
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            LmvisorConfig.model_validate({"server": {"prot": 1}})

    def test_provider_name_must_be_lowercase(self) -> None:
        """Provider names are lowercase identifiers, as the environment spells them."""
        with pytest.raises(ValidationError, match="provider name 'OpenAI' must be lowercase"):
            LmvisorConfig.model_validate({"providers": {"OpenAI": {}}})

    @pytest.mark.parametrize("model", ["gpt-4o", "/gpt-4o", "openai/", "openai/gpt 4o"])
    def test_default_lm_must_be_vendor_and_model(self, model: str) -> None:
        """modules.default_lm is refused at load, by its path, unless it reads 'vendor/model'."""
        with pytest.raises(
            ConfigError,
            match=r"^invalid configuration \(load, 1 problem\):\n  modules\.default_lm: Value "
            r"error, must be 'vendor/model' \(e\.g\. 'openai/gpt-4o-mini'\) \(from argument",
        ):
            load_config(env={}, modules={"default_lm": model})
        assert load_config(env={}, modules={"default_lm": "local/m/v1"}).modules.default_lm

    def test_base_url_scheme(self) -> None:
        """A provider URL must be http(s)."""
        with pytest.raises(ValidationError, match="must start with one of http://, https://"):
            ProviderConfig(base_url="ftp://example")

    @pytest.mark.parametrize(
        ("variable", "url"),
        [
            ("CACHE__L2_REDIS_URL", "redis://:hunter2@127.0.0.1:notaport/0"),
            ("CACHE__L2_REDIS_URL", "redis://:hunter2@127.0.0.1:99999/0"),
            ("CACHE__L2_REDIS_URL", "redis://user:hunter2@[::1/0"),
            ("PROVIDERS__OPENAI__BASE_URL", "http://u:hunter2@127.0.0.1:http/v1"),
            ("PROVIDERS__OPENAI__BASE_URL", "http://u:hunter2@/v1"),
            ("PROVIDERS__OPENAI__BASE_URL", "http://u:hunter2@[::1]x/v1"),
            ("PROVIDERS__OPENAI__BASE_URL", "http://u:hunter2@127.0.0\x00.1/v1"),
            ("CACHE__L2_REDIS_URL", "redis://:hunter2@/0"),
        ],
    )
    def test_urls_must_be_well_formed(self, variable: str, url: str) -> None:
        """A URL whose port or host cannot be read is refused at load (the daemon failed to
        start its cache with a bare ValueError), and the message quotes none of it."""
        with pytest.raises(ConfigError, match=r"is not a well-formed URL") as info:
            load_config(env={f"LMVISOR_{variable}": url})
        assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value.to_dict())

    @pytest.mark.parametrize(
        ("variable", "path"),
        [
            ("LMVISOR_EVENTS__RING_SIZE", "events.ring_size"),
            ("LMVISOR_SERVER__GC_GEN0_THRESHOLD", "server.gc_gen0_threshold"),
        ],
    )
    def test_sizes_past_what_c_takes_are_refused(self, variable: str, path: str) -> None:
        """A count the runtime hands to C (a deque's length, gc's threshold) is bounded at
        load; 10**30 stopped the daemon at start with an OverflowError."""
        with pytest.raises(ConfigError, match=rf"{path}: Input should be less than or equal"):
            load_config(env={variable: str(10**30)})

    def test_credentials_in_the_url_and_an_api_key_are_refused(self) -> None:
        """An OpenAI-wire endpoint with credentials in its URL and an api_key would send two
        Authorization headers (every call failed, reported as the caller's bad input): refused
        at load, naming the provider, quoting neither secret; Anthropic's key is its own header."""
        url = "http://user:hunter2@127.0.0.1:9/v1"
        with pytest.raises(ConfigError, match=r"providers\.local: .*keep one") as info:
            load_config(env={}, providers={"local": {"base_url": url, "api_key": "sk-secret1"}})
        shown = str(info.value) + repr(info.value.to_dict())
        assert "hunter2" not in shown and "sk-secret1" not in shown
        load_config(env={}, providers={"local": {"base_url": url}})
        anthropic = {"kind": "anthropic", "base_url": url, "api_key": "sk-secret1"}
        load_config(env={}, providers={"local": anthropic})

    def test_rate_limiter_needs_a_limit(self) -> None:
        """A rate limiter entry without a limit is incomplete."""
        with pytest.raises(ValidationError, match="limit"):
            RateLimiterConfig.model_validate({"scale": 1})

    @pytest.mark.parametrize(
        ("section", "entry", "field", "problem"),
        [
            ("rate_limiters", {"limit": 0.5}, "limit", "greater than or equal to 1"),
            ("rate_limiters", {"limit": 1e-9}, "limit", "greater than or equal to 1"),
            ("rate_limiters", {"limit": 2, "tokens": 0.5}, "tokens", "greater than or equal to 1"),
            ("rate_limiters", {"limit": float("inf")}, "limit", "a finite number"),
            ("rate_limiters", {"limit": 2, "scale": float("inf")}, "scale", "a finite number"),
            ("circuit_breakers", {"recovery_time": float("inf")}, "recovery_time", "a finite"),
        ],
    )
    def test_protections_that_could_never_admit_or_recover_are_refused(
        self, section: str, entry: dict[str, float], field: str, problem: str
    ) -> None:
        """A limiter below one request per period (it would never admit a call: every
        acquire waited forever) or an infinite period or recovery is refused at load,
        naming the field."""
        pattern = rf"infrastructure\.{section}\.m\.{field}: Input should be {problem}"
        with pytest.raises(ConfigError, match=pattern):
            load_config(env={}, infrastructure={section: {"m": entry}})

    def test_model_and_provider_names_are_bounded(self) -> None:
        """A model name past 256 characters (as `programs.lm.MAX_MODEL_NAME`) or a provider
        name past 128 is refused naming the field, and the name is not echoed whole."""
        huge = "openai/" + "x" * 100_000
        with pytest.raises(
            ConfigError, match=r"modules\.default_lm: String should have at most 256"
        ) as e:
            load_config(env={}, modules={"default_lm": huge})
        assert huge not in str(e.value)
        with pytest.raises(
            ConfigError, match=r"providers\.local\.default_model: String should have at most 256"
        ):
            load_config(env={}, providers={"local": {"default_model": "m" * 257}})
        with pytest.raises(
            ConfigError,
            match=r"provider name 'x{32}\.\.\.\[99968 more chars\]' must be at most 128 characters",
        ) as e:
            load_config(env={}, providers={"x" * 100_000: {"kind": "openai"}})
        assert "x" * 100 not in str(e.value)
        load_config(
            env={},
            modules={"default_lm": "a/" + "b" * 254},
            providers={"p" * 128: {"kind": "openai"}},
        )
        assert _MAX_MODEL_NAME == MAX_MODEL_NAME

    @pytest.mark.parametrize(
        ("path", "field", "value", "bound"),
        [
            ("infrastructure.circuit_breakers.m", "success_threshold", 10**9, 100),
            ("infrastructure.circuit_breakers.m", "failure_threshold", 1001, 1000),
            ("cache.l2_breaker", "success_threshold", 101, 100),
            ("cache.l2_breaker", "recovery_time", 1e300, 86400),
        ],
    )
    def test_breaker_settings_are_bounded(
        self, path: str, field: str, value: float, bound: int
    ) -> None:
        """A breaker setting past its bound is refused naming the field (a success threshold of
        10**9 kept a half-open breaker admitting one call at a time for good); the bound
        itself is accepted."""

        def nested(count: int) -> dict[str, Any]:
            tree: dict[str, Any] = {field: count}
            for part in reversed(path.split(".")[1:]):
                tree = {part: tree}
            return tree

        section = path.split(".")[0]
        problem = rf"\n  {re.escape(path)}\.{field}: Input should be less than or equal to {bound}"
        with pytest.raises(ConfigError, match=problem):
            load_config(env={}, **{section: nested(value)})
        load_config(env={}, **{section: nested(bound)})

    @pytest.mark.parametrize(
        ("section", "field"),
        [("modules", "cache_ttl"), ("cache", "l1_ttl"), ("cache", "stale_ttl")],
    )
    def test_cache_lifetimes_are_at_most_a_century(self, section: str, field: str) -> None:
        """An infinite or huge cache lifetime is refused naming the field (its Redis TTL
        overflowed and crashed the cache's writer); a century is accepted."""
        for value in (float("inf"), 1e308):
            with pytest.raises(ConfigError, match=rf"{section}\.{field}: Input should be"):
                load_config(env={}, **{section: {field: value}})
        century = 100 * 365 * 86_400.0
        assert load_config(env={}, **{section: {field: century}})

    @pytest.mark.parametrize(
        ("section", "field", "value", "problem"),
        [
            ("events", "flush_interval", 1e-300, "greater than or equal to 0.01"),
            ("events", "flush_interval", float("inf"), "a finite number"),
            ("events", "flush_interval", 86_400.0, "less than or equal to 3600"),
            ("server", "sse_heartbeat", 1e-300, "greater than or equal to 0.1"),
            ("server", "body_timeout", 0.0, "greater than or equal to 0.1"),
            ("server", "body_timeout", float("inf"), "a finite number"),
            ("server", "body_timeout", 86_400.0, "less than or equal to 3600"),
            ("server", "header_timeout", 0.0, "greater than or equal to 0.1"),
            ("server", "header_timeout", float("nan"), "a finite number"),
            ("server", "header_timeout", 86_400.0, "less than or equal to 3600"),
            ("server", "send_timeout", 0.0, "greater than or equal to 0.1"),
            ("server", "send_timeout", float("inf"), "a finite number"),
            ("server", "send_timeout", 86_400.0, "less than or equal to 3600"),
            ("cache", "l3_busy_timeout", float("inf"), "a finite number"),
            ("cache", "l3_busy_timeout", 1e308, "less than or equal to 3600"),
        ],
    )
    def test_intervals_that_would_spin_or_stall_are_refused(
        self, section: str, field: str, value: float, problem: str
    ) -> None:
        """A flush interval of 1e-300 s kept a core busy flushing nothing (an infinite one
        never flushed an unfilled batch); a heartbeat that small floods idle streams; an
        endless SQLite busy timeout failed the cache's start with OverflowError: refused
        at load, naming the field."""
        with pytest.raises(ConfigError, match=rf"{section}\.{field}: Input should be {problem}"):
            load_config(env={}, **{section: {field: value}})

    def test_budget_defaults_and_bounds(self) -> None:
        """No budget by default, a daily period; a negative budget is refused."""
        provider = ProviderConfig()
        assert (provider.budget_usd, provider.budget_period) == (None, 86_400.0)
        with pytest.raises(ValidationError, match="greater than or equal to 0"):
            ProviderConfig(budget_usd=-1.0)

    @pytest.mark.parametrize("field", ["timeout", "retry_max_wait", "budget_period"])
    @pytest.mark.parametrize("value", [float("inf"), float("nan")])
    def test_provider_times_are_finite(self, field: str, value: float) -> None:
        """An infinite or NaN provider time is refused through load_config as a ConfigError."""
        with pytest.raises(ConfigError, match=rf"providers\.local\.{field}"):
            load_config(env={}, providers={"local": {field: value}})

    def test_provider_defaults_do_not_throttle(self) -> None:
        """A vendor runs 1,024 calls at once by default; only rpm/tpm, when set, throttle."""
        provider = ProviderConfig()
        assert (provider.max_in_flight, provider.rpm, provider.tpm) == (1024, None, None)
        assert provider.transport == "aiohttp"

    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("redis://:pw@h:1/0?socket_timeout=abc", "'socket_timeout', which must be a positive"),
            ("redis://h/0?socket_timeout=inf", "'socket_timeout', which must be a positive"),
            ("redis://h/0?db=x", "'db', which must be an integer"),
            ("redis://h/0?retry_on_timeout=maybe", "'retry_on_timeout', which must be a boolean"),
            ("redis://h/0?foo=1", "'foo', which a redis:// URL does not take"),
            ("unix:///r.sock?socket_keepalive=1", "'socket_keepalive', which a unix:// URL"),
            ("redis://h/0?ssl_ca_certs=/ca.pem", "'ssl_ca_certs', which a redis:// URL"),
        ],
    )
    def test_redis_url_options_redis_py_cannot_take_are_refused(
        self, url: str, reason: str
    ) -> None:
        """cache.l2_redis_url's query options are checked as redis-py reads them, by name
        (never echoing a value): each of these failed only when L2 opened, or at every call."""
        with pytest.raises(
            ConfigError,
            match=rf"^invalid configuration \(load, 1 problem\):\n  cache\.l2_redis_url: Value "
            rf"error, has the option {re.escape(reason)}",
        ):
            load_config(cache={"l2_redis_url": url})

    def test_redis_url_options_redis_py_takes_are_kept(self) -> None:
        """Options of the right kind for the scheme pass unchanged."""
        for url in (
            "redis://h/0?socket_timeout=0.5&db=2&socket_keepalive=true&client_name=app",
            "rediss://h/0?ssl_cert_reqs=none&ssl_check_hostname=false",
            "unix:///r.sock?db=1",
        ):
            assert load_config(cache={"l2_redis_url": url}).cache.l2_redis_url == url

    @pytest.mark.parametrize("key", ["data_dir", "cache__l3_path", "events__sqlite_path"])
    def test_a_path_with_a_nul_character_is_refused(self, key: str) -> None:
        """A file path holding NUL is a ConfigError naming the field (the open failed later
        with a bare ValueError; a live update of data_dir broke every cache restart)."""
        field = key.replace("__", ".").replace(".", r"\.")
        with pytest.raises(
            ConfigError,
            match=rf"^invalid configuration \(load, 1 problem\):\n  {field}: Value "
            r"error, must not contain a NUL character \(from argument",
        ):
            load_config(**{key: "/tmp/a\x00b"})

    def test_models_are_frozen(self) -> None:
        """Configuration objects are immutable."""
        config = LmvisorConfig()
        with pytest.raises(ValidationError, match="frozen"):
            config.server.port = 1


class TestSecrets:
    def test_api_key_never_in_repr_or_json(self) -> None:
        """An API key shows as stars in repr, str and JSON dumps."""
        secret = "sk-test-abcdefghijklmnop"
        config = LmvisorConfig.model_validate({"providers": {"openai": {"api_key": secret}}})
        key = config.providers["openai"].api_key
        assert isinstance(key, SecretStr)
        assert key.get_secret_value() == secret
        assert secret not in repr(config)
        assert secret not in str(config)
        assert secret not in config.model_dump_json()

    def test_server_token_is_secret(self) -> None:
        """The server token is a secret too."""
        config = LmvisorConfig.model_validate({"server": {"token": "hunter2-token"}})
        assert "hunter2-token" not in repr(config)

    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("redis://:hunter2@127.0.0.1:6379/0", "redis://:**********@127.0.0.1:6379/0"),
            (
                "rediss://me:hunter2@h:6380/1?client_name=y",
                "rediss://me:**********@h:6380/1?client_name=y",
            ),
            (
                "unix:///tmp/r.sock?db=0&password=hunter2",
                "unix:///tmp/r.sock?db=0&password=**********",
            ),
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ],
    )
    def test_passwords_in_urls_are_masked_in_json(self, url: str, shown: str) -> None:
        """A password in the Redis URL or a provider's base URL is stars in JSON dumps (what
        `GET /v1/config` and `lmvisor config check` show); the setting itself is whole."""
        config = LmvisorConfig.model_validate(
            {
                "cache": {"l2_redis_url": url},
                "providers": {"local": {"base_url": "http://u:hunter2@127.0.0.1:1/v1"}},
            }
        )
        dumped = config.model_dump(mode="json")
        assert dumped["cache"]["l2_redis_url"] == shown
        assert dumped["providers"]["local"]["base_url"] == "http://u:**********@127.0.0.1:1/v1"
        assert "hunter2" not in config.model_dump_json()
        assert config.cache.l2_redis_url == url

    def test_passwords_in_urls_are_masked_in_repr_and_str(self) -> None:
        """repr() and str() of the tree and of each model with a URL show its password as
        stars, as JSON dumps do; API keys stay SecretStr stars beside them."""
        config = LmvisorConfig.model_validate(
            {
                "cache": {"l2_redis_url": "redis://me:hunter2@127.0.0.1:6379/0"},
                "providers": {
                    "local": {"base_url": "http://u:hunter2@127.0.0.1:1/v1?password=hunter2"},
                    "openai": {"api_key": "sk-test-abcdefghijklmnop"},
                },
            }
        )
        shown = [repr(config), str(config), repr(config.cache), str(config.cache)]
        shown += [repr(config.providers), str(config.providers["local"])]
        for text in shown:
            assert "hunter2" not in text and "sk-test" not in text
        assert "l2_redis_url='redis://me:**********@127.0.0.1:6379/0'" in repr(config.cache)
        local = "base_url='http://u:**********@127.0.0.1:1/v1?password=**********'"
        assert local in repr(config.providers["local"])
        assert "api_key=SecretStr('**********')" in repr(config.providers["openai"])
        assert (
            config.providers["local"].base_url == "http://u:hunter2@127.0.0.1:1/v1?password=hunter2"
        )


class TestServerConfig:
    def test_defaults(self) -> None:
        """The daemon is local, unauthenticated, drains for 30 s and tunes GC by default."""
        from lmvisor.config.schema import ServerConfig

        server = ServerConfig()
        assert (server.host, server.port) == ("127.0.0.1", 8750)
        assert not server.auth_enabled
        assert server.open_paths == ("/healthz",)
        assert server.drain_timeout == 30.0
        assert server.max_body_bytes == 4 * 1024 * 1024
        assert server.request_timeout is None
        assert server.gc_tuning and server.loop == "auto"

    def test_tokens_are_secret_and_enable_auth(self) -> None:
        """tokens are masked in dumps and turn authentication on."""
        config = LmvisorConfig.model_validate({"server": {"tokens": ["tok-a", "tok-b"]}})
        assert config.server.auth_enabled
        assert config.model_dump(mode="json")["server"]["tokens"] == ["**********"] * 2
        assert "tok-a" not in repr(config)

    @pytest.mark.parametrize(
        ("server", "message"),
        [
            ({"token": " "}, "a token must not be empty"),
            ({"tokens": ["ok", ""]}, "a token must not be empty"),
            ({"token_sha256": ["abc"]}, "each entry must be 64 lowercase hex digits"),
            ({"open_paths": ["metrics"]}, "path 'metrics' must start with '/'"),
            ({"drain_timeout": 0}, "greater than 0"),
            ({"drain_timeout": "inf"}, "finite number"),
            ({"max_body_bytes": 0}, "greater than or equal to 1"),
            ({"loop": "trio"}, "Input should be 'auto', 'asyncio' or 'uvloop'"),
        ],
    )
    def test_invalid_values(self, server: dict[str, object], message: str) -> None:
        """Each server field rejects bad values with a message naming the problem."""
        with pytest.raises(ValidationError, match=message):
            LmvisorConfig.model_validate({"server": server})
