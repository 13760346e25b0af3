"""Blocking work on a worker thread that the caller's cancellation cannot abandon.

`anyio.to_thread.run_sync` shields its wait only from anyio's own cancel scopes: a task
cancelled the asyncio way (`Task.cancel()`, as the runtime stops an actor's work) returns
from it at once while the thread runs on. For work on a SQLite connection that is a crash:
the caller's lock is released, and the next call uses or closes the connection while the
abandoned thread is still inside it (a segmentation fault in the sqlite3 module).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar, TypeVarTuple, Unpack

import anyio.to_thread
from anyio import CapacityLimiter

__all__ = ["run_to_completion"]

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")


async def run_to_completion(
    fn: Callable[[Unpack[_Ts]], _T], *args: *_Ts, limiter: CapacityLimiter | None = None
) -> _T:
    """`fn(*args)` on anyio's worker threads; its result, or what it raised.

    A cancellation of the caller takes effect once `fn` has returned: the caller then
    gets `CancelledError` (what `fn` did stands). `fn` must be bounded (a SQLite call
    waits at most its busy timeout).
    """
    work = asyncio.ensure_future(anyio.to_thread.run_sync(fn, *args, limiter=limiter))
    cancelled = False
    while not work.done():
        try:
            await asyncio.wait((work,))  # waits without cancelling `work` when it is cancelled
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return work.result()
