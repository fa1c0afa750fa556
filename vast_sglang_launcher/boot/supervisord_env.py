"""The environment that the image's supervisord configuration expands (`%(ENV_X)s` in
`supervisor/*.conf`): `entrypoint` exports it before it execs supervisord. Pure."""

from __future__ import annotations

import math
import sys

from ..settings import Settings

SUPERVISOR_STOP_MARGIN = 30
"""Seconds supervisord waits for the launcher beyond `LAUNCHER_STOP_TIMEOUT`."""


def supervisor_environment(settings: Settings, python: str | None = None) -> dict[str, str]:
    """The variables that `supervisor/*.conf` expand (`%(ENV_X)s`); `entrypoint` exports them.

    supervisord refuses to start when one is missing, so the image also sets defaults for
    them (Dockerfile `ENV`). LAUNCHER_RUN_DIR and LAUNCHER_LOG_DIR must exist before
    supervisord starts (its socket, pid file and log live there).
    """
    return {
        "LAUNCHER_PYTHON": python or sys.executable,
        "LAUNCHER_RUN_DIR": str(settings.run_dir),
        "LAUNCHER_LOG_DIR": str(settings.log_dir),
        "LAUNCHER_SUPERVISOR_STOPWAIT": str(
            math.ceil(settings.stop_timeout) + SUPERVISOR_STOP_MARGIN
        ),
    }
