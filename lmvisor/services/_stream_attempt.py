"""One streamed attempt at a vendor, and the watch that ends a stream's waits at its deadline.

`open_stream_attempt` opens a stream and waits for its first item within the attempt's
timeout (the provider retries such attempts until one brings an item); `DeadlineWatch`
then ends each wait for a later item at the call's deadline, with one timer per stream.
Used by `LMProvider`'s streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, final

from lmvisor.programs.lm import LMRequest, LMStreamItem
from lmvisor.providers.client import VendorClient
from lmvisor.providers.errors import ProviderTimeout, ResponseFormatError
from lmvisor.runtime.errors import DeadlineExceeded

__all__ = ["END", "DeadlineWatch", "open_stream_attempt"]

END: Any = object()
"""What `anext(items, END)` returns after a stream's last item."""


async def open_stream_attempt(
    client: VendorClient,
    request: LMRequest,
    timeout: float,  # noqa: ASYNC109 - one attempt's bound, the transport's
    vendor: str,
) -> tuple[LMStreamItem, AsyncGenerator[LMStreamItem, None]]:
    """One stream attempt: open it and wait for its first item, `timeout` seconds at most.

    The transport's timeout bounds each wait for bytes; this one bounds the attempt, so a
    vendor that sends only comments (keep-alives) cannot hold it open for ever.
    """
    items = client.stream(request, timeout=timeout)
    bound = asyncio.timeout(timeout)
    try:
        async with bound:
            first = await anext(items, END)
    except BaseException as exc:
        await items.aclose()
        if isinstance(exc, TimeoutError) and bound.expired():
            detail = f"no streamed item within {timeout:g}s"
            raise ProviderTimeout(provider=vendor, model=request.model, detail=detail) from None
        raise
    if first is END:
        raise ResponseFormatError(
            provider=vendor, model=request.model, detail="stream ended before its first item"
        )
    return first, items


@final
class DeadlineWatch:
    """Ends a stream's waits for its next item at the call's deadline.

    The transport bounds each wait for bytes, not for items: a vendor that keeps the
    connection busy with comments and sends no text would hold the stream past the
    deadline. One timer serves the whole stream (a timeout per item would cost more
    than the rest of the provider's work on a delta); when it fires during a wait it
    cancels the waiting task, and the wait turns that cancellation into
    `DeadlineExceeded`.
    """

    __slots__ = ("_cancelled", "_handle", "_operation", "_waiting", "fired")

    def __init__(self, seconds: float, vendor: str) -> None:
        self.fired = False
        self._cancelled = False  # the timer cancelled the waiting task
        self._waiting: asyncio.Task[Any] | None = None
        self._operation = f"streaming from {vendor}"
        self._handle = asyncio.get_running_loop().call_later(max(seconds, 0.0), self._fire)

    def _fire(self) -> None:
        self.fired = True
        if self._waiting is not None:
            self._waiting.cancel()
            self._cancelled = True

    def close(self) -> None:
        """Stop the timer (the stream ended)."""
        self._handle.cancel()

    async def next(self, items: AsyncGenerator[LMStreamItem, None]) -> Any:
        """The stream's next item (`END` after the last).

        Raises:
            DeadlineExceeded: the deadline passed before it came.
        """
        if self.fired:
            raise DeadlineExceeded(operation=self._operation)
        task = asyncio.current_task()
        assert task is not None
        self._waiting = task
        try:
            item = await anext(items, END)
        except asyncio.CancelledError:
            self._ours(task)
            raise
        finally:
            self._waiting = None
        if self._cancelled:  # the item came as the timer fired: its cancel is still pending
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                self._ours(task)
                raise
        return item

    def _ours(self, task: asyncio.Task[Any]) -> None:
        """Raise `DeadlineExceeded` for the timer's own cancellation (none other pending)."""
        if self._cancelled:
            self._cancelled = False
            if task.uncancel() == 0:
                raise DeadlineExceeded(operation=self._operation) from None
