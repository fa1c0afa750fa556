"""Run a command with its output copied, line by line as it comes, to our stdout and a log file.

The command runs in its own session (process group) with no stdin. When the launcher is
interrupted while it runs, its whole group gets SIGTERM, then SIGKILL after a grace period;
a command that finishes normally keeps whatever it started in the background.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..logs import get_logger
from ..rotating_log import RotatingLog, open_rotating

log = get_logger(__name__)

DEFAULT_LOG_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_LOG_BACKUPS = 3
_DRAIN_SECONDS = 2.0  # after exit, wait this long for output still in the pipe


@dataclass(frozen=True)
class Completed:
    """How a command ended."""

    status: int
    """Exit status; 128+N when it was killed by signal N."""
    tail: list[str]
    """Its last output lines."""


def exit_status(returncode: int) -> int:
    """Popen's returncode as a shell reports it (a signal N gives 128+N)."""
    return 128 - returncode if returncode < 0 else returncode


def open_log(
    path: Path | None, max_bytes: int = DEFAULT_LOG_MAX_BYTES, backups: int = DEFAULT_LOG_BACKUPS
) -> RotatingLog | None:
    """Open a log file for appending (rotated by size: LAUNCHER_LOG_MAX_BYTES,
    LAUNCHER_LOG_BACKUPS), creating its directory; None (with a warning) when it cannot be
    written, so that a read-only log directory never stops a boot."""
    if path is None:
        return None
    try:
        return open_rotating(path, max_bytes, backups)
    except OSError as exc:
        log.warning(
            "cannot write the log file; output goes to stdout only", path=str(path), error=str(exc)
        )
        return None


def _pump(source: BinaryIO, log_file: RotatingLog | None, tail: deque[str]) -> None:
    out = getattr(sys.stdout, "buffer", None)
    for line in iter(source.readline, b""):
        tail.append(line.decode("utf-8", errors="replace").rstrip("\r\n"))
        if log_file is not None:  # first: a stalled stdout must not keep it from the log
            try:
                log_file.write(line)
            except (OSError, ValueError):
                log_file = None
        with contextlib.suppress(OSError, ValueError):
            if out is not None:
                out.write(line)
                out.flush()
            else:
                sys.stdout.write(line.decode("utf-8", errors="replace"))
                sys.stdout.flush()


def _stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the command's process group, then SIGKILL it after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    # The leader may be gone while others in its group live on: one last SIGKILL.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_tee(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_file: RotatingLog | None,
    cwd: Path | None = None,
    tail_lines: int = 20,
    stop_grace: float = 5.0,
) -> Completed:
    """Run `argv` (never through a shell), copying its stdout and stderr to ours and to
    `log_file` line by line. OSError when it cannot be started; an Interrupted (or any
    exception) while it runs stops its process group and propagates."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    assert proc.stdout is not None
    tail: deque[str] = deque(maxlen=tail_lines)
    reader = threading.Thread(
        target=_pump, args=(proc.stdout, log_file, tail), name="tee", daemon=True
    )
    reader.start()
    try:
        returncode = proc.wait()
    except BaseException:
        _stop_group(proc, stop_grace)
        raise
    finally:
        # Background processes the command left may hold the pipe open: do not wait forever.
        reader.join(timeout=_DRAIN_SECONDS)
    if reader.is_alive():
        log.info(
            "the command exited but processes it started still write to its output; "
            "that output is not captured",
            command=argv[0],
        )
    return Completed(exit_status(returncode), list(tail))
