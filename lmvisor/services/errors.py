"""Errors raised by the supervised services (LM providers, the router, optimization jobs).

LmvisorError
└── ServiceError
    ├── BudgetExceeded           a provider's cost cap for the period is spent
    ├── UnknownProvider          a model names a vendor with no provider running
    ├── NoDeploymentAvailable    every deployment of a route failed or is cooling down
    ├── OptimizationSpecError    a submitted optimization job is malformed
    ├── UnknownJob               no optimization job has that id
    └── JobNotFinished           the job has no result (yet, or ever)
"""

from __future__ import annotations

from collections.abc import Sequence

from lmvisor.runtime.errors import LmvisorError

__all__ = [
    "BudgetExceeded",
    "JobNotFinished",
    "NoDeploymentAvailable",
    "OptimizationSpecError",
    "ServiceError",
    "UnknownJob",
    "UnknownProvider",
]


class ServiceError(LmvisorError):
    """A supervised service refused or could not serve a request."""

    code = "service_error"


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
