"""The root of lmvisor's error tree and the runtime's own errors.

    LmvisorError
    ├── ActorError                  an actor could not take or answer a message
    │   ├── ActorExited             the callee died (or was dead) before replying
    │   ├── CalledSelf              an actor called itself (also a built-in RuntimeError)
    │   ├── CallTimeout             no reply in time (also a built-in TimeoutError)
    │   ├── MailboxFull             fail-fast mailbox at capacity
    │   ├── NameAlreadyRegistered   a live actor holds the name (also a built-in ValueError)
    │   ├── NameNotRegistered       via(name) resolved to nothing
    │   └── RuntimeClosed           the runtime has closed; nothing runs in it (also a RuntimeError)
    ├── DeadlineExceeded            the call's deadline passed (also a built-in TimeoutError)
    ├── EventsFileUnavailable       the events file cannot be opened or is not a database
    ├── SupervisorError             a child could not be started or managed
    │   ├── StartError              a child's start or started() failed
    │   └── SupervisorGaveUp        the root supervisor gave up; the runtime stopped
    └── ProtectionError             a protection refused or gave up on a call
        ├── CircuitOpen             the breaker is open; try later
        ├── RateLimited             the limiter has no room; carries the wait
        ├── BulkheadFull            too many calls running and queued
        └── RetryExhausted          every attempt failed; carries the last error

Every error carries `code`, `message`, `context`, `correlation_id` and
`retryable`; the correlation id is captured from the current scope when the
error is built. The root itself lives in the leaf module `lmvisor._error`, so
config's `ConfigError` is an `LmvisorError` too; other layers add their own
`errors.py` under this root.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lmvisor._error import LmvisorError

__all__ = [
    "ActorError",
    "ActorExited",
    "BulkheadFull",
    "CallTimeout",
    "CalledSelf",
    "CircuitOpen",
    "DeadlineExceeded",
    "EventsFileUnavailable",
    "LmvisorError",
    "MailboxFull",
    "NameAlreadyRegistered",
    "NameNotRegistered",
    "ProtectionError",
    "RateLimited",
    "RetryExhausted",
    "RuntimeClosed",
    "StartError",
    "SupervisorError",
    "SupervisorGaveUp",
    "error_context",
]


# --- actors -------------------------------------------------------------------


class ActorError(LmvisorError):
    """An actor could not take or answer a message."""

    code = "actor_error"


class ActorExited(ActorError):
    """The callee was dead or died before replying; the caller may retry via its name."""

    code = "actor_exited"
    retryable = True

    def __init__(self, *, actor: str, reason: object = None) -> None:
        super().__init__(
            f"actor {actor} exited before replying (reason: {reason!r})",
            context={"actor": actor, "reason": repr(reason)},
        )
        self.actor = actor
        self.reason = reason


class CalledSelf(ActorError, RuntimeError):
    """An actor called its own ref, a call that could only wait for itself forever.

    OTP's ``calling_self``. Raised at once, from a handler that is not inline or
    from the actor's own `started()`; nothing is sent. A `RuntimeError` too, as it
    was before it had a type of its own.
    """

    code = "called_self"

    def __init__(self, *, actor: str, message_type: str) -> None:
        super().__init__(
            f"{actor} called itself with {message_type}",
            context={"actor": actor, "message_type": message_type},
        )
        self.actor = actor
        self.message_type = message_type


class CallTimeout(ActorError, TimeoutError):
    """No reply within the caller's timeout; the callee may still act on the message."""

    code = "call_timeout"
    retryable = True

    def __init__(self, *, actor: str, message_type: str, timeout: float) -> None:
        super().__init__(
            f"call to {actor} with {message_type} timed out after {timeout:g}s",
            context={"actor": actor, "message_type": message_type, "timeout": timeout},
        )
        self.timeout = timeout


class DeadlineExceeded(LmvisorError, TimeoutError):
    """The call's deadline passed before the work finished; the caller may retry with more time."""

    code = "deadline_exceeded"
    retryable = True

    def __init__(self, *, operation: str, budget: float | None = None) -> None:
        detail = "" if budget is None else f" ({budget:g}s budget)"
        super().__init__(
            f"deadline exceeded during {operation}{detail}",
            context={"operation": operation, "budget": budget},
        )


class EventsFileUnavailable(LmvisorError):
    """The events file (`events.sqlite_path`) cannot be opened, is not a database, or cannot
    be created; nothing in it was changed. `path` names the file, `problem` what is wrong."""

    code = "events_file_unavailable"

    def __init__(self, *, path: str, problem: str) -> None:
        super().__init__(
            f"events file {path!r} cannot be used: {problem}"
            " (move the file aside, or set events.sqlite_path to another file)",
            context={"path": path, "problem": problem},
        )
        self.path = path
        self.problem = problem


class MailboxFull(ActorError):
    """The callee's fail-fast mailbox is at capacity; back off and resend."""

    code = "mailbox_full"
    retryable = True

    def __init__(self, *, actor: str, capacity: int) -> None:
        super().__init__(
            f"mailbox of {actor} is full (capacity {capacity})",
            context={"actor": actor, "capacity": capacity},
        )


class NameAlreadyRegistered(ActorError, ValueError):
    """A live actor holds the unique name (OTP's ``{already_started, Pid}``).

    A `ValueError` too, as it was before it had a type of its own. `holder`
    names the actor that has it; `Registry.whereis(name)` gives its ref.
    """

    code = "name_already_registered"

    def __init__(self, *, name: object, namespace: str, holder: str) -> None:
        super().__init__(
            f"name {name!r} is already registered to {holder} in namespace {namespace!r}",
            context={"name": repr(name), "namespace": namespace, "holder": holder},
        )
        self.name = name
        self.holder = holder


class NameNotRegistered(ActorError):
    """No live actor holds the name; it may be restarting, so the caller may retry."""

    code = "name_not_registered"
    retryable = True

    def __init__(self, *, name: object, namespace: str) -> None:
        super().__init__(
            f"no actor registered as {name!r} in namespace {namespace!r}",
            context={"name": repr(name), "namespace": namespace},
        )
        self.name = name


class RuntimeClosed(ActorError, RuntimeError):
    """The runtime has closed: its `Runtime.open` block exited (or its root supervisor gave
    up), so no actor will answer in it again. Not retryable: open a new runtime.

    Raised where a name resolves to nothing once the runtime has closed (`Via.call`,
    `cast`, `cast_nowait`, `resolve`), in place of `NameNotRegistered`, and by `spawn`
    and `as_current` on a closed runtime. A `RuntimeError` too, as those raised before it
    had a type of its own. `namespace` names the runtime, `operation` what was refused.
    """

    code = "runtime_closed"

    def __init__(self, *, namespace: str, operation: str) -> None:
        super().__init__(
            f"runtime {namespace!r} is closed: {operation} needs a running runtime",
            context={"namespace": namespace, "operation": operation},
        )
        self.namespace = namespace
        self.operation = operation


# --- supervisors ----------------------------------------------------------------


class SupervisorError(LmvisorError):
    """A supervisor could not start or manage a child."""

    code = "supervisor_error"


class StartError(SupervisorError):
    """A child's start function or its started() hook failed; the cause is chained."""

    code = "start_error"

    def __init__(self, *, supervisor: str, child_id: str, reason: object) -> None:
        super().__init__(
            f"supervisor {supervisor} failed to start child {child_id!r}: {reason!r}",
            context={"supervisor": supervisor, "child_id": child_id, "reason": repr(reason)},
        )
        self.child_id = child_id
        self.reason = reason


class SupervisorGaveUp(SupervisorError):
    """The root supervisor gave up (its restart intensity ran out), so the runtime stopped.

    Nothing restarts the root: fix the child `child_id` (see `reason`, its
    last exit reason, chained when it is an exception) and open the runtime
    again. `child_id` is None when the root exited for another reason.
    """

    code = "supervisor_gave_up"

    def __init__(self, *, supervisor: str, child_id: str | None, reason: object) -> None:
        if child_id is None:
            text = f"supervisor {supervisor} exited unexpectedly (reason: {reason!r})"
        else:
            text = (
                f"supervisor {supervisor} gave up on child {child_id!r} "
                f"(last exit reason: {reason!r})"
            )
        super().__init__(
            text, context={"supervisor": supervisor, "child_id": child_id, "reason": repr(reason)}
        )
        self.supervisor = supervisor
        self.child_id = child_id
        self.reason = reason


# --- protection -----------------------------------------------------------------


class ProtectionError(LmvisorError):
    """A protection (breaker, limiter, bulkhead, retry) refused or gave up on a call."""

    code = "protection_error"


class CircuitOpen(ProtectionError):
    """The breaker for `name` is open; calls fail fast until `retry_after` seconds pass."""

    code = "circuit_open"
    retryable = True

    def __init__(self, *, name: str, retry_after: float) -> None:
        super().__init__(
            f"circuit {name!r} is open; retry in {retry_after:.3f}s",
            context={"name": name, "retry_after": retry_after},
        )
        self.name = name
        self.retry_after = retry_after


class RateLimited(ProtectionError):
    """The limiter for `name` has no room now; it will after `retry_after` seconds."""

    code = "rate_limited"
    retryable = True

    def __init__(self, *, name: str, retry_after: float) -> None:
        super().__init__(
            f"rate limit {name!r} reached; retry in {retry_after:.3f}s",
            context={"name": name, "retry_after": retry_after},
        )
        self.name = name
        self.retry_after = retry_after


class BulkheadFull(ProtectionError):
    """The bulkhead for `name` has every slot running and its queue full."""

    code = "bulkhead_full"
    retryable = True

    def __init__(self, *, name: str, max_concurrent: int, max_queued: int) -> None:
        super().__init__(
            f"bulkhead {name!r} is full ({max_concurrent} running, {max_queued} queued)",
            context={"name": name, "max_concurrent": max_concurrent, "max_queued": max_queued},
        )
        self.name = name


class RetryExhausted(ProtectionError):
    """Every attempt failed; `last_error` is the final attempt's failure (also chained)."""

    code = "retry_exhausted"

    def __init__(self, *, name: str, attempts: int, last_error: BaseException) -> None:
        super().__init__(
            f"{name}: gave up after {attempts} attempts: {last_error}",
            context={"name": name, "attempts": attempts, "last_error": repr(last_error)},
        )
        self.attempts = attempts
        self.last_error = last_error


# --- context --------------------------------------------------------------------


@contextmanager
def error_context(operation: str, **metadata: Any) -> Iterator[None]:
    """Attach where an error happened to any `LmvisorError` raised inside the block.

    The innermost `error_context` wins for `operation`; metadata keys already
    present on the error are kept. Other exceptions pass through untouched.
    """
    try:
        yield
    except LmvisorError as exc:
        exc.context.setdefault("operation", operation)
        for key, value in metadata.items():
            exc.context.setdefault(key, value)
        raise
