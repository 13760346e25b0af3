"""Fakes shared by the services tests."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from lmvisor.programs.lm import LMCapabilities, LMDelta, LMRequest, LMResponse, LMStreamItem


class EndlessStream:
    """A vendor client whose stream never ends and records when it is closed."""

    capabilities = LMCapabilities()

    def __init__(self) -> None:
        self.closed = 0

    async def complete(self, request: LMRequest) -> LMResponse:
        return LMResponse(outputs=["x"])

    async def stream(self, request: LMRequest) -> AsyncGenerator[LMStreamItem, None]:
        try:
            while True:
                yield LMDelta(text="x")
        finally:
            self.closed += 1

    async def aclose(self) -> None:
        pass
