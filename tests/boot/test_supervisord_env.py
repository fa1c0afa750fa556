"""The environment the image's supervisord configuration expands (boot/supervisord_env.py)."""

from __future__ import annotations

import sys

from vast_sglang_launcher.boot.supervisord_env import supervisor_environment
from vast_sglang_launcher.settings import load_settings


def test_supervisor_environment_follows_the_settings() -> None:
    settings = load_settings(
        {"LAUNCHER_RUN_DIR": "/r", "LAUNCHER_LOG_DIR": "/l", "LAUNCHER_STOP_TIMEOUT": "45.5"}
    )
    assert supervisor_environment(settings) == {
        "LAUNCHER_PYTHON": sys.executable,
        "LAUNCHER_RUN_DIR": "/r",
        "LAUNCHER_LOG_DIR": "/l",
        "LAUNCHER_SUPERVISOR_STOPWAIT": "76",
    }
