"""`python -m lmvisor.server`: the `lmvisor` command without the console script."""

from __future__ import annotations

from lmvisor.__main__ import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
