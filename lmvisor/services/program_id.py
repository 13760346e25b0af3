"""The shape of a program id: what the ModuleManager registers programs under, the daemon
routes by (`/v1/programs/{id}`) and the CLI checks before it loads anything.

A leaf (nothing but the pattern), so the CLI can check an argument without importing
the services it names.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PROGRAM_ID_PATTERN"]

PROGRAM_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9_\-.]{0,127}$"
"""1 to 128 characters: lowercase letters, digits and `_-.`, starting with a letter or digit."""
