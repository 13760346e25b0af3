"""What this lmvisor is: its installed version and the Python running it."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata
from typing import final

__all__ = ["VersionInfo", "version_info"]


@final
@dataclass(frozen=True, slots=True)
class VersionInfo:
    """The lmvisor distribution's version and the interpreter's."""

    lmvisor: str
    python: str


def version_info() -> VersionInfo:
    """The installed lmvisor version ("unknown" when run from a bare source tree)."""
    try:
        version = metadata.version("lmvisor")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return VersionInfo(lmvisor=version, python=platform.python_version())
