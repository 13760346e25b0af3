"""Streaming a program to its caller: `streamify(program)` and `Module.stream(...)`.

While a streamed program runs, each predictor a listener watches calls its LM through
`LM.stream` instead of `LM.complete`; every text delta goes to that predictor's
`StreamListener`s, which cut the text of their output field out of the adapter's
format (`[[ ## field ## ]]` sections, a JSON object, XML tags) and yield it as
`StreamResponse` chunks the moment it cannot be part of a marker. The stream also carries
`StatusMessage`s (tool calls, by default) and ends with the program's `Prediction`.

Without listeners, every predictor streams and the raw `LMDelta`s are yielded.
Cancellation: closing the iterator (or cancelling its consumer) cancels the program,
which closes the LM stream in flight; the close waits for the program to unwind, and a
consumer cancelled meanwhile stays cancelled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

from lmvisor.programs._stream_fields import FieldCutter, cutter_for
from lmvisor.programs.callbacks import Callback
from lmvisor.programs.example import Prediction
from lmvisor.programs.lm import LMDelta
from lmvisor.programs.module import Module
from lmvisor.programs.settings import active_callbacks, context

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "StatusMessage",
    "StatusMessageProvider",
    "StreamListener",
    "StreamResponse",
    "listeners_for",
    "stream_receiver",
    "streamed_chunks",
    "streamify",
]


@final
@dataclass(frozen=True, slots=True)
class StreamResponse:
    """A piece of one output field, as it streams (DSPy's name and fields)."""

    predict_name: str | None
    signature_field_name: str
    chunk: str
    is_last_chunk: bool


@final
@dataclass(frozen=True, slots=True)
class StatusMessage:
    """A progress note for the caller ("Calling tool search...")."""

    message: str


class StatusMessageProvider:
    """The status messages a stream carries; override the ones you want (None: none)."""

    def tool_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        """Before a tool runs."""
        return f"Calling tool {instance.name}..."

    def tool_end_status_message(self, outputs: Any) -> str | None:
        """After a tool ran."""
        return "Tool calling finished! Querying the LLM with tool calling results..."

    def module_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        """Before a module runs."""
        return None

    def module_end_status_message(self, outputs: Any) -> str | None:
        """After a module ran."""
        return None

    def lm_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        """Before an LM call."""
        return None

    def lm_end_status_message(self, outputs: Any) -> str | None:
        """After an LM call."""
        return None


@final
class StreamListener:
    """Watches one output field of one predictor and yields its text as it streams.

    Args:
        signature_field_name: the output field to stream.
        predict: the predictor to watch; found by field name when None (the name must be
            an output of exactly one predictor of the program).
        predict_name: the predictor's name in the program (found with it when None).
        allow_reuse: keep listening after the field's first complete stream (a predictor
            called in a loop); by default only the first call streams.
    """

    def __init__(
        self,
        signature_field_name: str,
        predict: Any = None,
        predict_name: str | None = None,
        allow_reuse: bool = False,
    ) -> None:
        self.signature_field_name = signature_field_name
        self.predict = predict
        self.predict_name = predict_name
        self.allow_reuse = allow_reuse
        self.streamed = False  # something of the field was yielded
        self._done = False
        self._cutter: FieldCutter | None = None

    def __repr__(self) -> str:
        return f"StreamListener({self.signature_field_name!r}, predict_name={self.predict_name!r})"

    def start(self, adapter: Any) -> None:
        """A new LM call of the watched predictor begins, formatted by `adapter`."""
        if self._done and not self.allow_reuse:
            self._cutter = None
            return
        self._done = False
        self._cutter = cutter_for(adapter, self.signature_field_name)

    def receive(self, text: str) -> list[StreamResponse]:
        """The chunks a new piece of LM text releases (usually none or one)."""
        if self._cutter is None or self._done:
            return []
        pieces, finished = self._cutter.feed(text)
        return self._responses(pieces, finished)

    def finish(self) -> list[StreamResponse]:
        """The LM call ended: release what is held, marking the field's last chunk."""
        if self._cutter is None or self._done:
            return []
        pieces, started = self._cutter.close()
        return self._responses(pieces, started)

    def _responses(self, pieces: list[str], finished: bool) -> list[StreamResponse]:
        out = [self._response(p, last=False) for p in pieces if p]
        if finished:
            self._done = True
            if out:
                out[-1] = self._response(out[-1].chunk, last=True)
            else:
                out.append(self._response("", last=True))
        if out:
            self.streamed = True
        return out

    def _response(self, chunk: str, *, last: bool) -> StreamResponse:
        return StreamResponse(self.predict_name, self.signature_field_name, chunk, last)


_Item = StreamResponse | StatusMessage | LMDelta | Prediction


@final
class _Session:
    """One streamed run: where its items go and who listens to which predictor."""

    __slots__ = ("emitted", "listeners", "queue")

    def __init__(
        self, queue: asyncio.Queue[Any], listeners: Mapping[int, Sequence[StreamListener]]
    ) -> None:
        self.queue = queue
        self.listeners = listeners
        self.emitted = 0  # chunks the caller may have seen

    def receiver(self, predictor: Any, adapter: Any) -> Callable[[LMDelta | None], None] | None:
        if not self.listeners:
            return self._raw
        watching = self.listeners.get(id(predictor))
        if not watching:
            return None
        for listener in watching:
            listener.start(adapter)

        def receive(delta: LMDelta | None) -> None:
            for listener in watching:
                if delta is None:
                    chunks = listener.finish()
                elif delta.reasoning or delta.index != 0:
                    continue  # listeners follow the first choice's answer text
                else:
                    chunks = listener.receive(delta.text)
                for chunk in chunks:
                    self.emitted += 1
                    self.queue.put_nowait(chunk)

        return receive

    def _raw(self, delta: LMDelta | None) -> None:
        if delta is not None:
            self.emitted += 1
            self.queue.put_nowait(delta)


_session: ContextVar[_Session | None] = ContextVar("lmvisor_stream", default=None)


def streamed_chunks() -> int:
    """How many chunks the running stream has sent its caller (0 when not streaming).

    An adapter retrying a call (ChatAdapter's JSON fallback) must not once text of the
    first attempt is out: the caller would see two answers.
    """
    session = _session.get()
    return 0 if session is None else session.emitted


def stream_receiver(predictor: Any, adapter: Any) -> Callable[[LMDelta | None], None] | None:
    """Where `predictor`'s LM deltas go in the running stream (None: do not stream).

    The receiver is called with each delta, then with None when the LM call ends.
    """
    session = _session.get()
    return None if session is None else session.receiver(predictor, adapter)


@final
class _StatusCallback(Callback):
    """Turns module, LM and tool hooks into the stream's status messages."""

    def __init__(self, provider: StatusMessageProvider, queue: asyncio.Queue[Any]) -> None:
        self._provider = provider
        self._queue = queue

    def _put(self, message: str | None) -> None:
        if message:
            self._queue.put_nowait(StatusMessage(message))

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        if getattr(instance, "name", None) != "finish":
            self._put(self._provider.tool_start_status_message(instance, inputs))

    def on_tool_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None
    ) -> None:
        if outputs != "Completed.":  # the finish tool's answer is no tool progress
            self._put(self._provider.tool_end_status_message(outputs))

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._put(self._provider.module_start_status_message(instance, inputs))

    def on_module_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None
    ) -> None:
        self._put(self._provider.module_end_status_message(outputs))

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._put(self._provider.lm_start_status_message(instance, inputs))

    def on_lm_end(self, call_id: str, outputs: Any | None, exception: BaseException | None) -> None:
        self._put(self._provider.lm_end_status_message(outputs))


@final
@dataclass(frozen=True, slots=True)
class _Ended:
    result: Any = None
    error: BaseException | None = None


def streamify(
    program: Module,
    *,
    stream_listeners: Sequence[StreamListener] = (),
    status_message_provider: StatusMessageProvider | None = None,
    include_final_prediction_in_output_stream: bool = True,
) -> Callable[..., AsyncIterator[_Item]]:
    """Wrap `program` so that calling it yields its output as it is produced.

    `streamify(program)(**inputs)` is an async iterator of `StreamResponse` chunks (or raw
    `LMDelta`s without listeners), `StatusMessage`s, and finally the `Prediction`. With
    `include_final_prediction_in_output_stream=False` the prediction is left out, unless no
    listener streamed anything.

    Raises:
        ValueError: a listener's field is an output of no predictor, or of several.
    """
    listeners = _bind_listeners(program, stream_listeners)
    provider = status_message_provider or StatusMessageProvider()

    async def run(**inputs: Any) -> AsyncIterator[_Item]:
        import asyncio  # lazily: keeps `import lmvisor.programs` cheap

        queue: asyncio.Queue[Any] = asyncio.Queue()
        task = asyncio.create_task(_drive(program, inputs, queue, listeners, provider))
        try:
            while True:
                item = await queue.get()
                if not isinstance(item, _Ended):
                    yield item
                    continue
                if item.error is not None:
                    raise item.error
                keep = include_final_prediction_in_output_stream or not any(
                    listener.streamed for group in listeners.values() for listener in group
                )
                if keep:
                    yield item.result
                return
        finally:
            await _stop(task)

    return run


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel the program's task and wait until it has unwound (its LM stream closed).

    A caller cancelled during that wait still waits for the program (nothing it started
    outlives it), then stays cancelled: its own `CancelledError` is raised, never swallowed
    with the program's, as `asyncio.TaskGroup` does.
    """
    import asyncio

    task.cancel()
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError as exc:
            cancelled = exc
    if not task.cancelled():
        task.exception()  # retrieved: a failure went to the consumer as `_Ended`
    if cancelled is not None:
        raise cancelled


async def _drive(
    program: Module,
    inputs: dict[str, Any],
    queue: asyncio.Queue[Any],
    listeners: Mapping[int, Sequence[StreamListener]],
    provider: StatusMessageProvider,
) -> None:
    _session.set(_Session(queue, listeners))
    status = _StatusCallback(provider, queue)
    try:
        with context(callbacks=[*active_callbacks(), status]):
            result = await program(**inputs)
    except Exception as exc:
        queue.put_nowait(_Ended(error=exc))
    else:
        queue.put_nowait(_Ended(result=result))


def _bind_listeners(
    program: Module, listeners: Sequence[StreamListener]
) -> dict[int, list[StreamListener]]:
    """Each listener's predictor, found by field name where not given.

    Raises:
        ValueError: a field names no predictor's output, or several predictors' outputs.
    """
    named = program.named_predictors()
    by_predictor: dict[int, list[StreamListener]] = {}
    for listener in listeners:
        if listener.predict is None:
            owners = [
                (n, p)
                for n, p in named
                if listener.signature_field_name in p.signature.output_fields
            ]
            if not owners:
                raise ValueError(
                    f"no predictor of the program has an output field "
                    f"{listener.signature_field_name!r} to stream"
                )
            if len(owners) > 1:
                raise ValueError(
                    f"output field {listener.signature_field_name!r} belongs to several "
                    f"predictors ({', '.join(n for n, _ in owners)}): give the listener's predict"
                )
            listener.predict_name, listener.predict = owners[0]
        elif listener.predict_name is None:
            listener.predict_name = next((n for n, p in named if p is listener.predict), None)
        by_predictor.setdefault(id(listener.predict), []).append(listener)
    return by_predictor


def listeners_for(program: Module) -> list[StreamListener]:
    """One listener per output field of every predictor of `program`."""
    return [
        StreamListener(field, predict=predictor, predict_name=name)
        for name, predictor in program.named_predictors()
        for field in predictor.signature.output_fields
    ]
