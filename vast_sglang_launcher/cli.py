"""Command line: ``vast-sglang-launcher COMMAND`` (also ``python -m vast_sglang_launcher``).

Each command's module is imported only when that command runs, and ``plan`` does not pay for
the supervisor's imports, nor the supervisor for the plan's. ``status`` (the image's
HEALTHCHECK, run every 30 s for the container's whole life) goes further: ``status`` and
``status --json`` skip argparse too, and import nothing beyond the cheapest of the standard
library.
"""

from __future__ import annotations

import os
import sys

from . import __version__
from .errors import LauncherError, report

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see `status`)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from .settings import Settings

    Command = Callable[[Settings, argparse.Namespace], int]

EX_USAGE = 2  # argparse's status for a bad command line
EX_BROKEN_PIPE = 128 + 13  # what a shell reports for a tool killed by SIGPIPE

_CONFIG = ("78", "a bad setting (the message names the variable to fix)")
_USAGE = ("2", "a bad command line")

# name -> (one-line help, what it does, the settings it reads most, its exit statuses)
_COMMANDS: dict[str, tuple[str, str, str, list[tuple[str, str]]]] = {
    "plan": (
        "print the command the launcher would run, and why",
        "Build the `sglang serve` command from the environment, the args file, the GPUs and "
        "the model's config.json, and print it with every decision (value, source, reason) "
        "and every warning. Starts nothing.",
        "SGLANG_MODEL, SGLANG_ARGS, SGLANG_ARGS_FILE, AUTO_PARALLEL, GPU_COUNT, "
        "CUDA_VISIBLE_DEVICES, SGLANG_COMMAND, SGLANG_HOST, LAUNCHER_SERVER_PORT, HF_TOKEN, "
        "HF_HUB_OFFLINE",
        [
            ("0", "the plan was printed (warnings included; also when no model is set)"),
            ("78", "a bad setting, or an args file that cannot be read or split"),
            _USAGE,
        ],
    ),
    "run": (
        "start the server and keep it serving (the supervisord program)",
        "Wait for provisioning, start the planned server, probe /health, restart it with "
        "backoff when it fails, stop its whole process tree on SIGTERM/SIGINT, restart it "
        "with a fresh plan on SIGHUP, and keep $LAUNCHER_RUN_DIR/status.json current. Server "
        "output goes to stdout and to $LAUNCHER_LOG_DIR/sglang.log, the launcher's own lines "
        "to stderr.",
        "everything `plan` reads, LAUNCHER_RUN_DIR, LAUNCHER_LOG_DIR, LAUNCHER_MARKER_DIR, "
        "WORKSPACE, LAUNCHER_STARTUP_TIMEOUT, LAUNCHER_START_RETRIES, LAUNCHER_STOP_TIMEOUT, "
        "LAUNCHER_LOG_FORMAT",
        [
            ("0", "stopped by SIGTERM or SIGINT, or no model is set"),
            ("1", "a bug in the launcher (traceback logged; exits after LAUNCHER_BACKOFF_MAX)"),
            (
                "78",
                "gave up on a server that keeps failing before it is ready, or at once on "
                "a failure no restart can fix (no GPU, a bad argument, ...); the model is not "
                "on the hub, or is gated and HF_TOKEN is unset; a bad setting; a directory "
                "it cannot write (or a full disk), or outside a container one of the image's "
                "default directories that does not exist; another launcher runs on "
                "LAUNCHER_RUN_DIR",
            ),
            _USAGE,
        ],
    ),
    "status": (
        "show the supervised server's state (exit 0 when ready)",
        "Read $LAUNCHER_RUN_DIR/status.json and show the state, pids, restarts, last exit, "
        "hint and last server lines (--json: the file's fields plus launcher_alive). It is "
        "the image's HEALTHCHECK and imports nothing but the standard library.",
        "LAUNCHER_RUN_DIR (default /run/vast-sglang-launcher), and no other",
        [
            ("0", "the server is ready and the launcher that wrote the file still runs"),
            ("1", "any other state, a launcher that is gone, or no status file"),
            _USAGE,
        ],
    ),
    "restart": (
        "ask the running launcher to restart the server (SIGHUP)",
        "Send SIGHUP to the launcher holding $LAUNCHER_RUN_DIR/launcher.pid: it plans again "
        "(args file and model config read again) and restarts the server without a backoff "
        "wait. If the new plan fails, the running server is kept.",
        "LAUNCHER_RUN_DIR",
        [
            ("0", "the launcher was asked"),
            ("1", "no launcher runs on LAUNCHER_RUN_DIR"),
            _CONFIG,
            _USAGE,
        ],
    ),
    "provision": (
        "run the boot steps now: hotfix, first boot, provisioning",
        "Run HOTFIX_SCRIPT, the first-boot installs (APT_PACKAGES, PIP_PACKAGES) and "
        "PROVISIONING_SCRIPT in the foreground, then print one summary line per step. Steps "
        "already completed (markers in LAUNCHER_MARKER_DIR) are skipped unless --force.",
        "HOTFIX_SCRIPT, APT_PACKAGES, PIP_PACKAGES, PROVISIONING_SCRIPT, LAUNCHER_MARKER_DIR, "
        "LAUNCHER_LOG_DIR, LAUNCHER_RUN_DIR, WORKSPACE, LAUNCHER_PIP_PYTHON",
        [
            ("0", "every step succeeded or was skipped"),
            ("1", "a step failed (its log is named)"),
            (
                "78",
                "a bad setting or package list, or a directory it cannot write (outside a "
                "container: one of the image's default directories that does not exist)",
            ),
            ("128+N", "stopped by signal N"),
            _USAGE,
        ],
    ),
    "entrypoint": (
        "container entrypoint: boot steps, then supervisord",
        "The image's ENTRYPOINT: hotfix, first boot, provisioning in the background, then "
        "exec supervisord (or CMD after `--`). A failing step is logged and the boot goes on.",
        "everything `provision` reads, LAUNCHER_SUPERVISORD_CONFIG, PORTAL_CONFIG",
        [
            ("-", "none once supervisord (or CMD) has started: it replaces the launcher"),
            ("78", "a bad setting or package list"),
            ("126", "CMD cannot be executed"),
            ("128+N", "stopped by signal N during the boot steps"),
            _USAGE,
        ],
    ),
    "edge": (
        "render the auth proxy's Caddyfile and exec Caddy",
        "Write the Caddyfile for the published ports (PORTAL_CONFIG) with Bearer, Basic and "
        "token-link authentication, write the Instance Portal's application list, and exec "
        "Caddy. --print only prints the Caddyfile.",
        "PORTAL_CONFIG, OPEN_BUTTON_TOKEN, WEB_USERNAME, WEB_PASSWORD, ENABLE_AUTH, "
        "AUTH_EXCLUDE, ENABLE_HTTPS, LAUNCHER_CADDY_BIN",
        [
            ("0", "--print printed the Caddyfile"),
            ("-", "none once Caddy has started: it replaces the launcher"),
            ("78", "a bad setting, or Caddy or a TLS file missing"),
            _USAGE,
        ],
    ),
    "loading-page": (
        "answer the API port while SGLang is not ready (supervisord program)",
        "Serve, on $LAUNCHER_RUN_DIR/loading.sock, what the edge answers on the SGLang API's "
        "port while the server is not ready: 503 with Retry-After and an OpenAI-style JSON "
        "error naming the phase and its progress, or for a browser a page that updates "
        "itself (phases, progress, last server lines, the hint after a give-up). Reads "
        "status.json and sglang.log; SIGTERM/SIGINT stop it (exit 0).",
        "LAUNCHER_RUN_DIR, LAUNCHER_LOG_DIR, SGLANG_ARGS, SGLANG_ARGS_FILE (secrets to mask)",
        [
            ("0", "stopped by SIGTERM or SIGINT"),
            ("78", "a bad setting, or a LAUNCHER_RUN_DIR too long for a Unix socket"),
            _USAGE,
        ],
    ),
    "gateway": (
        "run SGLang's gateway, smg (supervisord program)",
        "Run the gateway (LAUNCHER_GATEWAY_COMMAND, smg by default) in the foreground on "
        "LAUNCHER_GATEWAY_PORT behind the edge, with "
        "the static workers of LAUNCHER_GATEWAY_WORKERS; workers join it at run time with the "
        "instance token. Does nothing unless LAUNCHER_RUN_GATEWAY is true.",
        "LAUNCHER_RUN_GATEWAY, LAUNCHER_GATEWAY_PORT, LAUNCHER_GATEWAY_WORKERS, "
        "LAUNCHER_GATEWAY_ARGS, LAUNCHER_GATEWAY_COMMAND",
        [
            ("0", "gateway mode is off, or the gateway stopped on request"),
            ("78", "a bad setting, or the gateway refused its options"),
            _USAGE,
        ],
    ),
    "serverless": (
        "run Vast's serverless worker in front of the server (supervisord program)",
        "Run Vast's worker (the vastai package, LAUNCHER_SERVERLESS_PYTHON) in the foreground on "
        "WORKER_PORT: it forwards /v1/completions and /v1/chat/completions to the server, "
        "reports loaded after SGLang's ready line and error after the launcher's give-up line "
        "in sglang.log, and reports load to Vast's autoscaler. Does nothing unless SERVERLESS "
        "is true.",
        "SERVERLESS, REPORT_ADDR, CONTAINER_ID, WORKER_PORT, PUBLIC_IPADDR, "
        "VAST_TCP_PORT_<WORKER_PORT>, MASTER_TOKEN, LAUNCHER_SERVERLESS_PYTHON, "
        "LAUNCHER_SERVERLESS_MAX_QUEUE",
        [
            ("0", "serverless mode is off, or the worker stopped on request"),
            ("78", "a bad or missing setting, or no vastai in LAUNCHER_SERVERLESS_PYTHON"),
            _USAGE,
        ],
    ),
    "jupyter": (
        "run JupyterLab behind the auth edge (supervisord program)",
        "Run JupyterLab (JUPYTER_TYPE=notebook: Notebook 7) in the foreground on 127.0.0.1 at "
        "the internal port of the PORTAL_CONFIG entry named Jupyter (8080 -> 18080 by "
        "default), after provisioning, in WORKSPACE, with no token of its own (the edge "
        "authenticates) and a `python3` kernel that runs SGLang's Python. Output goes to "
        "$LAUNCHER_LOG_DIR/jupyter.log and stdout. Does nothing when PORTAL_CONFIG names no "
        "Jupyter entry.",
        "PORTAL_CONFIG, JUPYTER_TYPE, JUPYTER_BIN, JUPYTER_DIR, WORKSPACE, LAUNCHER_PIP_PYTHON, "
        "SGLANG_COMMAND, LAUNCHER_MARKER_DIR, LAUNCHER_RUN_DIR, LAUNCHER_LOG_DIR",
        [
            ("0", "no Jupyter entry in PORTAL_CONFIG, or Jupyter stopped on request"),
            ("78", "a bad setting (JUPYTER_BIN, JUPYTER_DIR, PORTAL_CONFIG, ...)"),
            _USAGE,
        ],
    ),
    "option-table": (
        "write SGLang's option table, or check tables for drift",
        "--output: describe the options of the sglang importable by this Python into a JSON "
        "file, which `plan` reads from LAUNCHER_OPTION_TABLE. The image writes it at build "
        "time with SGLang's own Python (`python3 -m vast_sglang_launcher.option_table "
        "--output FILE`). --check: name each option the launcher uses that is missing or "
        "ambiguous in the given tables (CI runs it over every shipped table).",
        "none",
        [
            ("0", "written, or every table has every option the launcher uses"),
            ("1", "sglang is not importable by this Python, or a table drifted"),
            _USAGE,
        ],
    ),
    "settings": (
        "print every setting's current value, or the settings reference",
        "Print every setting as VARIABLE=value with the value it has now: from the "
        "environment, else its default (booleans as true/false, secrets masked, unset "
        "values empty); a bad value is shown as given and marked `# not valid: REASON`. "
        "--markdown prints the settings reference instead (docs/settings.md: every "
        "variable, its default and its meaning).",
        "all of them",
        [
            ("0", "printed, or FILE updated"),
            ("1", "--update FILE: FILE exists and is not a settings reference"),
            ("78", "printed, and at least one value is not valid (marked in the output)"),
            _USAGE,
        ],
    ),
}


def _epilog(reads: str, exits: list[tuple[str, str]]) -> str:
    import textwrap

    lines = [
        "settings read most:",
        textwrap.fill(reads, 78, initial_indent="  ", subsequent_indent="  "),
    ]
    lines += ["", "exit status:"]
    for code, meaning in exits:
        lines.append(
            textwrap.fill(meaning, 78, initial_indent=f"  {code:<6}", subsequent_indent=" " * 8)
        )
    return "\n".join(lines)


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    import argparse
    import textwrap

    p = argparse.ArgumentParser(
        prog="vast-sglang-launcher",
        description="Plan, start, supervise and stop an SGLang server from the environment.",
        epilog="`vast-sglang-launcher COMMAND --help` says what a command does, the settings "
        "it reads and its exit statuses. Settings reference: docs/settings.md.",
    )
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subs: dict[str, argparse.ArgumentParser] = {}
    for name, (short, does, reads, exits) in _COMMANDS.items():
        subs[name] = sub.add_parser(
            name,
            help=short,
            description=textwrap.fill(does, 78),
            epilog=_epilog(reads, exits),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    subs["plan"].add_argument("--json", action="store_true", help="print the plan as JSON")
    subs["status"].add_argument("--json", action="store_true", help="print status.json")
    subs["provision"].add_argument(
        "--force", action="store_true", help="re-run steps already completed"
    )
    subs["entrypoint"].add_argument(
        "cmd", nargs=argparse.REMAINDER, help="-- CMD ... runs CMD instead of supervisord"
    )
    subs["edge"].add_argument("--print", action="store_true", help="only print the Caddyfile")
    what = subs["option-table"].add_mutually_exclusive_group(required=True)
    what.add_argument("--output", help="file to write from the installed sglang")
    what.add_argument(
        "--check",
        nargs="+",
        metavar="FILE",
        help="fail (exit 1) naming each option the launcher uses that is missing or "
        "ambiguous in a table",
    )
    s = subs["settings"]
    s.add_argument(
        "--markdown", action="store_true", help="print the settings reference (docs/settings.md)"
    )
    s.add_argument(
        "--update",
        metavar="FILE",
        help="rewrite FILE with the settings reference (e.g. docs/settings.md)",
    )
    s.add_argument("--update-readme", dest="update", metavar="FILE", help=argparse.SUPPRESS)
    return p, subs


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse; an unknown option is reported with its command's usage and a close spelling."""
    parser, subs = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        import difflib

        sub = subs[args.command]
        known = [s for a in sub._actions for s in a.option_strings]
        close = difflib.get_close_matches(extra[0], known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        sub.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    return args


def _command(name: str) -> Command:
    # Imported lazily: `plan` must not pay for the supervisor's imports, and vice versa.
    if name == "plan":
        from .plan.command import command_plan

        return command_plan
    if name == "run":
        from .supervise.commands import command_run

        return command_run
    if name == "restart":
        from .supervise.commands import command_restart

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
    if name == "loading-page":
        from .edge.loading_server import command_loading_page

        return command_loading_page
    if name == "gateway":
        from .scaleout.gateway_program import command_gateway

        return command_gateway
    if name == "serverless":
        from .serverless.program import command_serverless

        return command_serverless
    if name == "jupyter":
        from .jupyter.program import command_jupyter

        return command_jupyter
    if name == "option-table":
        from .plan.option_table import command_option_table

        return command_option_table
    from .settings_doc import command_settings

    return command_settings


# Directories a command writes; checked before it starts (outside a container the defaults
# need root, and a first try should say which variable to set rather than fail half-way).
_WRITES = {
    "run": ("run_dir", "log_dir", "workspace"),
    "provision": ("run_dir", "log_dir", "workspace", "marker_dir"),
    "serverless": ("run_dir", "log_dir"),
    "loading-page": ("run_dir",),
    "jupyter": ("run_dir", "log_dir"),
}


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "status":
        from .supervise.status import command_status

        return command_status(args.json)
    if args.command == "settings" and not (args.markdown or args.update):
        from .settings_doc import print_settings

        return print_settings(os.environ)  # every value, the bad ones marked (exit 78)
    from .dirs import require_writable_dirs
    from .logs import configure_for, get_logger
    from .settings import deprecation_warnings, load_settings

    settings = load_settings()
    configure_for(settings)
    for line in deprecation_warnings(os.environ):
        get_logger("vast_sglang_launcher").warning(line)
    require_writable_dirs(settings, *_WRITES.get(args.command, ()))
    return _command(args.command)(settings, args)


def _health_check(argv: Sequence[str]) -> int | None:
    """`status` / `status --json` straight away, without argparse; None for anything else."""
    if list(argv) not in (["status"], ["status", "--json"]):
        return None
    from .supervise.status import command_status

    return command_status(as_json=len(argv) == 2)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        code = _health_check(argv)
        if code is None:
            code = _dispatch(_parse(argv))
        sys.stdout.flush()  # here, so that a closed pipe is noticed while we can handle it
        return code
    except LauncherError as exc:
        return report(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `plan | head -1`: the reader has gone. Quiet, like a tool killed by SIGPIPE; stdout
        # is pointed at /dev/null so that the interpreter's final flush cannot complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EX_BROKEN_PIPE
