"""A closed-loop HTTP load generator for bench/server.py, run in its own process.

`C` clients each send `POST URL` with `{"inputs": {"question": <unique>}}` one after
another until `N` requests are done (every question differs, so no cache answers), and
the run prints one JSON line: requests/s, p50/p99 latency in ms, errors. Runs on uvloop
when installed, with one aiohttp connection per client.

Run: python bench/_load.py URL --clients 200 --requests 3000 [--warmup 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

import aiohttp


async def _client(
    session: aiohttp.ClientSession, url: str, tag: str, queue: list[int], latencies: list[float]
) -> int:
    errors = 0
    while queue:
        index = queue.pop()
        body = {"inputs": {"question": f"bench question {tag}-{index}?"}}
        started = time.perf_counter()
        try:
            async with session.post(url, json=body) as answer:
                await answer.read()
                ok = answer.status == 200
        except aiohttp.ClientError:
            ok = False
        latencies.append(time.perf_counter() - started)
        errors += not ok
    return errors


async def _round(url: str, clients: int, requests: int, tag: str) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
    timeout = aiohttp.ClientTimeout(total=120)
    queue = list(range(requests))
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        errors = await asyncio.gather(
            *(_client(session, url, tag, queue, latencies) for _ in range(clients))
        )
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": requests,
        "clients": clients,
        "seconds": round(elapsed, 3),
        "rps": round(requests / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2),
        "errors": sum(errors),
    }


async def _main(args: argparse.Namespace) -> None:
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    if args.warmup:
        await _round(args.url, args.clients, args.warmup, tag + "-warm")
    print(json.dumps(await _round(args.url, args.clients, args.requests, tag)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=0)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_main(args))
    else:
        uvloop.run(_main(args))


if __name__ == "__main__":
    main()
