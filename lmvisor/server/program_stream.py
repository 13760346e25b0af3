"""One program run as a stream of server-sent events: its output fields as written, then the result.

`stream_run(app, program_id, inputs, timeout=...)` runs the program through the
ModuleManager exactly as `/run` does (its breaker, limiter, fallbacks, events,
deadline), streamed (`Modules.execute(..., stream=...)`: the programs layer's
`streamify` with a listener on every output field), and yields:

- `chunk` `{"predict_name", "field", "chunk", "is_last_chunk"}`: a piece of one output
  field's text the moment the LM writes it (DSPy's `StreamResponse`);
- `status` `{"message"}`: progress notes (a tool being called);
- `token` `{"text", "index"}`: raw LM text, only for a program with no predictor to
  listen to;
- then `prediction`: the run's result, the same object `/run` answers;
- or `error`: the typed error body (`{"error": {"code", "message", "field"}}`)
  with its HTTP `status`, when the run fails after the stream has started.

Closing the stream (the client leaves, the deadline passes, the daemon drains)
cancels the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from lmvisor.programs.lm import LMDelta
from lmvisor.runtime.errors import LmvisorError
from lmvisor.runtime.observe.logs import get_logger
from lmvisor.server.http_errors import error_payload
from lmvisor.server.program_views import invalid_input, run_view
from lmvisor.server.sse import SSEMessage

if TYPE_CHECKING:
    from lmvisor.services.app import App

__all__ = ["chunk_view", "stream_run"]

_DONE: Final = object()
_log = get_logger("lmvisor.server")


def chunk_view(item: Any) -> SSEMessage | None:
    """The event for one streamed item: `chunk` for a field's piece, `status`, or `token`."""
    if isinstance(item, LMDelta):
        return SSEMessage("token", {"text": item.text, "index": item.index})
    field = getattr(item, "signature_field_name", None)
    if isinstance(field, str):
        return SSEMessage(
            "chunk",
            {
                "predict_name": getattr(item, "predict_name", None),
                "field": field,
                "chunk": getattr(item, "chunk", ""),
                "is_last_chunk": bool(getattr(item, "is_last_chunk", False)),
            },
        )
    message = getattr(item, "message", None)
    return SSEMessage("status", {"message": message}) if isinstance(message, str) else None


async def stream_run(
    app: App,
    program_id: str,
    inputs: Mapping[str, Any],
    *,
    timeout: Any,  # noqa: ASYNC109 (a deadline, passed on)
) -> AsyncIterator[SSEMessage]:
    """Run the program and yield its stream (see the module docstring)."""
    items: asyncio.Queue[Any] = asyncio.Queue()
    run = asyncio.ensure_future(
        app.run(program_id, inputs, timeout=timeout, stream=items.put_nowait)
    )
    run.add_done_callback(lambda _: items.put_nowait(_DONE))
    try:
        while (item := await items.get()) is not _DONE:
            message = chunk_view(item)
            if message is not None:
                yield message
        yield _outcome(run)
    finally:
        if not run.done():
            run.cancel()
            # Wait for the run to take its cancellation, without swallowing ours.
            await asyncio.wait({run})
        if not run.cancelled():
            run.exception()  # retrieved: the outcome was sent, or nobody is left to tell


def _outcome(run: asyncio.Future[Any]) -> SSEMessage:
    try:
        execution = run.result()
    except LmvisorError as exc:
        return _error(exc)
    except (ValueError, TypeError) as exc:
        return _error(invalid_input(exc))
    except Exception as exc:
        _log.exception("http.stream_failed", error=type(exc).__name__)
        return _error(exc)
    return SSEMessage("prediction", run_view(execution))


def _error(exc: BaseException) -> SSEMessage:
    status, body = error_payload(exc)
    return SSEMessage("error", {**body, "status": status})
