"""Fakes shared by the services tests: vendor clients with scripted streams that record closing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from lmvisor.programs.lm import LMCapabilities, LMDelta, LMRequest, LMResponse, LMStreamItem


class EndlessStream:
    """A vendor client whose stream never ends; records stream and client closes."""

    capabilities = LMCapabilities()

    def __init__(self) -> None:
        self.closed = 0
        self.client_closed = 0

    async def complete(
        self,
        request: LMRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the protocol
    ) -> LMResponse:
        return LMResponse(outputs=["x"])

    async def stream(
        self,
        request: LMRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the protocol
    ) -> AsyncGenerator[LMStreamItem, None]:
        try:
            while True:
                yield LMDelta(text="x")
        finally:
            self.closed += 1

    async def aclose(self) -> None:
        self.client_closed += 1


class EmptyStream(EndlessStream):
    """A vendor client whose stream ends before yielding anything (a broken client)."""

    async def stream(
        self,
        request: LMRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the protocol
    ) -> AsyncGenerator[LMStreamItem, None]:
        return
        yield  # pragma: no cover - makes this an async generator


class SilentStream(EndlessStream):
    """A vendor client whose stream opens and then sends nothing, ever (a vendor busy
    with keep-alive comments looks the same from above the transport)."""

    async def stream(
        self,
        request: LMRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the protocol
    ) -> AsyncGenerator[LMStreamItem, None]:
        try:
            await asyncio.get_running_loop().create_future()
            yield LMDelta(text="never")  # pragma: no cover - the wait above never ends
        finally:
            self.closed += 1
