"""DSPy 3.4.1 side of bench/services.py: a Predict answered from DSPy's cache (a memory hit).

Usage: python services.py BASE_URL. The first call reaches the loopback server at BASE_URL
(OpenAI wire format) and fills the cache; the timed calls are all cache hits. Prints one
JSON line. Runs under the DSPy bench environment (`.venv-dspy`), never under lmvisor's.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

_CALLS = 2000


def main() -> None:
    os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="dspy-cache-"))
    import dspy

    lm = dspy.LM("openai/gpt-4o-mini", api_base=sys.argv[1] + "/v1", api_key="bench")
    program = dspy.Predict("question -> answer")
    with dspy.context(lm=lm):
        program(question="What is the capital of France?")
        for _ in range(200):
            program(question="What is the capital of France?")
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(_CALLS // 5):
                program(question="What is the capital of France?")
            best = min(best, (time.perf_counter() - start) / (_CALLS // 5))
    print(json.dumps({"dspy_version": dspy.__version__, "cache_hit_predict": best * 1e6}))


if __name__ == "__main__":
    main()
