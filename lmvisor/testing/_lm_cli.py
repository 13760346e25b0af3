"""The loopback LM's command line (`python -m lmvisor.testing.lm_server`): parse the
options, serve until SIGINT or SIGTERM, print the URL first."""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lmvisor.testing._lm_faults import fault_rule_from_dict
from lmvisor.testing._lm_lean import LeanServer

if TYPE_CHECKING:  # passed in by `lm_server.main`: under `-m`, that module is `__main__`
    from lmvisor.testing.lm_server import LMServer

__all__ = ["run"]

_WANTED_FILES = 16384


def run(argv: Sequence[str] | None, server: type[LMServer]) -> int:
    """`lm_server.main`: serve until signalled; 2 (the reason on stderr) on bad options.
    `server`: the LMServer class (from the running module, not imported a second time)."""
    args = _parse_args(argv)
    _raise_open_file_limit(_WANTED_FILES)
    try:
        asyncio.run(_serve_until_signalled(args, server))
    except (ValueError, TypeError) as exc:
        print(f"lm_server: {exc}", file=sys.stderr)
        return 2
    return 0


def _raise_open_file_limit(wanted: int) -> None:
    """Lift the soft RLIMIT_NOFILE towards `wanted` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lmvisor.testing.lm_server",
        description="Loopback OpenAI + Anthropic server; prints its URL on the first line.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--jitter", type=float, default=0.0, help="extra uniform seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="the only key accepted (default: any)")
    parser.add_argument(
        "--fault", action="append", default=[], help='a FaultRule as JSON, e.g. {"kind": "drop"}'
    )
    parser.add_argument(
        "--lean", action="store_true", help="OpenAI chat completions only, at the least CPU"
    )
    return parser.parse_args(argv)


async def _serve_until_signalled(args: argparse.Namespace, server_class: type[LMServer]) -> None:
    if args.lean:
        await _serve_lean(args)
        return
    faults = [fault_rule_from_dict(json.loads(text)) for text in args.fault]
    server = server_class(
        host=args.host,
        port=args.port,
        latency=args.latency,
        jitter=args.jitter,
        seed=args.seed,
        api_key=args.api_key,
        faults=faults,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        print(server.url, flush=True)
        await stop.wait()


async def _serve_lean(args: argparse.Namespace) -> None:
    if args.fault or args.api_key:
        raise ValueError("--lean serves no faults and checks no key")
    lean = LeanServer(host=args.host, port=args.port, latency=args.latency)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await lean.start()
    try:
        print(lean.url, flush=True)
        await stop.wait()
    finally:
        await lean.stop()
