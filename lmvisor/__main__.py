"""`python -m lmvisor` and the `lmvisor` console script: the CLI, Ctrl-C while it loads included.

The CLI's modules take a moment to import (typer, rich, pydantic); a Ctrl-C in
that moment ends the process as one later would (`interrupted`, exit 130),
not with a traceback from inside an import.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Run the `lmvisor` command (`lmvisor.server.cli.main`) with `sys.argv`.

    Raises:
        SystemExit: always, with the command's exit code (130 after Ctrl-C).
    """
    try:
        from lmvisor.server.cli import main as run_cli

        run_cli()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
