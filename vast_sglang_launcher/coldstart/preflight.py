"""The download's check made from a repo's file list, before anything is downloaded: the
files still missing must fit in the free space of the cache's file system.

`disk_problem` is pure; `free_bytes` reads the file system. (The plan's own checks, GPU
memory and shared memory, are `plan.fit`.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..units import fmt_bytes


def free_bytes(path: Path) -> int | None:
    """Free bytes of the file system that `path` (or its nearest existing parent) is on."""
    for p in (path, *path.parents):
        if p.exists():
            try:
                return shutil.disk_usage(p).free
            except OSError:
                return None
    return None


def disk_problem(repo: str, needed: int, total: int, free: int | None, cache: Path) -> str | None:
    """One line when the missing bytes do not fit, else None."""
    if free is None or needed <= free:
        return None
    return (
        f"not enough disk for {repo}: {fmt_bytes(needed)} still to download "
        f"(of {fmt_bytes(total)}) into {cache}, but only {fmt_bytes(free)} free: "
        "free some space or give the instance a larger disk"
    )
