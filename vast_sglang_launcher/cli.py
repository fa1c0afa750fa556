"""Command line: ``python -m vast_sglang_launcher`` and the ``vast-sglang-launcher`` script."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from . import __version__
from .errors import LauncherError, report
from .logs import configure
from .settings import Settings, load_settings

Command = Callable[[Settings, argparse.Namespace], int]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vast-sglang-launcher",
        description="Plan, start, supervise and stop an SGLang server from the environment.",
    )
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("plan", help="print the command the launcher would run, and why")
    s.add_argument("--json", action="store_true", help="print the plan as JSON")

    sub.add_parser("run", help="start the server and keep it serving (supervisord program)")

    s = sub.add_parser("status", help="show the supervised server's state (exit 0 when ready)")
    s.add_argument("--json", action="store_true", help="print status.json")

    sub.add_parser("restart", help="ask the running launcher to restart the server (SIGHUP)")

    s = sub.add_parser("provision", help="run the boot steps now: hotfix, first boot, provisioning")
    s.add_argument("--force", action="store_true", help="re-run steps already completed")

    s = sub.add_parser("entrypoint", help="container entrypoint: boot steps, then supervisord")
    s.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ... runs CMD instead")

    s = sub.add_parser("edge", help="render the auth proxy's Caddyfile and exec Caddy")
    s.add_argument("--print", action="store_true", help="only print the Caddyfile")

    s = sub.add_parser(
        "option-table", help="write SGLang's option table, or check tables for drift"
    )
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--output", help="file to write from the installed sglang")
    what.add_argument(
        "--check",
        nargs="+",
        metavar="FILE",
        help="fail (exit 1) naming each option the launcher uses that is missing or "
        "ambiguous in a table",
    )

    s = sub.add_parser("settings", help="list every setting with its variable and default")
    s.add_argument("--markdown", action="store_true", help="print the README table")
    s.add_argument("--update-readme", metavar="FILE", help="rewrite the table in README.md")
    return p


def _command(name: str) -> Command:
    # Imported lazily: `plan` must not pay for the supervisor's imports, and vice versa.
    if name == "plan":
        from .plan.command import command_plan

        return command_plan
    if name == "run":
        from .supervise.supervisor import command_run

        return command_run
    if name == "status":
        from .supervise.status import command_status

        return command_status
    if name == "restart":
        from .supervise.supervisor import command_restart

        return command_restart
    if name == "provision":
        from .boot.first_boot import command_provision

        return command_provision
    if name == "entrypoint":
        from .boot.entrypoint import command_entrypoint

        return command_entrypoint
    if name == "edge":
        from .edge.command import command_edge

        return command_edge
    if name == "option-table":
        from .plan.option_table import command_option_table

        return command_option_table
    from .settings_doc import command_settings

    return command_settings


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        configure(settings.log_format, settings.log_level)
        return _command(args.command)(settings, args)
    except LauncherError as exc:
        return report(exc)
    except KeyboardInterrupt:
        return 130
