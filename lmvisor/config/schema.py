"""The settings schema: lmvisor's whole configuration tree as frozen pydantic models.

Every model forbids unknown keys, so a typo is an error rather than a silently
ignored setting, and is immutable: a change is a new validated tree (see
`lmvisor.config.loading.replace_value`). Secrets are `SecretStr`, shown as
`'**********'` in every repr and JSON dump; so is the password inside a URL
(`providers.*.base_url`, `cache.l2_redis_url`) in JSON dumps, `repr()` and `str()`.

Defaults worth knowing:

- `providers` ships three entries: `openai` and `anthropic` (their public
  endpoints; keys come from OPENAI_API_KEY / ANTHROPIC_API_KEY at load time)
  and `local`, an OpenAI-compatible server (Ollama, vLLM, llama.cpp) whose
  `base_url` is None until set: a provider with no `base_url` is not usable
  and the services layer leaves it unstarted.
- `infrastructure.circuit_breakers` has a `default` entry used for any
  breaker name not configured; `rate_limiters` is empty (no limit unless set).
- `data_dir` is `./.lmvisor`: the application tree (`lmvisor.services.open_app`)
  keeps its SQLite cache there (`cache.sqlite3`, unless `cache.l3_path` names
  another file); `data_dir = None` keeps everything in memory. A bare
  `Runtime.open` writes nothing: `events.sqlite_path` is None unless set.
- `server.host` is 127.0.0.1: the daemon is local unless told otherwise.

Booleans are strict: a TOML file, a JSON table, an argument or an update gives
`true`/`false`, and the string "yes" there (pydantic would read it as true) is an
error, since those formats have real booleans and a string is a mistake. Environment
variables, all strings, keep pydantic's spellings ("true"/"false", "1"/"0",
"yes"/"no", "on"/"off"...): `lmvisor.config.loading` reads them into booleans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, final
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from lmvisor._redaction import clipped, url_without_password
from lmvisor.config._redis_options import check_redis_options

__all__ = [
    "SECRET_MASK",
    "BootstrapConfig",
    "CacheConfig",
    "CircuitBreakerConfig",
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
]

ProviderKind = Literal["openai", "anthropic", "openai_compatible"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_METRIC_PATH = re.compile(rf"^{_IDENT}(\.{_IDENT})*:(\*|{_IDENT}(\.{_IDENT})*)$")
_MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True)
_LONGEST_TTL: Final = 100 * 365 * 86_400.0
"""A century: the longest a cached answer is kept (Redis takes no expiry near a float's range)."""


_MAX_NAME: Final = 128
"""The longest provider or protection name (a protection may be named for a program id,
at most 128 characters too)."""
_MAX_MODEL_NAME: Final = 256
"""The longest model name: `lmvisor.programs.lm.MAX_MODEL_NAME` (config sits below programs)."""


def _check_names(kind: str, names: dict[str, object]) -> None:
    for name in names:
        if len(name) > _MAX_NAME:
            # Clipped: a name this long need not be echoed whole to be recognised.
            shown = clipped(name, 32)
            raise ValueError(f"{kind} name {shown!r} must be at most {_MAX_NAME} characters")
        if not _NAME.match(name):
            raise ValueError(f"{kind} name {name!r} must be lowercase letters, digits, '_' or '-'")


_ReprArgs: TypeAlias = Iterator[tuple[str | None, Any]]
"""What pydantic's `__repr_args__` yields: (field name, value) pairs for repr, str and rich."""

SECRET_MASK: Final = "**********"
"""How a secret is shown (pydantic's `SecretStr`, and a URL's password)."""
"""How a secret is shown: as pydantic shows a `SecretStr`."""


def _check_url(value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value is None:
        return value
    if not value.startswith(schemes):
        raise ValueError(f"must start with one of {', '.join(schemes)}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - reading it checks the port (and an IPv6 host)
    except ValueError:
        parts = None
    # A unix:// socket URL names a path, not a host; every other scheme needs one, alone
    # or with a port (urllib reads "[::1]x" as the host "::1": the HTTP client would not).
    host = None if parts is None else parts.netloc.rpartition("@")[2]
    if parts is None or (parts.scheme != "unix" and not _HOST.fullmatch(host or "")):
        # Not urllib's message: it quotes the URL's pieces, and the URL may hold a password.
        raise ValueError("is not a well-formed URL (its host or port cannot be read)")
    return value


_HOST: Final = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[^\[\]:/@\s\x00-\x1f\x7f]+)(?::[0-9]{1,5})?")
"""A URL's host and optional port, as an HTTP or Redis client reads them."""


def _check_path(value: Path | None) -> Path | None:
    # The OS takes no NUL in a file name: accepted, it failed the open much later, with a
    # bare ValueError (a live update of data_dir crashed the cache's every restart).
    if value is not None and "\x00" in str(value):
        raise ValueError("must not contain a NUL character")
    return value


def _masked_url(value: str | None) -> str | None:
    """`value` with a password (`scheme://user:pw@host`, or `?password=`) shown as a secret is."""
    return None if value is None else url_without_password(value, SECRET_MASK)


def _masked_repr_args(args: Iterable[tuple[str | None, Any]], url: str) -> _ReprArgs:
    """A model's repr arguments with its URL field `url` masked as its JSON dump shows it:
    a repr is what a user pastes into a bug report."""
    for name, value in args:
        yield name, _masked_url(value) if name == url else value


@final
class ModulesConfig(BaseModel):
    """How programs run by default."""

    model_config = _MODEL_CONFIG

    default_lm: str = Field(default="openai/gpt-4o-mini", min_length=1, max_length=_MAX_MODEL_NAME)
    default_adapter: Literal["chat", "json"] = "chat"
    cache_enabled: StrictBool = True
    """Whether LM answers are cached (read at run time: changing it needs no restart)."""
    cache_ttl: float = Field(default=3600.0, ge=0, le=_LONGEST_TTL)
    """Seconds a cached answer stays fresh in every tier (at most a century)."""
    timeout: float | None = Field(default=300.0, gt=0)
    """The deadline of one module execution when the caller sets none (None: no deadline)."""
    max_versions: int = Field(default=20, ge=2)
    """Versions of a program kept for rollback (the oldest are forgotten)."""

    @field_validator("default_lm")
    @classmethod
    def _vendor_and_model(cls, value: str) -> str:
        # Refused here, where the field can be named, not at the first register or run.
        vendor, slash, model = value.partition("/")
        if not (vendor and slash and model) or any(c.isspace() for c in value):
            raise ValueError("must be 'vendor/model' (e.g. 'openai/gpt-4o-mini')")
        return value


@final
class CoproConfig(BaseModel):
    """COPRO's search: `breadth` candidates per round, `depth` rounds."""

    model_config = _MODEL_CONFIG

    breadth: int = Field(default=10, ge=2)
    depth: int = Field(default=3, ge=1)
    temperature: float = Field(default=1.4, ge=0.0, le=2.0)
    max_iterations: int = Field(default=50, ge=1)


@final
class BootstrapConfig(BaseModel):
    """BootstrapFewShot's demo budget."""

    model_config = _MODEL_CONFIG

    max_bootstrapped_demos: int = Field(default=4, ge=0)
    max_labeled_demos: int = Field(default=16, ge=0)


@final
class OptimizationConfig(BaseModel):
    """Optimization jobs: their shared bounds and the optimizers' defaults.

    `concurrency` bounds the LM work one job has in flight (examples, bootstrap
    attempts, proposals); a change applies to running jobs too. The rest applies
    to jobs submitted after the change. `example_timeout` (seconds, None: none)
    bounds each evaluated example; `max_errors` failing examples stop an evaluation.
    """

    model_config = _MODEL_CONFIG

    concurrency: int = Field(default=64, ge=1)
    max_errors: int = Field(default=10, ge=1)
    example_timeout: float | None = Field(default=None, gt=0)
    copro: CoproConfig = CoproConfig()
    bootstrap: BootstrapConfig = BootstrapConfig()


@final
class ProviderConfig(BaseModel):
    """One LM vendor endpoint and how its provider actor calls it.

    Attributes:
        kind: the wire format ("openai", "anthropic", "openai_compatible").
        base_url, default_model, api_key: where and as whom requests go.
        timeout: seconds one attempt may take (finite); a call's deadline
            shortens it when less is left.
        max_retries: attempts after the first, for retryable failures only.
        retry_max_wait: the longest backoff or Retry-After waited out (seconds);
            a vendor asking for longer fails the call at once, so a router falls back.
        rpm, tpm: the vendor's own request and token limits per minute (None:
            none); `infrastructure.rate_limiters.<name>` overrides both.
        max_in_flight: vendor calls running at once (streams included); more
            wait their turn within their deadline. The transport's pool is sized to it.
        transport: "aiohttp" (the default), "auto" (pyreqwest when the `fast`
            extra is installed, else aiohttp), "pyreqwest" or "httpx". pyreqwest
            spends a sixth of aiohttp's event-loop CPU per call: in-process work
            gains (Evaluate at 200 in flight: 0.87 efficiency against 0.78), but the
            daemon's /run at 200 clients loses (0.69 against 0.78, fifteen
            interleaved rounds), its loop busy serving HTTP; and pyreqwest 0.15.1 is
            a beta that can abort the interpreter at exit (held off by a timed wait),
            so it is opt-in. Its I/O runs on a thread of its own, its TLS is rustls;
            streams go over aiohttp.
        budget_usd: spend cap (US dollars) per `budget_period` seconds; None is no cap.

    How the defaults add up: a call carries one deadline (the caller's, else the
    router's 120 s). Each attempt gets min(`timeout`, what is left), each backoff
    must end before the deadline or is not waited, so 1 + `max_retries` attempts
    of 60 s never run past it: the deadline, not the product, bounds a call.
    `max_in_flight` (1,024) is above what one core can drive through a vendor,
    so only `rpm`/`tpm`, when set, throttle.
    """

    model_config = _MODEL_CONFIG

    kind: ProviderKind = "openai_compatible"
    base_url: str | None = None
    default_model: str | None = Field(default=None, max_length=_MAX_MODEL_NAME)
    api_key: SecretStr | None = None
    max_retries: int = Field(default=3, ge=0)
    timeout: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    retry_max_wait: float = Field(default=20.0, ge=0, allow_inf_nan=False)
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    max_in_flight: int = Field(default=1024, ge=1)
    transport: Literal["auto", "aiohttp", "httpx", "pyreqwest"] = "aiohttp"
    budget_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    budget_period: float = Field(default=86_400.0, gt=0, allow_inf_nan=False)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return _check_url(value, ("http://", "https://"))

    @field_serializer("base_url", when_used="json")
    def _shown_base_url(self, value: str | None) -> str | None:
        return _masked_url(value)

    def __repr_args__(self) -> _ReprArgs:
        return _masked_repr_args(super().__repr_args__(), "base_url")

    @model_validator(mode="after")
    def _one_authorization(self) -> ProviderConfig:
        # The OpenAI wire sends the key as `Authorization: Bearer`; credentials in the URL
        # would be a second Authorization header, which the HTTP client refuses per call.
        bearer = self.kind != "anthropic" and self.api_key is not None
        if bearer and self.base_url and urlsplit(self.base_url).username is not None:
            raise ValueError(
                "base_url holds a user name (and password) and api_key is set: both "
                "would be the Authorization header; keep one"
            )
        return self


@final
class CircuitBreakerConfig(BaseModel):
    """Open after `failure_threshold` consecutive failures; probe after `recovery_time` s;
    close after `success_threshold` consecutive trial successes.

    The counts are bounded: a half-open breaker lets one trial through at a time, so
    a `success_threshold` of 10**9 kept it admitting one call at a time for good; at
    most 100 trials close it. `failure_threshold` is at most 1,000 consecutive failures,
    and `recovery_time` at most a day (1e300 kept a breaker open for good).
    """

    model_config = _MODEL_CONFIG

    failure_threshold: int = Field(default=5, ge=1, le=1_000)
    recovery_time: float = Field(default=30.0, gt=0, le=86_400.0, allow_inf_nan=False)
    success_threshold: int = Field(default=1, ge=1, le=100)


@final
class RateLimiterConfig(BaseModel):
    """At most `limit` requests (and `tokens` weighted tokens) per `scale` seconds.

    Both are at least 1: a bucket smaller than one request would never admit one
    (write "1 per 120 s" as `limit = 1, scale = 120`, not `limit = 0.5`).
    """

    model_config = _MODEL_CONFIG

    limit: float = Field(ge=1, allow_inf_nan=False)
    scale: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    tokens: float | None = Field(default=None, ge=1, allow_inf_nan=False)


def _default_breakers() -> dict[str, CircuitBreakerConfig]:
    return {"default": CircuitBreakerConfig()}


@final
class InfrastructureConfig(BaseModel):
    """Named protections; a breaker name not listed uses the `default` entry."""

    model_config = _MODEL_CONFIG

    circuit_breakers: dict[str, CircuitBreakerConfig] = Field(default_factory=_default_breakers)
    rate_limiters: dict[str, RateLimiterConfig] = Field(default_factory=dict)

    @field_validator("circuit_breakers", "rate_limiters")
    @classmethod
    def _names(cls, value: dict[str, object]) -> dict[str, object]:
        _check_names("protection", value)
        return value


@final
class CacheConfig(BaseModel):
    """The three cache tiers: memory (L1), Redis (L2, off when no URL), SQLite (L3).

    Fields:
        l1_size / l1_max_bytes: L1 holds at most this many entries and bytes (LRU).
        l1_ttl: seconds L1 keeps an entry at most (None: until evicted or stale).
        stale_ttl: seconds an expired answer is kept for stale-on-error answers.
            These two and `modules.cache_ttl` are at most a century.
        l2_redis_url: Redis for L2 (None: no L2); `l2_prefix` namespaces its keys.
            A query option must be one redis-py's connection takes, of its kind
            (`?socket_timeout=abc` and `?foo=1` are refused here, not when L2 opens).
        l2_timeout: seconds one Redis operation may take before it counts as failed.
        l2_breaker: opens after consecutive Redis failures; L2 is skipped while open.
        l3_path: the SQLite file (None: `cache.sqlite3` under `data_dir`; no L3 when
            both are None); `l3_max_size` bounds its entries' bytes (oldest evicted).
        l3_busy_timeout: seconds a writer waits for another process's lock (at most an
            hour: SQLite takes milliseconds as a C int, and an infinite wait failed the start).
        write_queue: answers waiting to be written to L2/L3; beyond it a write is
            skipped (and counted) rather than slowing a call.
    """

    model_config = _MODEL_CONFIG

    l1_size: int = Field(default=1024, ge=0)
    l1_max_bytes: int = Field(default=64 << 20, ge=0)
    l1_ttl: float | None = Field(default=3600.0, gt=0, le=_LONGEST_TTL)
    stale_ttl: float = Field(default=86_400.0, ge=0, le=_LONGEST_TTL)
    l2_redis_url: str | None = None
    l2_prefix: str = Field(default="lmvisor:cache:", max_length=200)
    l2_timeout: float = Field(default=0.25, gt=0)
    l2_breaker: CircuitBreakerConfig = CircuitBreakerConfig(failure_threshold=3, recovery_time=5.0)
    l3_path: Path | None = None
    l3_max_size: int = Field(default=1 << 30, ge=0)
    l3_busy_timeout: float = Field(default=5.0, gt=0, le=3600.0, allow_inf_nan=False)
    write_queue: int = Field(default=10_000, ge=1)

    @field_validator("l3_path")
    @classmethod
    def _l3_path(cls, value: Path | None) -> Path | None:
        return _check_path(value)

    @field_validator("l2_redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        checked = _check_url(value, ("redis://", "rediss://", "unix://"))
        if checked is not None:
            check_redis_options(checked)
        return checked

    @field_serializer("l2_redis_url", when_used="json")
    def _shown_redis_url(self, value: str | None) -> str | None:
        return _masked_url(value)

    def __repr_args__(self) -> _ReprArgs:
        return _masked_repr_args(super().__repr_args__(), "l2_redis_url")


@final
class EventsConfig(BaseModel):
    """The event store: memory ring, optional SQLite sink and its retention."""

    model_config = _MODEL_CONFIG

    ring_size: int = Field(default=10_000, ge=1, le=100_000_000)
    """Events kept in memory (bounded: the ring is a deque, whose length is a C size)."""
    sqlite_path: Path | None = None
    batch_size: int = Field(default=256, ge=1)
    flush_interval: float = Field(default=0.5, ge=0.01, le=3600.0, allow_inf_nan=False)
    """Seconds between writes to SQLite: at least 10 ms (less kept a core busy flushing
    nothing), at most an hour (longer left events unwritten until a batch filled)."""
    retention_seconds: float | None = Field(default=7 * 24 * 3600.0, gt=0)
    retention_count: int | None = Field(default=1_000_000, ge=1)

    @field_validator("sqlite_path")
    @classmethod
    def _sqlite_path(cls, value: Path | None) -> Path | None:
        return _check_path(value)


@final
class LoggingConfig(BaseModel):
    """A runtime's log lines: the least severe level written, and the format.

    `mode` "auto" writes readable console lines to a terminal and JSON lines
    otherwise (a daemon under a supervisor, CI).
    """

    model_config = _MODEL_CONFIG

    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    mode: Literal["auto", "json", "console"] = "auto"


@final
class ServerConfig(BaseModel):
    """The daemon (`lmvisor serve`): where it listens, who may call it, and its limits.

    - `token` / `tokens`: bearer tokens the API accepts (several allow rotation);
      `token_sha256` lists tokens by their SHA-256 hex digest instead, so a config
      file need not hold the secret. Any of them set turns authentication on. A
      `host` that is not loopback refuses to start without one.
    - `open_paths`: paths served without a token even when authentication is on
      (say `/metrics` for a scraper).
    - `drain_timeout`: seconds that in-flight requests and streams get to finish
      after SIGTERM/SIGINT before they are cancelled.
    - `max_body_bytes`: the largest request body accepted (413 beyond it).
    - `body_timeout`: seconds a request's whole body may take to arrive once its
      headers have (408 and the connection closed beyond it), so a client that
      stalls or trickles its body cannot hold a connection and a request forever.
    - `header_timeout`: seconds a request's head (request line and headers) may
      take to arrive once its first byte has (408 and the connection closed beyond
      it), so a client that trickles headers (slowloris) cannot hold a connection.
    - `send_timeout`: seconds an answer may stay stuck in the daemon's write buffer
      (the client reads nothing, or too little for the buffer to drain) before the
      connection is reset and the request ended, so a client that never reads its
      answer cannot hold a connection and a request forever.
    - `request_timeout`: the deadline of a request that sends no
      `X-Request-Timeout` header (None: no deadline); `max_request_timeout`
      caps what a header may ask for.
    - `gc_tuning`: after start-up, `gc.freeze()` the start-up heap and raise the
      generation-0 threshold to `gc_gen0_threshold` (fewer collections under load).
    - `loop`: `auto` runs on uvloop when it is installed, else asyncio's loop.
    - `access_log`: one log line per request; `sse_heartbeat`: seconds between
      keep-alive comments on an idle event stream (at most an hour: a follower gives up
      after three silent intervals).
    - `metrics`: the metrics an optimization job submitted over HTTP may name, as
      import paths (`"pkg.module:function"`, or `"pkg.module:*"` for every function
      of a module); the `--app` hook may allow more. The daemon imports nothing else
      a request names.
    """

    model_config = _MODEL_CONFIG

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8750, ge=0, le=65535)
    token: SecretStr | None = None
    tokens: tuple[SecretStr, ...] = ()
    token_sha256: tuple[str, ...] = ()
    open_paths: tuple[str, ...] = ("/healthz",)
    drain_timeout: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    body_timeout: float = Field(default=30.0, ge=0.1, le=3600.0, allow_inf_nan=False)
    """0.1 s to an hour: a body is never waited for without bound."""
    header_timeout: float = Field(default=10.0, ge=0.1, le=3600.0, allow_inf_nan=False)
    """0.1 s to an hour: a head is a few kilobytes, never waited for without bound."""
    send_timeout: float = Field(default=30.0, ge=0.1, le=3600.0, allow_inf_nan=False)
    """0.1 s to an hour: a client that stops reading is never waited for without bound."""
    request_timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_request_timeout: float = Field(default=3600.0, gt=0, allow_inf_nan=False)
    gc_tuning: StrictBool = True
    gc_gen0_threshold: int = Field(default=50_000, ge=100, le=2**31 - 1)
    """At most a C int: `gc.set_threshold` takes nothing larger."""
    loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    access_log: StrictBool = True
    sse_heartbeat: float = Field(default=15.0, ge=0.1, le=3600.0, allow_inf_nan=False)
    """At least 0.1 s: a tinier one flooded every idle stream with keep-alive comments."""
    metrics: tuple[str, ...] = ()

    @field_validator("token", "tokens")
    @classmethod
    def _non_empty_tokens(
        cls, value: SecretStr | tuple[SecretStr, ...] | None
    ) -> SecretStr | tuple[SecretStr, ...] | None:
        secrets = value if isinstance(value, tuple) else () if value is None else (value,)
        if any(not secret.get_secret_value().strip() for secret in secrets):
            raise ValueError("a token must not be empty")
        return value

    @field_validator("token_sha256")
    @classmethod
    def _digests(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for digest in value:
            if not _SHA256.match(digest):
                raise ValueError("each entry must be 64 lowercase hex digits (a SHA-256 digest)")
        return value

    @field_validator("metrics")
    @classmethod
    def _metric_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if not _METRIC_PATH.match(path):
                raise ValueError(f"{path!r} must be 'pkg.module:function' or 'pkg.module:*'")
        return value

    @field_validator("open_paths")
    @classmethod
    def _paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"path {path!r} must start with '/'")
        return value

    @property
    def auth_enabled(self) -> bool:
        """Whether any token is configured (requests then need one)."""
        return bool(self.token or self.tokens or self.token_sha256)


def _default_providers() -> dict[str, ProviderConfig]:
    return {
        "openai": ProviderConfig(
            kind="openai", base_url="https://api.openai.com/v1", default_model="gpt-4o-mini"
        ),
        "anthropic": ProviderConfig(
            kind="anthropic",
            base_url="https://api.anthropic.com",
            default_model="claude-3-5-haiku-latest",
        ),
        "local": ProviderConfig(kind="openai_compatible"),
    }


@final
class LmvisorConfig(BaseSettings):
    """The root of the configuration tree.

    Constructing it validates exactly what it is given (plus defaults): it
    reads no environment or file by itself, so nothing leaks between runtimes
    or tests. `lmvisor.config.load_config` layers defaults, TOML, environment
    and explicit arguments and is the one place sources are read.
    """

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    modules: ModulesConfig = ModulesConfig()
    optimization: OptimizationConfig = OptimizationConfig()
    providers: dict[str, ProviderConfig] = Field(default_factory=_default_providers)
    infrastructure: InfrastructureConfig = InfrastructureConfig()
    cache: CacheConfig = CacheConfig()
    events: EventsConfig = EventsConfig()
    logging: LoggingConfig = LoggingConfig()
    server: ServerConfig = ServerConfig()
    data_dir: Path | None = Path(".lmvisor")
    """Where the application tree keeps its files (None: memory only)."""

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, value: Path | None) -> Path | None:
        return _check_path(value)

    @field_validator("providers")
    @classmethod
    def _provider_names(cls, value: dict[str, ProviderConfig]) -> dict[str, ProviderConfig]:
        _check_names("provider", dict(value))
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only explicit values: loading from files and environment is `load_config`'s job."""
        return (init_settings,)
