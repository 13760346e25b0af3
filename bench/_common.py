"""Shared bench plumbing: one JSON line per figure, and DSPy 3.4.1 measured beside lmvisor.

DSPy is never a dependency of lmvisor. `make bench` creates `.venv-dspy` with `dspy==3.4.1`;
a bench asks `run_dspy("script.py", ...)` to run `bench/dspy_side/script.py` under that
interpreter (against the same loopback server, in the same run) and gets back the last JSON
line the script printed. When the environment is missing or the script fails, it returns None
and says why on stderr, and the figure is printed with `baseline_source` saying so.

`LMVISOR_DSPY_PYTHON` names another interpreter that has `dspy` installed.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "dspy_python", "emit", "run_dspy", "shipped_transport"]

ROOT = Path(__file__).resolve().parent.parent
_DSPY_SIDE = ROOT / "bench" / "dspy_side"


def dspy_python() -> str | None:
    """The interpreter that has dspy 3.4.1, or None when there is none."""
    explicit = os.environ.get("LMVISOR_DSPY_PYTHON")
    if explicit:
        return explicit
    candidate = ROOT / ".venv-dspy" / "bin" / "python"
    return str(candidate) if candidate.exists() else None


def run_dspy(script: str, *args: str, timeout: float = 900.0) -> dict[str, Any] | None:
    """Run `bench/dspy_side/<script>` under DSPy's interpreter; its last JSON line, or None."""
    python = dspy_python()
    if python is None:
        _note(f"no DSPy environment (run `make bench-env`): {script} not measured")
        return None
    try:
        done = subprocess.run(
            [python, str(_DSPY_SIDE / script), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _note(f"dspy side {script} failed: {exc!r}")
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        _note(f"dspy side {script} exited {done.returncode}: {done.stderr.strip()[-800:]}")
        return None
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def emit(
    figure: str,
    value: float,
    unit: str,
    *,
    target: float | None,
    baseline: float | None,
    baseline_source: str | None,
    higher_is_better: bool = False,
    digits: int = 3,
    **extra: Any,
) -> dict[str, Any]:
    """Print one figure as a JSON line (and return it).

    `ratio` is value / baseline; `met` compares value with target in the figure's direction
    (None when there is no target).
    """
    ratio = None
    if baseline is not None and baseline != 0 and math.isfinite(baseline):
        ratio = round(value / baseline, 3)
    met = None
    if target is not None:
        met = value >= target if higher_is_better else value <= target
    line: dict[str, Any] = {
        "figure": figure,
        "value": round(value, digits),
        "unit": unit,
        "target": target,
        "baseline": None if baseline is None else round(baseline, digits),
        "baseline_source": baseline_source,
        "ratio": ratio,
        "met": met,
        **extra,
    }
    print(json.dumps(line), flush=True)
    return line


def _note(text: str) -> None:
    print(json.dumps({"note": text}), file=sys.stderr, flush=True)


def shipped_transport() -> str:
    """The transport a provider built from the shipped config uses ("auto" resolved)."""
    from lmvisor.config.schema import ProviderConfig
    from lmvisor.providers import default_transport_kind

    configured = ProviderConfig().transport
    return default_transport_kind() if configured == "auto" else configured
