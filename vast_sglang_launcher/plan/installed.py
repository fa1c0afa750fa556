"""The version of the sglang that SGLANG_COMMAND runs, from its distribution's metadata.

Importing sglang takes seconds (it imports torch), so only the metadata is read: the
``sglang-*.dist-info`` of the Python that runs SGLANG_COMMAND (its install prefix is found
from the command's path: ``<prefix>/bin/sglang`` or ``<prefix>/bin/python3``), then that of
the launcher's own Python. In the image the launcher has a venv of its own, so the first
place is the one that answers.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Installed:
    version: str
    where: str
    """The directory holding the metadata, or "the launcher's Python"."""


def _site_dirs(command: Sequence[str], path: str) -> list[Path]:
    """site-/dist-packages directories of the install prefix of the command's executable."""
    found = shutil.which(command[0], path=path) if command else None
    if found is None:
        return []
    prefix = Path(found).parent.parent  # not resolved: a venv's python links elsewhere
    dirs: list[Path] = []
    for lib in (prefix / "lib", prefix / "local" / "lib"):
        for kind in ("site-packages", "dist-packages"):
            dirs += sorted(lib.glob(f"python3*/{kind}"), reverse=True)
    return dirs


def installed_sglang(command: Sequence[str], path: str) -> Installed | None:
    """The sglang SGLANG_COMMAND (its words) would run, or None when no metadata names one."""
    for site in _site_dirs(command, path):
        for dist in importlib.metadata.distributions(name="sglang", path=[str(site)]):
            return Installed(dist.version, str(site))
    try:
        return Installed(importlib.metadata.version("sglang"), "the launcher's Python")
    except importlib.metadata.PackageNotFoundError:
        return None
