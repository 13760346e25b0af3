"""`MultiChainComparison`: show the LM M earlier reasoning attempts and ask for a
holistic, corrected answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lmvisor.programs.callbacks import Callback
from lmvisor.programs.example import Example, Prediction
from lmvisor.programs.fields import InputField, OutputField
from lmvisor.programs.module import Module
from lmvisor.programs.predict import Predict
from lmvisor.programs.signature import Signature, ensure_signature

__all__ = ["MultiChainComparison"]


class MultiChainComparison(Module):
    """Compare M attempts (each with a reasoning and an answer) and produce a final answer.

    Args:
        signature: the task; attempt inputs and a `rationale` output are added.
        M: the number of attempts `forward` takes.
        temperature: for the comparing call.

    Raises:
        ValueError: M < 1.
    """

    def __init__(
        self,
        signature: str | type[Signature],
        M: int = 3,
        temperature: float = 0.7,
        *,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        super().__init__(callbacks=callbacks)
        if M < 1:
            raise ValueError("M must be >= 1")
        base = ensure_signature(signature)
        self.M = M
        self.last_key = list(base.output_fields)[-1]
        for i in range(M):
            base = base.append(
                f"reasoning_attempt_{i + 1}",
                InputField(prefix=f"Student Attempt #{i + 1}:", desc="${reasoning attempt}"),
            )
        base = base.prepend(
            "rationale",
            OutputField(
                prefix="Accurate Reasoning: Thank you everyone. Let's now holistically",
                desc="${corrected reasoning}",
            ),
        )
        self.predict = Predict(base, temperature=temperature)

    async def forward(
        self, completions: Iterable[Mapping[str, Any] | Example] = (), **inputs: Any
    ) -> Prediction:
        """Compare `completions` (each with `reasoning`/`rationale` and the last output).

        Raises:
            ValueError: not exactly M completions, or one lacks a reasoning or answer.
        """
        # One past M is enough to refuse: an endless iterable is never drained.
        attempts = [self._attempt(c) for c in itertools.islice(completions, self.M + 1)]
        if len(attempts) > self.M:
            raise ValueError(f"expected {self.M} completions, got more")
        if len(attempts) < self.M:
            raise ValueError(f"expected {self.M} completions, got {len(attempts)}")
        slots = {f"reasoning_attempt_{i + 1}": a for i, a in enumerate(attempts)}
        result: Prediction = await self.predict(**slots, **inputs)
        return result

    def _attempt(self, completion: Mapping[str, Any] | Example) -> str:
        get = completion.get
        rationale = get("rationale") or get("reasoning")
        answer = get(self.last_key)
        if rationale is None or answer is None:
            raise ValueError(f"each completion needs a reasoning and {self.last_key!r}")
        first_line = str(rationale).strip().split("\n")[0].strip()
        answer_line = str(answer).strip().split("\n")[0].strip()
        return f"«I'm trying to {first_line} I'm not sure but my prediction is {answer_line}»"
