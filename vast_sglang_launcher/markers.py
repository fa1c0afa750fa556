"""Boot markers: empty-ish files under LAUNCHER_MARKER_DIR that other services and users'
scripts test for (``[[ -f /.provisioning ]]``).

``.provisioning`` records its owner: the pid on the first line and the process's start time
on the second, so that a marker left behind by a killed process (or by an earlier run of the
container, whose pids mean nothing now) is recognised as stale.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import pids
from .files import write_atomic

FIRST_BOOT_COMPLETE = ".first_boot_complete"
LAUNCH = ".launch"
PROVISIONING = ".provisioning"
PROVISIONING_COMPLETE = ".provisioning_complete"
PROVISIONING_FAILED = ".provisioning_failed"


def write(path: Path, text: str = "") -> None:
    """Create or replace a marker atomically (readers never see half a file)."""
    write_atomic(path, text)


def remove(path: Path) -> None:
    """Remove a marker; a missing one is fine."""
    path.unlink(missing_ok=True)


def stamp() -> str:
    """A marker body saying when it was written."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n"


@dataclass(frozen=True)
class Owner:
    """The process recorded in a pid marker; pid 0 when the marker names none."""

    pid: int
    started: float | None


def claim(path: Path, pid: int | None = None) -> Owner:
    """Write a pid marker naming `pid` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    owner = Owner(pid, pids.started_at(pid))
    started = "" if owner.started is None else repr(owner.started)
    write(path, f"{pid}\n{started}\n")
    return owner


def read_owner(path: Path) -> Owner | None:
    """The owner recorded in a pid marker; None when there is no marker."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").split()
    except FileNotFoundError:
        return None
    except OSError:
        return Owner(0, None)
    try:
        pid = int(lines[0]) if lines else 0
    except ValueError:
        pid = 0
    try:
        started = float(lines[1]) if len(lines) > 1 else None
    except ValueError:
        started = None
    return Owner(pid, started)


def is_alive(owner: Owner) -> bool:
    """Whether the recorded process still runs (the same process, not a reused pid)."""
    return pids.is_running(owner.pid, owner.started)


def provisioning_abandoned(marker_dir: Path) -> bool:
    """True when `.provisioning` names an owner that is no longer running (killed mid-run).

    A marker without a recorded owner (made by another tool) is never called abandoned.
    """
    owner = read_owner(marker_dir / PROVISIONING)
    return owner is not None and owner.pid > 0 and not is_alive(owner)
