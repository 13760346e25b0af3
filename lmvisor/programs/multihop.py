"""`MultiHop`: decompose a question, answer the sub-questions concurrently with
ChainOfThought, then synthesize the final outputs from those answers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from lmvisor.programs.callbacks import Callback
from lmvisor.programs.chain_of_thought import ChainOfThought
from lmvisor.programs.example import Prediction
from lmvisor.programs.fields import Field, InputField, OutputField
from lmvisor.programs.module import Module, run_bounded
from lmvisor.programs.predict import Predict
from lmvisor.programs.signature import Signature, ensure_signature, make_signature

__all__ = ["MultiHop"]


class MultiHop(Module):
    """Answer a question in hops: decompose, answer each part, synthesize.

    Args:
        signature: the task (default "question -> answer").
        max_subquestions: sub-questions kept from the decomposition.
        concurrency: sub-questions answered at once (they are independent).
        callbacks: hooks for this module's calls.

    Raises:
        ValueError: max_subquestions or concurrency < 1.
    """

    def __init__(
        self,
        signature: str | type[Signature] = "question -> answer",
        *,
        max_subquestions: int = 3,
        concurrency: int = 4,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        super().__init__(callbacks=callbacks)
        if max_subquestions < 1 or concurrency < 1:
            raise ValueError("max_subquestions and concurrency must be >= 1")
        self.signature = ensure_signature(signature)
        self.max_subquestions = max_subquestions
        self.concurrency = concurrency
        inputs = {n: _spec(f) for n, f in self.signature.input_fields.items()}
        self.decompose = Predict(
            make_signature(
                {**inputs, "sub_questions": (list[str], OutputField())},
                f"Break the task into at most {max_subquestions} independent sub-questions "
                "whose answers together settle it.",
            )
        )
        self.answer = ChainOfThought("question -> answer")
        outputs = {n: _spec(f) for n, f in self.signature.output_fields.items()}
        self.synthesize = ChainOfThought(
            make_signature(
                {
                    **inputs,
                    "sub_questions": (list[str], InputField()),
                    "sub_answers": (list[str], InputField()),
                    **outputs,
                },
                self.signature.instructions,
            )
        )

    async def forward(self, **inputs: Any) -> Prediction:
        """Decompose, answer sub-questions concurrently, synthesize.

        The prediction carries the signature's outputs plus `sub_questions` and
        `sub_answers`.
        """
        plan = await self.decompose(**inputs)
        questions = [str(q) for q in plan.sub_questions][: self.max_subquestions]
        answers = await run_bounded(
            [functools.partial(self.answer, question=q) for q in questions],
            concurrency=self.concurrency,
        )
        sub_answers = [str(a.answer) for a in answers]
        final = await self.synthesize(**inputs, sub_questions=questions, sub_answers=sub_answers)
        values = {k: v for k, v in final.items() if k in self.signature.output_fields}
        return Prediction(values, sub_questions=questions, sub_answers=sub_answers)


def _spec(field: Field) -> tuple[Any, Any]:
    maker = InputField if field.kind == "input" else OutputField
    return (field.annotation, maker(desc=field.desc, prefix=field.prefix))
