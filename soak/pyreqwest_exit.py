"""Soak: does a process that used the pyreqwest transport exit cleanly?

pyreqwest 0.15.1 can abort the interpreter at exit ("PyGILState_Release ... finalizing",
SIGABRT) when its I/O thread is still inside the GIL as Python finalizes. The transport
registers an exit handler that releases the GIL briefly first. This runs `--runs` child
processes that each make one request over TLS to a loopback server whose CA they do not
trust (the case that aborted most often), close the transport and exit, once with the exit
handler and once with it unregistered, the two alternating, and counts the children that did
not exit with 0.

Prints one JSON line; exits 1 if any child aborted with the handler in place.

Run: `.venv/bin/python soak/pyreqwest_exit.py [--runs 100]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent  # the children import tests.providers

_CHILD = """
import asyncio, atexit, sys
from lmvisor.providers import pyreqwest_transport
from lmvisor.providers.errors import ProviderConnectionError
from tests.providers._tls_server import start_tls_server

async def main():
    runner, url = await start_tls_server()
    transport = pyreqwest_transport.PyreqwestTransport()
    try:
        await transport.post_json(
            url, headers={}, body=b"{}", timeout=5.0, provider="p", model="m",
        )
    except ProviderConnectionError:
        pass
    await transport.aclose()
    await runner.cleanup()

asyncio.run(main())
if sys.argv[1] == "without":
    atexit.unregister(pyreqwest_transport._let_pyreqwest_settle)
"""


def _child(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, mode],
        cwd=_ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="children per mode")
    args = parser.parse_args()
    failed: dict[str, dict[int, int]] = {"with": {}, "without": {}}
    for _ in range(args.runs):
        for mode, codes in failed.items():
            code = _child(mode)
            if code != 0:
                codes[code] = codes.get(code, 0) + 1
    print(
        json.dumps(
            {
                "runs_per_mode": args.runs,
                "failed_with_exit_wait": sum(failed["with"].values()),
                "failed_without_exit_wait": sum(failed["without"].values()),
                "exit_codes_with": failed["with"],
                "exit_codes_without": failed["without"],
                "ok": not failed["with"],
            }
        ),
        flush=True,
    )
    return 0 if not failed["with"] else 1


if __name__ == "__main__":
    sys.exit(main())
