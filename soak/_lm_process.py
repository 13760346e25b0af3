"""The loopback LM server in a subprocess, for the soaks: `lm_server(latency, jitter)`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

__all__ = ["lm_server"]


@contextmanager
def lm_server(
    latency: float, jitter: float, *, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Start `lmvisor.testing.lm_server` on a free loopback port; yields its URL, stops it after.

    Raises:
        RuntimeError: it did not print its URL first.
    """
    command = [sys.executable, "-m", "lmvisor.testing.lm_server", "--port", "0"]
    command += ["--latency", str(latency), "--jitter", str(jitter)]
    proc = subprocess.Popen(
        command, env=dict(env if env is not None else os.environ), stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"lm_server did not start (first line {url!r})")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
