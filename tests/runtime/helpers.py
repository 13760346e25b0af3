"""Messages and actors shared by the runtime tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from lmvisor.runtime.actor import Actor, Deferred, ErrorReply, handler
from lmvisor.runtime.messages import Call, Cast, Down, Exit


@dataclass(frozen=True, slots=True)
class Get(Call[int]):
    pass


@dataclass(frozen=True, slots=True)
class Inc(Cast):
    n: int = 1


@dataclass(frozen=True, slots=True)
class Add(Call[int]):
    n: int


@dataclass(frozen=True, slots=True)
class Crash(Cast):
    message: str = "boom"


@dataclass(frozen=True, slots=True)
class CrashCall(Call[int]):
    message: str = "boom"


@dataclass(frozen=True, slots=True)
class StopMe(Cast):
    reason: object = "normal"


@dataclass(frozen=True, slots=True)
class Echo(Call[str]):
    text: str


@dataclass(frozen=True, slots=True)
class Slow(Call[str]):
    gate: asyncio.Event = field(compare=False)
    text: str = "slow"


@dataclass(frozen=True, slots=True)
class Unhandled(Cast):
    pass


@dataclass(frozen=True, slots=True)
class Refuse(Call[int]):
    pass


class Counter(Actor):
    """A counter; crashes on `Crash`, stops on `StopMe`."""

    def __init__(self, log: list[str] | None = None, label: str = "counter") -> None:
        self.n = 0
        self.log = log if log is not None else []
        self.label = label

    async def started(self) -> None:
        self.log.append(f"{self.label}:started")

    async def terminate(self, reason: object) -> None:
        self.log.append(f"{self.label}:terminate:{reason!r}")

    @handler
    def get(self, msg: Get) -> int:
        return self.n

    @handler
    def inc(self, msg: Inc) -> None:
        self.n += msg.n

    @handler
    async def add(self, msg: Add) -> int:
        self.n += msg.n
        return self.n

    @handler
    def crash(self, msg: Crash) -> None:
        raise RuntimeError(msg.message)

    @handler
    def crash_call(self, msg: CrashCall) -> int:
        raise RuntimeError(msg.message)

    @handler
    def stop_me(self, msg: StopMe) -> None:
        self.stop(msg.reason)

    @handler
    def refuse(self, msg: Refuse) -> ErrorReply:
        return ErrorReply(KeyError("refused"))


class Deferring(Actor):
    """Serves `Slow` through deferred tasks gated by an event."""

    max_in_flight = 2

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    @handler
    def slow(self, msg: Slow) -> Deferred[str]:
        return self.defer(self._work(msg))

    @handler
    def echo(self, msg: Echo) -> str:
        return msg.text

    async def _work(self, msg: Slow) -> str:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await msg.gate.wait()
            if msg.text == "fail":
                raise ValueError("deferred failure")
            return msg.text
        finally:
            self.running -= 1


class Watcher(Actor):
    """Records Down and Exit messages."""

    trap_exits = True

    def __init__(self) -> None:
        self.seen: list[object] = []

    @handler
    def down(self, msg: Down) -> None:
        self.seen.append(msg)

    @handler
    def exit(self, msg: Exit) -> None:
        self.seen.append(msg)

    @handler
    def get(self, msg: Get) -> int:
        return len(self.seen)


async def eventually(predicate: Callable[[], bool], rounds: int = 2000) -> None:
    """Yield to the loop until `predicate()` holds; fail after `rounds` yields (no time used)."""
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")
