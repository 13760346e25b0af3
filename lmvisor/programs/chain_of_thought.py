"""`ChainOfThought`: Predict with a `reasoning` output produced before the others."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lmvisor.programs.callbacks import Callback
from lmvisor.programs.example import Prediction
from lmvisor.programs.fields import OutputField
from lmvisor.programs.module import Module
from lmvisor.programs.predict import Predict
from lmvisor.programs.signature import Signature, ensure_signature

__all__ = ["ChainOfThought"]


class ChainOfThought(Module):
    """Ask the LM to reason step by step (a `reasoning` field) before answering.

    Args:
        signature: the task; a `reasoning: str` output is prepended to its outputs.
        rationale_field: the name of the reasoning field ("reasoning").
        rationale_desc: its description (DSPy's "${reasoning}" placeholder by default).
        callbacks: hooks for this module's calls.
        **config: generation options for the inner Predict.
    """

    def __init__(
        self,
        signature: str | type[Signature],
        *,
        rationale_field: str = "reasoning",
        rationale_desc: str | None = None,
        callbacks: Sequence[Callback] = (),
        **config: Any,
    ) -> None:
        super().__init__(callbacks=callbacks)
        base = ensure_signature(signature)
        extended = base.prepend(rationale_field, OutputField(desc=rationale_desc), str)
        self.predict = Predict(extended, **config)

    async def forward(self, **inputs: Any) -> Prediction:
        """Run the inner Predict; the prediction carries `reasoning` and the outputs."""
        result: Prediction = await self.predict(**inputs)
        return result
