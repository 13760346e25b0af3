"""A tour of the lmvisor runtime: a one_for_one tree over a counter and a worker that crashes once.

Run with ``.venv/bin/python examples/runtime_tour.py``. It prints the
supervision tree, crashes the worker, shows that only the worker was
restarted (with a new incarnation reached through its registered name), and
prints the tree again. The crash's report goes to stderr as a JSON line.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from lmvisor.runtime import (
    Actor,
    Call,
    Cast,
    ChildSpec,
    Runtime,
    Supervisor,
    handler,
    which_children,
)


@dataclass(frozen=True, slots=True)
class Increment(Cast):
    by: int = 1


@dataclass(frozen=True, slots=True)
class Value(Call[int]):
    pass


@dataclass(frozen=True, slots=True)
class Work(Call[str]):
    job: str


class CounterActor(Actor):
    """Counts increments."""

    def __init__(self) -> None:
        self.count = 0

    @handler
    def increment(self, msg: Increment) -> None:
        self.count += msg.by

    @handler
    def value(self, msg: Value) -> int:
        return self.count


class FlakyWorker(Actor):
    """Does jobs; the job "explode" crashes it (once: the tour sends it once)."""

    @handler
    async def work(self, msg: Work) -> str:
        if msg.job == "explode":
            raise RuntimeError("worker exploded")
        return f"done: {msg.job}"


def app_tree() -> Supervisor:
    """The app's supervisor; a child's `start` builds a new actor each call (restarts too)."""
    return Supervisor(
        [
            ChildSpec("counter", CounterActor, name="counter"),
            ChildSpec("worker", FlakyWorker, name="worker"),
        ],
        strategy="one_for_one",
    )


async def main() -> None:
    async with Runtime.open(namespace="tour") as runtime:
        app = await runtime.start_child(ChildSpec("app", app_tree, type="supervisor"))
        counter, worker = runtime.via("counter"), runtime.via("worker")
        for _ in range(3):
            await counter.cast(Increment())
        print("counter =", await counter.call(Value()))
        print(await worker.call(Work("hello")))
        print("\n--- tree before the crash ---")
        print(runtime.tree().render())

        before = worker.resolve()
        try:
            await worker.call(Work("explode"))
        except Exception as exc:
            print(f"\ncaller saw: {type(exc).__name__}: {exc}")
        await before.wait_exit()
        # the exit notice is queued at the supervisor before this request, so the
        # reply comes after the restart
        await which_children(app)

        print(await worker.call(Work("again")), f"(new incarnation: {worker.resolve() != before})")
        print("counter kept its state:", await counter.call(Value()))
        print("\n--- tree after the crash ---")
        print(runtime.tree().render())


if __name__ == "__main__":
    asyncio.run(main())
