"""Every event type and metric name lmvisor emits, and which signal carries what.

Three signals, one rule each:

- **Events** (the runtime's `EventStore`: a memory ring, optionally SQLite) are
  facts someone will ask about later, by type or by correlation id: the
  observer page, `lmvisor events`, tests. Every lifecycle report at warning or
  error level (`actor.*`, `supervisor.report`, `task.crashed`), every state
  change (`breaker.state_changed`, `config.changed`, `module.*`), every
  refusal (`limiter.rejected`), every LM request (`lm_request`,
  `lm_request.failed`), and the milestones of programs, caches, optimization
  jobs and the daemon (`module_execution_*`, `cache.*`, `optimization.*`,
  `server.*`). Event data is JSON-ready and redacted.
- **Logs** (the runtime's redacting structlog chain, `observe.logs`) are for
  the operator reading a stream: every lifecycle report (the same fixed keys
  as its event, `supervisor.progress` included at debug level), breaker and
  config changes, and diagnostics. Facts that come at request rate
  (`lm_request*`, `limiter.rejected`, `module_execution_*`) are not logged one
  by one: they are counted in metrics and kept as events.
- **Metrics** (the runtime's Prometheus registry, `observe.metrics`) are the
  numbers aggregated over time: durations, counts, gauges.

Lifecycle reports (see `observe.reports`) are recorded where they happen and
written to logs and events a moment later, off the restart path. Metric
names are the exposed names (a counter's `_total` included). Nothing in
lmvisor writes an event type or a metric name as a literal elsewhere.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACTOR_CRASHED",
    "ACTOR_TERMINATE_FAILED",
    "ACTOR_UNEXPECTED_MESSAGE",
    "BREAKER_STATE_CHANGED",
    "CACHE_ENTRY_DROPPED",
    "CACHE_STALE_SERVED",
    "CONFIG_CHANGED",
    "EVENT_TYPES",
    "FALLBACK_STRATEGY_SUCCESS",
    "HTTP_METRIC_NAMES",
    "LIMITER_REJECTED",
    "LM_REQUEST",
    "LM_REQUEST_FAILED",
    "METRIC_ACTORS_ALIVE",
    "METRIC_BREAKER_STATE",
    "METRIC_CACHE_DROPPED",
    "METRIC_CACHE_ERRORS",
    "METRIC_CACHE_EVICTIONS",
    "METRIC_CACHE_HITS",
    "METRIC_CACHE_HIT_RATE",
    "METRIC_CACHE_MISSES",
    "METRIC_HTTP_IN_FLIGHT",
    "METRIC_HTTP_REFUSED",
    "METRIC_HTTP_REQUESTS",
    "METRIC_HTTP_REQUEST_SECONDS",
    "METRIC_LM_COST",
    "METRIC_LM_REQUEST_SECONDS",
    "METRIC_LM_TOKENS",
    "METRIC_MAILBOX_DEPTH",
    "METRIC_MODULE_ERRORS",
    "METRIC_MODULE_SECONDS",
    "METRIC_MODULE_SUCCESS",
    "METRIC_NAMES",
    "METRIC_OPTIMIZATION_ITERATIONS",
    "METRIC_OPTIMIZATION_SCORE",
    "METRIC_OPTIMIZATION_SECONDS",
    "METRIC_RATE_LIMITER_REJECTIONS",
    "METRIC_SUPERVISOR_RESTARTS",
    "MODULE_EXECUTION_COMPLETE",
    "MODULE_EXECUTION_START",
    "MODULE_REGISTERED",
    "MODULE_ROLLED_BACK",
    "MODULE_SWAPPED",
    "MODULE_UNREGISTERED",
    "OPTIMIZATION_COMPLETED",
    "OPTIMIZATION_FAILED",
    "OPTIMIZATION_ITERATION",
    "OPTIMIZATION_STARTED",
    "OPTIMIZATION_SUSPENDED",
    "SERVER_DRAINING",
    "SERVER_READY",
    "SERVER_STOPPED",
    "STORE_RECORD_SKIPPED",
    "SUPERVISOR_PROGRESS",
    "SUPERVISOR_REPORT",
    "TASK_CRASHED",
]

# --- lifecycle reports (logs and events, fixed keys) -----------------------------------

ACTOR_CRASHED: Final = "actor.crashed"
"""A handler or deferred task raised (`actor`, `last_message`, `state`, `reason`, `caller`)."""
ACTOR_TERMINATE_FAILED: Final = "actor.terminate_failed"
"""`terminate()` raised while the actor stopped (`actor`, `reason`)."""
ACTOR_UNEXPECTED_MESSAGE: Final = "actor.unexpected_message"
"""A system message the actor has no handler for was dropped (`actor`, `message`)."""
SUPERVISOR_REPORT: Final = "supervisor.report"
"""A supervisor fact worth an operator's eye (`supervisor`, `context`, `reason`, `offender`);
`context` is `start_error`, `child_terminated`, `shutdown_error` or `shutdown`."""
SUPERVISOR_PROGRESS: Final = "supervisor.progress"
"""A supervisor started a child (`supervisor`, `started`); debug-level logs only."""
TASK_CRASHED: Final = "task.crashed"
"""A task under a `TaskSupervisor` raised (`supervisor`, `task`, `reason`)."""

# --- platform facts ---------------------------------------------------------------------

BREAKER_STATE_CHANGED: Final = "breaker.state_changed"
"""A circuit breaker moved (`breaker`, `old`, `new`); also logged."""
LIMITER_REJECTED: Final = "limiter.rejected"
"""A rate limiter refused a request (`limiter`, `retry_after`); event and metric only."""
CONFIG_CHANGED: Final = "config.changed"
"""A setting was updated through the config service (`path`); also logged."""
LM_REQUEST: Final = "lm_request"
"""A vendor call succeeded (`provider`, `model`, `prompt_tokens`, `completion_tokens`,
`cost`, `duration`)."""
LM_REQUEST_FAILED: Final = "lm_request.failed"
"""A vendor call failed for good (`provider`, `model`, `error`, `code`, `duration`)."""

# --- services and the daemon (recorded by their owners) --------------------------------

MODULE_REGISTERED: Final = "module.registered"
"""A program was registered (`module_id`, `module_type`, `version`)."""
MODULE_SWAPPED: Final = "module.swapped"
"""A new version of a program was swapped in (`module_id`, `version`, `previous`)."""
MODULE_ROLLED_BACK: Final = "module.rolled_back"
"""A program went back to an earlier version (`module_id`, `version`, `previous`)."""
MODULE_UNREGISTERED: Final = "module.unregistered"
"""A program was unregistered (`module_id`)."""
MODULE_EXECUTION_START: Final = "module_execution_start"
"""A program execution began (`module_id`, `module_type`, `version`); the seed's name."""
MODULE_EXECUTION_COMPLETE: Final = "module_execution_complete"
"""A program execution ended (`module_id`, `module_type`, `version`, `duration_ms`,
`lm_calls`, `cost_usd`, `success`, `strategy`, `error` when it failed); the seed's name."""
FALLBACK_STRATEGY_SUCCESS: Final = "fallback_strategy_success"
"""A fallback answered after the program failed (`module_id`, `strategy`, `error`)."""
CACHE_STALE_SERVED: Final = "cache.stale_served"
"""An expired cached answer stood in for a failed LM call (`model`, `age_s`, `error`)."""
CACHE_ENTRY_DROPPED: Final = "cache.entry_dropped"
"""A corrupt or undecodable cache entry was dropped (`layer`, `problem`)."""
STORE_RECORD_SKIPPED: Final = "store.record_skipped"
"""A stored job, checkpoint or program row could not be decoded and was skipped
(`store`, `record`, `problem`; logged too), or event rows the event store read past
when it opened (`store` "events", `record` how many)."""
OPTIMIZATION_STARTED: Final = "optimization.started"
"""An optimization job started or resumed (`optimization_id`, `optimizer`, `program`,
`trainset`, `valset`, `seed`, `resumed`)."""
OPTIMIZATION_ITERATION: Final = "optimization.iteration"
"""An optimizer scored one candidate (`optimization_id`, `optimizer`, `iteration`,
`candidate`, `score`, `metric`)."""
OPTIMIZATION_COMPLETED: Final = "optimization.completed"
"""An optimization job finished (`optimization_id`, `optimizer`, `best_score`, `trials`,
`duration`, `version`)."""
OPTIMIZATION_FAILED: Final = "optimization.failed"
"""An optimization job failed or was cancelled (`optimization_id`, `optimizer`, `error`,
`code`)."""
OPTIMIZATION_SUSPENDED: Final = "optimization.suspended"
"""A running job was stopped at shutdown, its progress stored; it resumes when the
coordinator next starts on the same store (`optimization_id`, `optimizer`, `trials_done`)."""
SERVER_READY: Final = "server.ready"
"""The daemon listens and serves (`url`, `pid`, `loop`)."""
SERVER_DRAINING: Final = "server.draining"
"""The daemon stopped accepting work and drains in-flight requests (`reason`)."""
SERVER_STOPPED: Final = "server.stopped"
"""The daemon's HTTP side has stopped; the tree shuts down next (`exit_code`)."""

EVENT_TYPES: Final = frozenset(
    {
        ACTOR_CRASHED,
        ACTOR_TERMINATE_FAILED,
        ACTOR_UNEXPECTED_MESSAGE,
        SUPERVISOR_REPORT,
        TASK_CRASHED,
        BREAKER_STATE_CHANGED,
        LIMITER_REJECTED,
        CONFIG_CHANGED,
        LM_REQUEST,
        LM_REQUEST_FAILED,
        MODULE_REGISTERED,
        MODULE_SWAPPED,
        MODULE_ROLLED_BACK,
        MODULE_UNREGISTERED,
        MODULE_EXECUTION_START,
        MODULE_EXECUTION_COMPLETE,
        FALLBACK_STRATEGY_SUCCESS,
        CACHE_STALE_SERVED,
        CACHE_ENTRY_DROPPED,
        STORE_RECORD_SKIPPED,
        OPTIMIZATION_STARTED,
        OPTIMIZATION_ITERATION,
        OPTIMIZATION_COMPLETED,
        OPTIMIZATION_FAILED,
        OPTIMIZATION_SUSPENDED,
        SERVER_READY,
        SERVER_DRAINING,
        SERVER_STOPPED,
    }
)
"""Every event type lmvisor itself records (`supervisor.progress` is a log line only)."""

# --- metrics (label names in brackets) ----------------------------------------------------

METRIC_MODULE_SECONDS: Final = "lmvisor_module_execution_seconds"
"""Histogram of module execution time [module]."""
METRIC_MODULE_SUCCESS: Final = "lmvisor_module_success_total"
"""Counter of module executions that succeeded [module]."""
METRIC_MODULE_ERRORS: Final = "lmvisor_module_errors_total"
"""Counter of module executions that failed [module, error]."""
METRIC_LM_REQUEST_SECONDS: Final = "lmvisor_lm_request_seconds"
"""Histogram of LM request time [provider, model]."""
METRIC_LM_TOKENS: Final = "lmvisor_lm_tokens_total"
"""Counter of LM tokens [provider, model, kind] (kind: prompt or completion)."""
METRIC_LM_COST: Final = "lmvisor_lm_cost_usd_total"
"""Counter of LM spend in US dollars [provider, model]."""
METRIC_OPTIMIZATION_ITERATIONS: Final = "lmvisor_optimization_iterations_total"
"""Counter of optimizer iterations [optimizer]."""
METRIC_OPTIMIZATION_SCORE: Final = "lmvisor_optimization_score"
"""Gauge of the latest optimizer score [optimizer]."""
METRIC_OPTIMIZATION_SECONDS: Final = "lmvisor_optimization_seconds"
"""Histogram of optimization run time [optimizer]."""
METRIC_BREAKER_STATE: Final = "lmvisor_circuit_breaker_state"
"""Gauge of each breaker's state: 0 closed, 1 half-open, 2 open [breaker]."""
METRIC_RATE_LIMITER_REJECTIONS: Final = "lmvisor_rate_limiter_rejections_total"
"""Counter of requests refused by a rate limiter [limiter]."""
METRIC_CACHE_HITS: Final = "lmvisor_cache_hits_total"
"""Counter of cache hits [layer]."""
METRIC_CACHE_MISSES: Final = "lmvisor_cache_misses_total"
"""Counter of cache misses [layer]."""
METRIC_CACHE_EVICTIONS: Final = "lmvisor_cache_evictions_total"
"""Counter of cache entries evicted [layer]."""
METRIC_CACHE_ERRORS: Final = "lmvisor_cache_errors_total"
"""Counter of cache tier failures [layer] (L2/L3)."""
METRIC_CACHE_DROPPED: Final = "lmvisor_cache_dropped_total"
"""Counter of cache entries or writes dropped [layer, reason]."""
METRIC_CACHE_HIT_RATE: Final = "lmvisor_cache_hit_rate"
"""Gauge of cache hits over lookups since start, read at scrape time."""
METRIC_ACTORS_ALIVE: Final = "lmvisor_actors_alive"
"""Gauge of actors running, read from the runtime at scrape time."""
METRIC_SUPERVISOR_RESTARTS: Final = "lmvisor_supervisor_restarts_total"
"""Counter of child restarts [supervisor], read from the runtime at scrape time."""
METRIC_MAILBOX_DEPTH: Final = "lmvisor_mailbox_depth"
"""Gauge of messages waiting [actor], read from the runtime at scrape time."""

METRIC_NAMES: Final = frozenset(
    {
        METRIC_MODULE_SECONDS,
        METRIC_MODULE_SUCCESS,
        METRIC_MODULE_ERRORS,
        METRIC_LM_REQUEST_SECONDS,
        METRIC_LM_TOKENS,
        METRIC_LM_COST,
        METRIC_OPTIMIZATION_ITERATIONS,
        METRIC_OPTIMIZATION_SCORE,
        METRIC_OPTIMIZATION_SECONDS,
        METRIC_BREAKER_STATE,
        METRIC_RATE_LIMITER_REJECTIONS,
        METRIC_CACHE_HITS,
        METRIC_CACHE_MISSES,
        METRIC_CACHE_EVICTIONS,
        METRIC_CACHE_ERRORS,
        METRIC_CACHE_DROPPED,
        METRIC_CACHE_HIT_RATE,
        METRIC_ACTORS_ALIVE,
        METRIC_SUPERVISOR_RESTARTS,
        METRIC_MAILBOX_DEPTH,
    }
)
"""Every metric the runtime's `Metrics` exposes, by its exposed name (the daemon adds
`HTTP_METRIC_NAMES`)."""

# --- the daemon's HTTP metrics (registered by `lmvisor.server.http_metrics`) --------------

METRIC_HTTP_REQUESTS: Final = "lmvisor_http_requests_total"
"""Counter of HTTP requests answered [method, route, status]."""
METRIC_HTTP_REQUEST_SECONDS: Final = "lmvisor_http_request_seconds"
"""Histogram of HTTP request time [method, route]."""
METRIC_HTTP_IN_FLIGHT: Final = "lmvisor_http_in_flight"
"""Gauge of HTTP requests being served now."""
METRIC_HTTP_REFUSED: Final = "lmvisor_http_refused_total"
"""Counter of requests and connections the HTTP protocol refused or ended itself [reason]
(`header_timeout`, `head_too_large`, `malformed`, `body_timeout`, `body_too_large`,
`send_timeout`)."""

HTTP_METRIC_NAMES: Final = frozenset(
    {METRIC_HTTP_REQUESTS, METRIC_HTTP_REQUEST_SECONDS, METRIC_HTTP_IN_FLIGHT, METRIC_HTTP_REFUSED}
)
"""The daemon's HTTP metrics: registered by the server beside the runtime's `METRIC_NAMES`."""
