"""`entrypoint`: the container's ENTRYPOINT.

Checks the package lists, runs the hotfix, starts the weight prefetch in the background
(coldstart), runs the first boot, starts provisioning in the
background (`.provisioning` exists before the services start), then replaces itself with
the process supervisor (`supervisord -n -c LAUNCHER_SUPERVISORD_CONFIG`) so that PID 1 reaps
zombies and receives the container's signals. `entrypoint -- CMD ...` execs CMD instead.
Every service inherits the environment of `boot.service_env`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from ..coldstart.prefetch import start_background as start_prefetch
from ..errors import LauncherError
from ..logs import get_logger
from ..settings import Settings
from .first_boot import prepare_dirs, run_first_boot, run_hotfix, service_env
from .interrupts import Interrupted, signals_raise
from .packages import check_package_lists
from .provisioning import start_background
from .steps import StepResult

log = get_logger(__name__)


class ExecError(LauncherError):
    """The final command could not be started (127: not found, 126: not runnable)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def final_command(settings: Settings, cmd: Sequence[str]) -> list[str]:
    """What the entrypoint execs: the given command (a leading `--` dropped) or supervisord."""
    argv = list(cmd)
    if argv and argv[0] == "--":
        argv = argv[1:]
    return argv or ["supervisord", "-n", "-c", str(settings.supervisord_config)]


def exec_command(argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Replace this process with `argv`, looked up on the PATH of `env`."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], list(argv), dict(env))  # noqa: S606 (an argv, no shell)
    except FileNotFoundError:
        raise ExecError(f"cannot start {argv[0]!r}: not found on PATH", 127) from None
    except OSError as exc:
        raise ExecError(f"cannot start {argv[0]!r}: {exc.strerror or exc}", 126) from None


def command_entrypoint(settings: Settings, args: argparse.Namespace) -> int:
    """Boot steps in order, then exec the supervisor (or CMD). Returns only on failure."""
    argv = final_command(settings, getattr(args, "cmd", None) or [])
    lists = check_package_lists(settings)
    env = service_env(settings, os.environ)
    prepare_dirs(settings)
    steps: list[Callable[[], StepResult]] = [
        lambda: run_hotfix(settings, env),
        # The weights download beside the first boot and provisioning (coldstart).
        lambda: StepResult.of("prefetch", *start_prefetch(settings, env)),
        lambda: run_first_boot(settings, lists, env),
        lambda: start_background(settings, env),
    ]
    try:
        with signals_raise():
            for step in steps:
                result = step()
                log.info(f"boot: {result.line()}")
    except Interrupted as exc:
        log.warning("boot interrupted; not starting the services", signal=str(exc))
        return exc.exit_status
    log.info("starting", command=shlex.join(argv))
    exec_command(argv, env)
