"""Lifecycle reports: one structlog event per fact, with fixed keys, like OTP's reports.

Events go to the current runtime's logger (`lmvisor.runtime.logger`); this module never
configures structlog. Values are passed as objects (exceptions, messages) so
formatting happens only if a processor renders them. Normal and shutdown exits
are not reported.
"""

from __future__ import annotations

from typing import Any

from lmvisor.runtime.logger import get_logger

__all__ = [
    "ACTOR_CRASHED",
    "ACTOR_TERMINATE_FAILED",
    "ACTOR_UNEXPECTED_MESSAGE",
    "SUPERVISOR_PROGRESS",
    "SUPERVISOR_REPORT",
    "TASK_CRASHED",
    "actor_crashed",
    "supervisor_progress",
    "supervisor_report",
    "task_crashed",
    "terminate_failed",
    "unexpected_message",
]

ACTOR_CRASHED = "actor.crashed"
ACTOR_TERMINATE_FAILED = "actor.terminate_failed"
ACTOR_UNEXPECTED_MESSAGE = "actor.unexpected_message"
SUPERVISOR_PROGRESS = "supervisor.progress"
SUPERVISOR_REPORT = "supervisor.report"
TASK_CRASHED = "task.crashed"

_log: Any = get_logger("lmvisor.runtime")


def _exc_info(reason: object) -> BaseException | None:
    return reason if isinstance(reason, BaseException) else None


def actor_crashed(
    namespace: str,
    *,
    actor: str,
    last_message: object,
    state: object,
    reason: object,
    caller: str | None,
) -> None:
    """An actor's handler (or deferred cast task) raised; keys as gen_server's crash report."""
    _log.error(
        ACTOR_CRASHED,
        namespace=namespace,
        actor=actor,
        last_message=last_message,
        state=state,
        reason=reason,
        caller=caller,
        exc_info=_exc_info(reason),
    )


def terminate_failed(namespace: str, actor: str, exc: BaseException) -> None:
    """An actor's `terminate()` raised while it was stopping."""
    _log.error(ACTOR_TERMINATE_FAILED, namespace=namespace, actor=actor, reason=exc, exc_info=exc)


def unexpected_message(namespace: str, actor: str, msg: object) -> None:
    """A system message arrived that the actor has no handler for; it was dropped."""
    _log.warning(
        ACTOR_UNEXPECTED_MESSAGE, namespace=namespace, actor=actor, message=type(msg).__qualname__
    )


def supervisor_report(
    namespace: str, *, supervisor: str, context: str, reason: object, offender: object
) -> None:
    """A supervisor event worth an operator's eye.

    Args:
        context: "start_error", "child_terminated", "shutdown_error" or "shutdown".
        offender: the child id (or a description) the report is about.
    """
    _log.error(
        SUPERVISOR_REPORT,
        namespace=namespace,
        supervisor=supervisor,
        context=context,
        reason=reason,
        offender=offender,
    )


def supervisor_progress(namespace: str, *, supervisor: str, started: object) -> None:
    """A supervisor started a child (debug level, like OTP's progress reports)."""
    _log.debug(SUPERVISOR_PROGRESS, namespace=namespace, supervisor=supervisor, started=started)


def task_crashed(namespace: str, *, supervisor: str, task: str, reason: BaseException) -> None:
    """A task under a task supervisor raised; the supervisor keeps running."""
    _log.error(
        TASK_CRASHED,
        namespace=namespace,
        supervisor=supervisor,
        task=task,
        reason=reason,
        exc_info=reason,
    )
