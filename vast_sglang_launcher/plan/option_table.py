"""`option-table`: write the option table of the sglang installed in this Python.

Importing sglang takes seconds, so this runs once when the image is built; the launcher then
reads the written file at run time (LAUNCHER_OPTION_TABLE) instead of its snapshot.

The module needs nothing but the standard library and sglang, so the image runs it with
SGLang's own Python straight from the source tree (`python -m
vast_sglang_launcher.option_table --output FILE`), never mixing the launcher's dependencies
into SGLang's environment.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LauncherError, report
from ..files import write_atomic

if TYPE_CHECKING:
    from ..settings import Settings


def _kind(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "flag"
    if action.nargs in ("*", "+") or (isinstance(action.nargs, int) and action.nargs > 1):
        return "list"
    if action.nargs == "?":
        return "optional"
    return "value"


def _plain(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def table_from_parser(
    add_cli_args: Callable[[argparse.ArgumentParser], None], version: str
) -> dict[str, Any]:
    """Build a parser the way SGLang does and describe every option it accepts."""
    parser = argparse.ArgumentParser(allow_abbrev=True)
    add_cli_args(parser)
    options = [
        {
            "options": list(a.option_strings),
            "dest": a.dest,
            "kind": _kind(a),
            "default": _plain(a.default),
            "choices": _plain(list(a.choices)) if a.choices is not None else None,
        }
        for a in parser._actions
        if a.option_strings
    ]
    return {"sglang_version": version, "allow_abbrev": parser.allow_abbrev, "options": options}


def write_installed_table(output: Path) -> str:
    """Describe the importable sglang's options into ``output``; a one-line summary."""
    try:
        import sglang
        from sglang.srt.server_args import ServerArgs
    except ImportError as exc:
        raise LauncherError(
            f"sglang is not importable by {sys.executable} ({exc}); run this command with "
            "the Python that has sglang installed"
        ) from None
    version = str(getattr(sglang, "__version__", "unknown"))
    table = table_from_parser(ServerArgs.add_cli_args, version)
    write_atomic(output, json.dumps(table, indent=1))
    return f"wrote {len(table['options'])} options of sglang {version} to {output}"


def _check(files: list[str]) -> int:
    """`--check FILE...`: exit 1 naming each launcher option a table lacks or splits."""
    from .drift_check import check_tables

    ok, lines = check_tables([Path(p) for p in files])
    print("\n".join(lines))
    return 0 if ok else 1


def command_option_table(settings: Settings, args: argparse.Namespace) -> int:
    if args.check:
        return _check(args.check)
    print(write_installed_table(Path(args.output)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry for the image build: no settings, no third-party imports."""
    parser = argparse.ArgumentParser(prog="python -m vast_sglang_launcher.option_table")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--output", type=Path, help="file to write")
    what.add_argument("--check", nargs="+", metavar="FILE", help="check tables for drift")
    args = parser.parse_args(argv)
    if args.check:
        return _check(args.check)
    try:
        print(write_installed_table(args.output))
    except LauncherError as exc:
        return report(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
