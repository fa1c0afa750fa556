"""Errors a user can cause, each carrying one clear line and an exit status."""

from __future__ import annotations

import sys

EX_CONFIG = 78  # sysexits.h EX_CONFIG; supervisord treats it as a final exit


class LauncherError(Exception):
    """A failure explained to the user in one message, without a traceback."""

    exit_code = 1


class ConfigError(LauncherError):
    """A bad setting, args file or package list: fixing the configuration is the remedy."""

    exit_code = EX_CONFIG


def report(exc: LauncherError) -> int:
    """Print the one-line explanation on stderr; return the exit status it calls for."""
    print(f"vast-sglang-launcher: {exc}", file=sys.stderr)
    return exc.exit_code
