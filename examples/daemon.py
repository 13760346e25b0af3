"""The main job (`make run`): lmvisor's daemon, serving a ChainOfThought program over HTTP.

It loads the configuration (defaults, ./lmvisor.toml, LMVISOR_* and the vendor
key variables), starts the daemon (`lmvisor.server.serve`: the application tree,
the HTTP API, drain on Ctrl-C), registers the sample program `qa`
(`ChainOfThought("question -> answer")`), and once it listens prints its URL and
a `curl` line that runs the program. It serves until Ctrl-C (SIGINT) or SIGTERM,
then drains, stores what is pending and exits 0.

With no vendor key it says so and answers from lmvisor's own loopback LM server
(`loopback_lm="if_no_key"`, an explicit opt-in a production daemon does not
make): nothing leaves this machine. Its files live under `.lmvisor/` (the
`data_dir`): the cache, the optimization jobs and, here, the events.

The same daemon from the command line:
    lmvisor serve --loopback-lm if_no_key --app examples.daemon:register
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Final

from lmvisor import LmvisorError
from lmvisor.config import load_config
from lmvisor.config.loading import replace_value
from lmvisor.config.schema import LmvisorConfig
from lmvisor.programs import ChainOfThought
from lmvisor.server import EXIT_FAILURE, EXIT_USAGE, ServerContext, StartupError, serve

PROGRAM_ID: Final = "qa"
QUESTION: Final = "What is the capital of France?"


async def register(context: ServerContext) -> None:
    """The `--app` hook: register the sample program, and say how to call it once listening."""
    await context.app.register(PROGRAM_ID, ChainOfThought("question -> answer"))
    notice = context.app.notice

    def announce(url: str) -> None:
        body = json.dumps({"inputs": {"question": QUESTION}})
        run_url = f"{url}/v1/programs/{PROGRAM_ID}/run"
        lines = [
            "",
            f"lmvisor daemon listening on {url}  (API docs: {url}/docs)",
            f"program {PROGRAM_ID!r}: ChainOfThought('question -> answer'),"
            f" on {context.app.default_model}",
            "",
            "run it:",
            f"  curl -s {run_url} -H 'content-type: application/json' -d {shlex.quote(body)}",
            f"  lmvisor run {PROGRAM_ID} --url {url} -i question={shlex.quote(QUESTION)}",
            "",
            "Ctrl-C drains in-flight requests and stops.",
        ]
        if notice:
            lines.insert(1, notice)
        print("\n".join(lines), flush=True)

    context.on_ready(announce)


def _config() -> LmvisorConfig:
    config = load_config()
    if config.data_dir is not None and config.events.sqlite_path is None:
        config = replace_value(config, "events.sqlite_path", config.data_dir / "events.sqlite3")
    if config.logging.mode == "auto" and sys.stderr.isatty():
        config = replace_value(config, "logging.mode", "console")
    return config


def main() -> int:
    try:
        return serve(
            _config(),
            register=register,
            register_name="examples.daemon:register",
            loopback_lm="if_no_key",
        )
    except (OSError, LmvisorError) as exc:  # a busy port, a data directory in use, ...
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, StartupError) else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
