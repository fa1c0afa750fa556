"""Whether a pid still names the process that started at a recorded time (a pid is reused
once its process is gone): the one check behind the pid markers, server.json and
status.json's launcher.

Standard library only (the `status` command uses it every 30 s): a process's start time is
read from /proc as psutil computes it (psutil 7.2.2 ``_pslinux.py``, ``Process.create_time``
and ``boot_time``: start ticks after boot, field 22 of /proc/PID/stat, / CLK_TCK, plus
``btime`` of /proc/stat); tests/supervise/test_status.py compares the two.
"""

from __future__ import annotations

import os

START_TOLERANCE = 0.5
"""Seconds; start times are stable to the clock tick, a reused pid starts later than that."""


def started_at(pid: int, *, zombie: bool = False) -> float | None:
    """When process ``pid`` started, in seconds since the epoch; None when no such process
    runs (or it is a zombie, unless ``zombie``: dead but not yet reaped)."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open("/proc/stat", "rb") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith(b"btime"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 20 or (fields[0] == b"Z" and not zombie):
        return None
    return int(fields[19]) / os.sysconf("SC_CLK_TCK") + boot


def same_start(actual: float | None, started: float) -> bool:
    return actual is not None and abs(actual - started) <= START_TOLERANCE


def is_running(pid: int, started: float | None) -> bool:
    """True while ``pid`` runs (not a zombie) and, when ``started`` is known, is still the
    process that started then."""
    actual = started_at(pid)
    if actual is None:
        return False
    return started is None or same_start(actual, started)
