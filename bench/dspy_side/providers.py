"""DSPy 3.4.1 side of bench/providers.py: Predict over HTTP against the same lean loopback server.

`python providers.py URL sequential` times sequential Predict calls (the server at 0 ms);
`python providers.py URL throughput` times 2,000 Predict calls run by `Predict.batch` with
100 threads, DSPy's in-flight cap (the server at 100 ms). Both go through
`dspy.LM("openai/llama3", api_base=URL/v1, cache=False, engine="lm15")`, DSPy's native
engine. Prints one JSON line. Runs under the DSPy bench environment, never under lmvisor's.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

# The model-metadata refresh would try the network; the bundled snapshot is what we want.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")

import dspy

_SEQ_WARMUP = 50
_SEQ_CALLS = 300
_SEQ_RUNS = 3
_TP_CALLS = 2000
_THREADS = 100


def _predict(url: str) -> dspy.Predict:
    lm = dspy.LM(
        "openai/llama3", api_base=url + "/v1", api_key="sk-bench", cache=False, engine="lm15"
    )
    dspy.configure(lm=lm)
    return dspy.Predict("question -> answer")


def sequential(url: str) -> dict[str, float]:
    predict = _predict(url)
    for i in range(_SEQ_WARMUP):
        predict(question=f"Warm-up question {i}?")
    runs = []
    for r in range(_SEQ_RUNS):
        start = time.perf_counter()
        for i in range(_SEQ_CALLS):
            predict(question=f"Question {r}-{i}?")
        runs.append((time.perf_counter() - start) / _SEQ_CALLS)
    return {"predict_call_us": statistics.median(runs) * 1e6}


def throughput(url: str) -> dict[str, float]:
    predict = _predict(url)
    examples = [
        dspy.Example(question=f"Question number {i}?").with_inputs("question")
        for i in range(_TP_CALLS)
    ]
    predict.batch(examples[:_THREADS], num_threads=_THREADS, disable_progress_bar=True)
    start = time.perf_counter()
    results = predict.batch(examples, num_threads=_THREADS, disable_progress_bar=True)
    seconds = time.perf_counter() - start
    answered = sum(1 for r in results if getattr(r, "answer", None))
    return {"throughput": _TP_CALLS / seconds, "seconds": seconds, "answered": answered}


def main() -> None:
    url, mode = sys.argv[1], sys.argv[2]
    figures = sequential(url) if mode == "sequential" else throughput(url)
    print(json.dumps({"dspy_version": dspy.__version__, "threads": _THREADS, **figures}))


if __name__ == "__main__":
    main()
