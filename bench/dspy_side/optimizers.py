"""DSPy 3.4.1 side of bench/optimizers.py: BootstrapFewShot(4), COPRO(3, 2) and MIPROv2 light
against the loopback server given as argv[1], DSPy's cache off, 8 threads. Prints one JSON line
with each run's wall time and the requests the server saw.

Runs under the DSPy bench environment (`.venv-dspy`, with optuna), never under lmvisor's.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import urllib.request
from typing import Any

import dspy
from dspy.teleprompt import COPRO, BootstrapFewShot, MIPROv2

URL = sys.argv[1]


def _requests() -> int:
    with urllib.request.urlopen(URL + "/stats") as answer:
        return int(json.loads(answer.read())["requests"])


def _reset() -> None:
    request = urllib.request.Request(URL + "/_control/reset-stats", method="POST")
    urllib.request.urlopen(request).read()


def passes(example: Any, prediction: Any, trace: Any = None) -> bool:
    return True


def measure(name: str, work: Any) -> dict[str, float]:
    _reset()
    start = time.perf_counter()
    work()
    return {f"{name}_wall": time.perf_counter() - start, f"{name}_requests": _requests()}


def main() -> None:
    logging.disable(logging.WARNING)
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM("openai/gpt-4o-mini", api_base=URL + "/v1", api_key="sk-bench", num_retries=0)
    dspy.configure(lm=lm)
    train = [
        dspy.Example(question=f"What is {i} plus {i}?", answer=str(2 * i)).with_inputs("question")
        for i in range(50)
    ]
    student = dspy.Predict("question -> answer")
    figures: dict[str, Any] = {"dspy_version": dspy.__version__}
    figures |= measure(
        "bootstrap",
        lambda: BootstrapFewShot(metric=passes, max_bootstrapped_demos=4).compile(
            student, trainset=train
        ),
    )
    figures |= measure(
        "copro",
        lambda: COPRO(metric=passes, breadth=3, depth=2).compile(
            student, trainset=train[:20], eval_kwargs={"num_threads": 8, "display_progress": False}
        ),
    )
    try:
        figures |= measure(
            "mipro_light",
            lambda: MIPROv2(metric=passes, auto="light", num_threads=8).compile(
                student, trainset=train
            ),
        )
    except ImportError as exc:  # optuna missing from this environment
        figures["mipro_light_error"] = str(exc)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
