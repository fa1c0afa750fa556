"""The `run` and `restart` commands."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time

from ..errors import LauncherError
from ..logs import configure_for, get_logger
from ..settings import Settings
from .run_dir import running_launcher
from .stdout_relay import StdioRelays
from .supervisor import Supervisor
from .watch import fmt_seconds


def command_run(settings: Settings, args: argparse.Namespace) -> int:
    """``run``: supervise the server until stopped (0) or given up (78).

    The server's lines and the launcher's own log go out through relays (`stdout_relay`), so
    a reader that stops reading never blocks the launcher.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    relays = StdioRelays()
    stream = relays.log_stream()
    if stream is not None:
        configure_for(settings, stream=stream)
    log = get_logger("vast_sglang_launcher.supervise")
    supervisor = Supervisor(settings, relays.stdout)
    try:
        return asyncio.run(supervisor.run())
    except LauncherError:
        raise  # explained in one line by the CLI, with its own exit status
    except Exception:
        supervisor.uninstall_signals()  # the pause below stays stoppable
        # A bug in the launcher itself. supervisord (startsecs=0) would restart it at once,
        # forever: pausing first keeps a crash loop as slow as the server's own backoff.
        log.exception(
            "the launcher failed (a bug: please report this traceback); exiting in "
            f"{fmt_seconds(settings.backoff_max)} s (LAUNCHER_BACKOFF_MAX)"
        )
        time.sleep(settings.backoff_max)
        return 1
    finally:
        relays.close(timeout=1.0)
        configure_for(settings)
        # Python's exit puts the default actions back for signals with a Python handler,
        # and SIGHUP's would kill the launcher on its last step: ignored outright instead.
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)


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
