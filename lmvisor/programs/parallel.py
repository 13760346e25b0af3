"""`Parallel`: run many (module, example) pairs with bounded concurrency, natively async."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, final

from lmvisor.programs.example import Example
from lmvisor.programs.module import Module

__all__ = ["Parallel", "ParallelResult"]


@final
class ParallelResult:
    """Results in input order (None where a pair failed), with the failures."""

    __slots__ = ("exceptions", "failed", "results")

    def __init__(
        self, results: list[Any], failed: list[Any], exceptions: list[BaseException]
    ) -> None:
        self.results = results
        self.failed = failed
        self.exceptions = exceptions

    def __repr__(self) -> str:
        return f"ParallelResult(results={len(self.results)}, failed={len(self.failed)})"


@final
class Parallel:
    """Run pairs at most `concurrency` at once.

    Args:
        concurrency: pairs running at once.
        max_errors: failures tolerated; one more cancels the rest and raises it
            (None: no limit, failures leave None in the results).

    Raises:
        ValueError: concurrency < 1 or max_errors < 0.
    """

    def __init__(self, *, concurrency: int = 8, max_errors: int | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if max_errors is not None and max_errors < 0:
            raise ValueError("max_errors must be >= 0")
        self.concurrency = concurrency
        self.max_errors = max_errors

    def __repr__(self) -> str:
        return f"Parallel(concurrency={self.concurrency}, max_errors={self.max_errors})"

    async def __call__(
        self, pairs: Sequence[tuple[Module, Example | Mapping[str, Any]]]
    ) -> ParallelResult:
        """Run every pair; results keep the order of `pairs`.

        Raises:
            Exception: the failure that exceeded `max_errors` (the other pairs are cancelled).
        """
        import asyncio  # lazily: keeps `import lmvisor.programs` cheap

        gate = asyncio.Semaphore(self.concurrency)
        results: list[Any] = [None] * len(pairs)
        failed: list[Any] = []
        errors: list[BaseException] = []

        async def run(index: int, module: Module, example: Example | Mapping[str, Any]) -> None:
            async with gate:
                try:
                    results[index] = await module(**_inputs(example))
                except Exception as exc:
                    failed.append(example)
                    errors.append(exc)
                    if self.max_errors is not None and len(errors) > self.max_errors:
                        raise

        tasks = [asyncio.ensure_future(run(i, m, ex)) for i, (m, ex) in enumerate(pairs)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return ParallelResult(results, failed, errors)


def _inputs(example: Example | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(example, Example):
        source = example.inputs() if example.input_keys is not None else example
        return dict(source.items())
    return dict(example)
