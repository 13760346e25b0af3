"""`gather_steps`: run an optimizer's steps at once, and never leave one running after a failure.

`asyncio.gather` raises the first failure and leaves the other awaitables running: a job
whose worker crashed on a refused checkpoint write (to be restarted from its journal) kept
its orphaned steps calling the LM and writing the journal while the new worker ran them
again. Here a failure waits for the other steps to end on their own first: their LM calls
are paid for, so what they compute is journaled and reported, and the restarted worker
replays it instead of paying again. The failure itself is raised, not an exception group,
so callers (the optimization worker matching `StoreBusy`) see the error the step raised.
The caller's cancellation cancels every step and waits for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["gather_steps"]

_T = TypeVar("_T")


async def gather_steps(*steps: Awaitable[_T]) -> list[_T]:
    """The results of `steps`, run concurrently, in their order.

    Raises:
        Exception: the first failure among the steps, once every other step has ended.
        asyncio.CancelledError: the caller was cancelled (every step cancelled and ended).
    """
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    except Exception:
        # If the caller is cancelled while it waits, gather cancels the steps it waits for.
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
