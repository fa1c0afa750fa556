"""The `run` and `restart` commands."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from typing import BinaryIO

from ..errors import LauncherError
from ..logs import get_logger
from ..settings import Settings
from .attempt import fmt_seconds
from .run_dir import running_launcher
from .supervisor import Supervisor


def command_run(settings: Settings, args: argparse.Namespace) -> int:
    """``run``: supervise the server until stopped (0) or given up (78)."""
    sys.stdout.flush()
    stdout: BinaryIO | None = getattr(sys.stdout, "buffer", None)
    try:
        return asyncio.run(Supervisor(settings, stdout).run())
    except LauncherError:
        raise  # explained in one line by the CLI, with its own exit status
    except Exception:
        # A bug in the launcher itself. supervisord (startsecs=0) would restart it at once,
        # forever: pausing first keeps a crash loop as slow as the server's own backoff.
        get_logger("vast_sglang_launcher.supervise").exception(
            "the launcher failed (a bug: please report this traceback); exiting in "
            f"{fmt_seconds(settings.backoff_max)} s (LAUNCHER_BACKOFF_MAX)"
        )
        time.sleep(settings.backoff_max)
        return 1


def command_restart(settings: Settings, args: argparse.Namespace) -> int:
    """``restart``: send SIGHUP to the running launcher (it re-reads the args file)."""
    pid = running_launcher(settings.run_dir)
    if pid is None:
        print(
            f"vast-sglang-launcher: no running launcher found in {settings.run_dir} "
            "(LAUNCHER_RUN_DIR)",
            file=sys.stderr,
        )
        return 1
    os.kill(pid, signal.SIGHUP)
    print(f"asked the launcher (pid {pid}) to restart the server")
    return 0
