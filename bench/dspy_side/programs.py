"""DSPy 3.4.1 side of bench/programs.py: Predict and ChainOfThought overhead with an in-process
LM that returns one prepared completion, and `import dspy` time. Prints one JSON line.

Runs under the DSPy bench environment (`.venv-dspy`), never under lmvisor's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any, Literal

import dspy

_PREDICT_REPLY = (
    "[[ ## answer ## ]]\nBerlin\n\n[[ ## confidence ## ]]\n0.9\n\n"
    "[[ ## kind ## ]]\nfact\n\n[[ ## completed ## ]]"
)
_COT_REPLY = "[[ ## reasoning ## ]]\nBerlin is the capital.\n\n" + _PREDICT_REPLY
_CALLS = 1000


class QA(dspy.Signature):
    """Answer the question with a short factoid."""

    context: list[str] = dspy.InputField(desc="facts that may help")
    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="often between 1 and 5 words")
    confidence: float = dspy.OutputField()
    kind: Literal["fact", "opinion"] = dspy.OutputField()


class FixedLM(dspy.BaseLM):
    """Returns one prepared completion, so the LM itself costs (almost) nothing."""

    def __init__(self, text: str) -> None:
        super().__init__(model="bench/fixed")
        self.text = text

    def __call__(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> list[str]:
        return [self.text]


def per_call_us(module: Any, text: str) -> float:
    inputs = {"context": ["Berlin is in Germany."], "question": "Capital of Germany?"}
    best = float("inf")
    with dspy.context(lm=FixedLM(text)):
        for _ in range(100):
            module(**inputs)
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(_CALLS):
                module(**inputs)
            best = min(best, (time.perf_counter() - start) / _CALLS)
    return best * 1e6


def import_time() -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import dspy"], check=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    print(
        json.dumps(
            {
                "dspy_version": dspy.__version__,
                "predict_overhead": per_call_us(dspy.Predict(QA), _PREDICT_REPLY),
                "cot_overhead": per_call_us(dspy.ChainOfThought(QA), _COT_REPLY),
                "import_time": import_time(),
            }
        )
    )


if __name__ == "__main__":
    main()
