"""DSPy 3.4.1 side of bench/server.py: a DSPy Predict program served over HTTP, under load.

What a DSPy user deploys without lmvisor: an aiohttp app (aiohttp ships with DSPy's
dependencies) whose `POST /run` awaits `Predict.acall(**inputs)`, DSPy's async path,
through its default LM client (LiteLLM) to the same loopback LM server, with DSPy's
defaults (its cache on). The load generator (bench/_load.py) runs in its own process,
under the interpreter given, exactly as against lmvisor's daemon. Prints its JSON line.

Runs under the DSPy bench environment (`.venv-dspy`), never under lmvisor's.

Run: python bench/dspy_side/server.py --lm-url URL --load-python PY --load-script PATH
     [--clients 200 --requests 3000 --warmup 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys

import dspy
from aiohttp import web


def _app(program: dspy.Predict) -> web.Application:
    async def run(request: web.Request) -> web.Response:
        body = await request.json()
        prediction = await program.acall(**body["inputs"])
        return web.json_response({"outputs": dict(prediction.items())})

    app = web.Application()
    app.router.add_post("/run", run)
    return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _main(args: argparse.Namespace) -> None:
    lm = dspy.LM("openai/gpt-4o-mini", api_base=args.lm_url + "/v1", api_key="sk-bench")
    dspy.configure(lm=lm)
    runner = web.AppRunner(_app(dspy.Predict("question -> answer")), access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
    load = await asyncio.create_subprocess_exec(
        args.load_python,
        args.load_script,
        f"http://127.0.0.1:{port}/run",
        "--clients",
        str(args.clients),
        "--requests",
        str(args.requests),
        "--warmup",
        str(args.warmup),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await load.communicate()
    await runner.cleanup()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if load.returncode != 0 or not lines:
        sys.exit(f"load generator exited {load.returncode}")
    print(json.dumps({**json.loads(lines[-1]), "dspy": dspy.__version__}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm-url", required=True)
    parser.add_argument("--load-python", required=True)
    parser.add_argument("--load-script", required=True)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
