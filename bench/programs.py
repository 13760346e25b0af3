"""Per-call overhead of Predict and ChainOfThought (format + parse, in-process LM), and the
import time of `lmvisor.programs`. Prints one JSON line per figure.

Run: .venv/bin/python bench/programs.py
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any, Literal

from _common import run_dspy

from lmvisor.programs.chain_of_thought import ChainOfThought
from lmvisor.programs.fields import InputField, OutputField
from lmvisor.programs.lm import LMCapabilities, LMRequest, LMResponse, Usage
from lmvisor.programs.predict import Predict
from lmvisor.programs.settings import context
from lmvisor.programs.signature import Signature

# DSPy 3.4.1 on this machine, as quoted by issue 4: used only when DSPy cannot be measured.
_DSPY_QUOTED = {"predict_overhead": 219.0, "cot_overhead": 274.0, "import_time": 0.37}
_TARGETS = {
    "predict_overhead": 50.0,
    "cot_overhead": 70.0,
    "import_time": 0.15,
    "import_time_programs": 0.15,
}
_CALLS = 3000


class QA(Signature):
    """Answer the question with a short factoid."""

    context: list[str] = InputField(desc="facts that may help")
    question: str = InputField()
    answer: str = OutputField(desc="often between 1 and 5 words")
    confidence: float = OutputField()
    kind: Literal["fact", "opinion"] = OutputField()


_PREDICT_REPLY = (
    "[[ ## answer ## ]]\nBerlin\n\n[[ ## confidence ## ]]\n0.9\n\n"
    "[[ ## kind ## ]]\nfact\n\n[[ ## completed ## ]]"
)
_COT_REPLY = "[[ ## reasoning ## ]]\nBerlin is the capital.\n\n" + _PREDICT_REPLY


class _FixedLM:
    """Returns one prepared response: the LM itself costs (almost) nothing."""

    def __init__(self, text: str) -> None:
        self._response = LMResponse(outputs=[text], usage=Usage(prompt_tokens=1))

    @property
    def model(self) -> str:
        return "bench/fixed"

    @property
    def capabilities(self) -> LMCapabilities:
        return LMCapabilities()

    async def complete(self, request: LMRequest) -> LMResponse:
        return self._response

    async def stream(self, request: LMRequest) -> Any:
        raise TypeError("not used")


async def _per_call_us(module: Any, lm: _FixedLM) -> float:
    inputs = {"context": ["Berlin is in Germany."], "question": "Capital of Germany?"}
    with context(lm=lm):
        for _ in range(200):
            await module(**inputs)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(_CALLS // 5):
                await module(**inputs)
            best = min(best, (time.perf_counter() - start) / (_CALLS // 5))
    return best * 1e6


def _import_time(statement: str) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        best = min(best, time.perf_counter() - start)
    return best


def _dspy_figures() -> dict[str, float] | None:
    return run_dspy("programs.py")


def _emit(figure: str, value: float, unit: str, baseline: float, source: str, **extra: Any) -> None:
    target = _TARGETS[figure]
    line: dict[str, Any] = {
        "figure": figure,
        "value": round(value, 3 if unit == "s" else 1),
        "unit": unit,
        "target": target,
        "baseline": round(baseline, 3 if unit == "s" else 1),
        "baseline_source": source,
        "ratio": round(value / baseline, 3),
        "met": value <= target,
        **extra,
    }
    print(json.dumps(line), flush=True)


def main() -> None:
    predict_us = asyncio.run(_per_call_us(Predict(QA), _FixedLM(_PREDICT_REPLY)))
    cot_us = asyncio.run(_per_call_us(ChainOfThought(QA), _FixedLM(_COT_REPLY)))
    top_s = _import_time("import lmvisor")
    # `import lmvisor` is lazy (names resolve on first use), so the programs layer's own
    # import, which a DSPy user pays before the first Predict, is reported beside it.
    programs_s = _import_time("import lmvisor.programs")
    dspy_figures = _dspy_figures()
    baseline = dspy_figures or _DSPY_QUOTED
    source = "measured: dspy 3.4.1, same run" if dspy_figures else "quoted: issue 4"
    _emit("predict_overhead", predict_us, "us", baseline["predict_overhead"], source)
    _emit("cot_overhead", cot_us, "us", baseline["cot_overhead"], source)
    _emit("import_time", top_s, "s", baseline["import_time"], source, statement="import lmvisor")
    _emit(
        "import_time_programs",
        programs_s,
        "s",
        baseline["import_time"],
        source,
        statement="import lmvisor.programs",
    )


if __name__ == "__main__":
    main()
