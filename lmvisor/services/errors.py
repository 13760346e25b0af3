"""Errors raised by the supervised services (providers, router, cache, modules, optimization).

LmvisorError
└── ServiceError
    ├── AppClosed                the app's `open_app` block has exited; nothing runs in it
    ├── BudgetExceeded           a provider's cost cap for the period is spent
    ├── UnknownProvider          a model names a vendor with no provider running
    ├── NoDeploymentAvailable    every deployment of a route failed or is cooling down
    ├── OptimizationSpecError    a submitted optimization job is malformed
    ├── UnknownJob               no optimization job has that id
    ├── JobNotFinished           the job has no result (yet, or ever)
    ├── JobRunsElsewhere         the job runs in another process on the same jobs file
    ├── ServiceInputError        a request to a service is malformed (also a ValueError)
    ├── CacheMiss                a cache-only answer was asked for and none is cached
    ├── UnknownModule            no program is registered under the id
    ├── ModuleAlreadyRegistered  the id is taken (swap a new version in instead)
    ├── NoPreviousVersion        a rollback with no earlier version to return to
    ├── VersionMoved             a state swap's version was replaced while it was prepared
    ├── AllStrategiesFailed      the program and every fallback failed; `causes` holds each
    ├── CorruptRecord            a stored row (job, checkpoint step, program) cannot be decoded
    └── StoreUnavailable         a service's SQLite file cannot be opened or holds another layout
        └── StoreBusy            ... or cannot be written now (locked, full): a later try may work
"""

from __future__ import annotations

from collections.abc import Sequence

from lmvisor._redaction import clipped
from lmvisor.programs.lm import MAX_MODEL_NAME
from lmvisor.runtime.errors import LmvisorError, RuntimeClosed

__all__ = [
    "AllStrategiesFailed",
    "AppClosed",
    "BudgetExceeded",
    "CacheMiss",
    "CorruptRecord",
    "JobNotFinished",
    "JobRunsElsewhere",
    "ModuleAlreadyRegistered",
    "NoDeploymentAvailable",
    "NoPreviousVersion",
    "OptimizationSpecError",
    "ServiceError",
    "ServiceInputError",
    "StoreBusy",
    "StoreUnavailable",
    "UnknownJob",
    "UnknownModule",
    "UnknownProvider",
    "VersionMoved",
]


class ServiceError(LmvisorError):
    """A supervised service refused or could not serve a request."""

    code = "service_error"


class AppClosed(ServiceError):
    """The application tree was stopped (its `open_app` block exited, or its root supervisor
    gave up): nothing more runs in it. Open a new app; a held `app` or `app.lm(...)` is spent."""

    code = "app_closed"

    def __init__(self, *, namespace: str, operation: str) -> None:
        super().__init__(
            f"the app is closed: {operation} needs a running app, and the app in namespace"
            f" {namespace!r} has stopped (its `async with open_app(...)` block exited)",
            context={"namespace": namespace, "operation": operation},
        )
        self.namespace = namespace
        self.operation = operation

    @classmethod
    def of(cls, closed: RuntimeClosed, *, operation: str) -> AppClosed:
        """The app's word for its runtime refusing `operation` as closed: the one place a
        service turns the runtime's `RuntimeClosed` into `AppClosed`."""
        return cls(namespace=closed.namespace, operation=operation)


class BudgetExceeded(ServiceError):
    """The provider's cost cap for this period is spent; nothing was sent."""

    code = "budget_exceeded"

    def __init__(self, *, provider: str, spent: float, limit: float, retry_after: float) -> None:
        super().__init__(
            f"provider {provider!r} budget exceeded: spent ${spent:.4f} of ${limit:.4f}"
            f" this period; it resets in {retry_after:.1f}s",
            context={
                "provider": provider,
                "spent": spent,
                "limit": limit,
                "retry_after": retry_after,
            },
        )
        self.provider = provider
        self.retry_after = retry_after


class UnknownProvider(ServiceError):
    """The model string names a vendor that has no provider configured."""

    code = "unknown_provider"

    def __init__(self, *, model: str, vendor: str, known: Sequence[str]) -> None:
        model, vendor = _shown(model), _shown(vendor)
        super().__init__(
            f"model {model!r} names provider {vendor!r}, which is not configured"
            f" (configured: {', '.join(sorted(known)) or 'none'})",
            context={"model": model, "vendor": vendor, "known": sorted(known)},
        )
        self.vendor = vendor


class NoDeploymentAvailable(ServiceError):
    """Every deployment of the route failed or is cooling down; `errors` holds each cause."""

    code = "no_deployment_available"
    retryable = True

    def __init__(self, *, model: str, errors: Sequence[tuple[str, BaseException]]) -> None:
        model = _shown(model)
        detail = "; ".join(f"{name}: {type(err).__name__}: {err}" for name, err in errors)
        super().__init__(
            f"no deployment of {model!r} could serve the request ({detail or 'none tried'})",
            context={
                "model": model,
                "errors": [[name, type(err).__name__, str(err)] for name, err in errors],
            },
        )
        self.errors = list(errors)


class OptimizationSpecError(ServiceError, ValueError):
    """The submitted job spec is malformed; `field` is the dotted path of the bad part."""

    code = "optimization_spec_error"

    def __init__(self, *, field: str, problem: str) -> None:
        super().__init__(
            f"invalid optimization job at {field}: {problem}",
            context={"field": field, "problem": problem},
        )
        self.field = field
        self.problem = problem


class UnknownJob(ServiceError):
    """No optimization job has this id; list the jobs to find it."""

    code = "unknown_job"

    def __init__(self, *, job_id: str) -> None:
        super().__init__(f"no optimization job {job_id!r}", context={"job_id": job_id})
        self.job_id = job_id


class JobNotFinished(ServiceError):
    """The job has no result: it is still running, or it failed or was cancelled."""

    code = "job_not_finished"

    def __init__(self, *, job_id: str, status: str) -> None:
        super().__init__(
            f"optimization job {job_id!r} has no result (status: {status})",
            context={"job_id": job_id, "status": status},
        )
        self.job_id = job_id
        self.status = status


class JobRunsElsewhere(ServiceError):
    """The job is claimed by another process open on the same jobs file (another app on the
    data directory): only that process can stop it, so the request is refused there."""

    code = "job_runs_elsewhere"

    def __init__(self, *, job_id: str, path: str) -> None:
        super().__init__(
            f"optimization job {job_id!r} runs in another process on the jobs file {path!r};"
            " cancel it in that process",
            context={"job_id": job_id, "path": path},
        )
        self.job_id = job_id
        self.path = path


class ServiceInputError(ServiceError, ValueError):
    """The caller sent a malformed request; `field` names the bad part (fix it and resend)."""

    code = "service_input_error"

    def __init__(self, *, field: str, problem: str) -> None:
        super().__init__(
            f"invalid {field}: {problem}", context={"field": field, "problem": problem}
        )
        self.field = field
        self.problem = problem


class CacheMiss(ServiceError):
    """A cache-only lookup (a stale-answer fallback) found nothing; nothing was sent."""

    code = "cache_miss"

    def __init__(self, *, model: str) -> None:
        model = _shown(model)
        super().__init__(
            f"no cached answer for this {model!r} request (cache-only lookup)",
            context={"model": model},
        )


class UnknownModule(ServiceError):
    """No program is registered under `module_id`; register it first."""

    code = "unknown_module"

    def __init__(self, *, module_id: str) -> None:
        super().__init__(
            f"no program is registered as {module_id!r}", context={"module_id": module_id}
        )
        self.module_id = module_id


class ModuleAlreadyRegistered(ServiceError):
    """The id is taken; swap a new version in, or unregister the old program first."""

    code = "module_already_registered"

    def __init__(self, *, module_id: str) -> None:
        super().__init__(
            f"a program is already registered as {module_id!r}; swap a new version in instead",
            context={"module_id": module_id},
        )
        self.module_id = module_id


class NoPreviousVersion(ServiceError):
    """A rollback found no earlier version of the program to return to."""

    code = "no_previous_version"

    def __init__(self, *, module_id: str, version: int) -> None:
        super().__init__(
            f"program {module_id!r} is at version {version}, which has no earlier version kept",
            context={"module_id": module_id, "version": version},
        )
        self.module_id = module_id


class VersionMoved(ServiceError):
    """The version a state swap was applied to stopped being current before the swap was
    installed (another swap or a rollback came first); trying again applies it to the new one.
    """

    code = "version_moved"
    retryable = True

    def __init__(self, *, module_id: str, base: int, current: int) -> None:
        super().__init__(
            f"program {module_id!r} moved from version {base} to {current} while the swap"
            " was prepared; try again",
            context={"module_id": module_id, "base": base, "current": current},
        )
        self.module_id = module_id


class AllStrategiesFailed(ServiceError):
    """The program and every configured fallback failed; `causes` holds (strategy, error)."""

    code = "all_strategies_failed"

    def __init__(self, *, module_id: str, causes: Sequence[tuple[str, BaseException]]) -> None:
        detail = "; ".join(f"{name}: {type(err).__name__}: {err}" for name, err in causes)
        super().__init__(
            f"program {module_id!r} failed with every strategy ({detail})",
            context={
                "module_id": module_id,
                "causes": [[name, type(err).__name__, str(err)] for name, err in causes],
            },
        )
        self.module_id = module_id
        self.causes = list(causes)


class CorruptRecord(ServiceError):
    """A stored row cannot be decoded (damaged file or foreign writer); it is skipped, never used.

    `store` names the table ("jobs", "steps", "programs"), `record` the row's key.
    """

    code = "corrupt_record"

    def __init__(self, *, store: str, record: str, problem: str) -> None:
        super().__init__(
            f"corrupt {store} record {record!r}: {problem}",
            context={"store": store, "record": record, "problem": problem},
        )
        self.store = store
        self.record = record
        self.problem = problem


class StoreUnavailable(ServiceError):
    """A service's SQLite file cannot be opened, is not a database, or holds tables of another
    layout; nothing in it was changed. `path` names the file, `problem` what is wrong."""

    code = "store_unavailable"
    _advice = "move the file aside to start without what it held"

    def __init__(self, *, path: str, problem: str) -> None:
        super().__init__(
            f"store {path!r} cannot be used: {problem} ({self._advice})",
            context={"path": path, "problem": problem},
        )
        self.path = path
        self.problem = problem


class StoreBusy(StoreUnavailable):
    """A service's SQLite file cannot be read or written now: locked by another process
    past the busy timeout, the disk full, an I/O error. Nothing is wrong with the file;
    the same operation may succeed later."""

    code = "store_busy"
    retryable = True
    _advice = "locked by another process, or the disk full: try again"


def _shown(model: str) -> str:
    """A model name as messages echo it: whole up to `MAX_MODEL_NAME` characters, else clipped."""
    return clipped(model, MAX_MODEL_NAME)
