"""Reading status.json (what the launcher is doing; `status_writer` writes it): the
``status`` command that shows it (exit 0 only when the server is ready and the launcher that
wrote it still runs, so it can serve as a Docker HEALTHCHECK), and the document's shape.

``status`` runs every 30 s for a container's whole life, so the reading side imports only
the cheapest of the standard library (no pathlib, typing or collections either): no settings
class (pydantic), no psutil. The one setting it reads, LAUNCHER_RUN_DIR, is read from the
environment with the settings class's default (a test keeps the two equal), and whether the
launcher still runs is read from /proc (`pids`).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time

from ..pids import is_running
from ..redact import Redactor, argv_secrets, mask_argv
from ..timestamps import parse_iso
from ..units import fmt_bytes
from .states import ServerState

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path
    from typing import Any

RUN_DIR_VARIABLE = "LAUNCHER_RUN_DIR"
RUN_DIR_DEFAULT = "/run/vast-sglang-launcher"  # = Settings.run_dir's default
STATUS_FILE = "status.json"
SERVING_MARKER = "serving"
"""Exists beside status.json while SGLang serves: the edge (Caddy's `file` matcher) proxies
API requests to SGLang only then, and answers them with the loading page otherwise."""
STATES = tuple(state.value for state in ServerState)

EMPTY: dict[str, Any] = {
    "state": None,
    "since": None,
    "message": None,
    "launcher_pid": None,
    "launcher_started": None,
    "server_pid": None,
    "model": None,
    "url": None,
    "argv": [],
    "ready_at": None,
    "restarts": 0,
    "restarts_last_hour": 0,
    "last_exit": None,
    "last_reason": None,
    "last_error": [],
    "hint": None,
    "next_start_at": None,
    "phase": None,
    "phases": [],
    "previous_phases": [],
    "download": None,
    "updated_at": None,
}


def masked(data: dict[str, Any], secrets: list[str] | None = None) -> dict[str, Any]:
    """`data` with the argv's secret option values (and `secrets`) masked everywhere."""
    argv = data.get("argv")
    argv = [str(a) for a in argv] if isinstance(argv, list) else []
    redact = Redactor([*(secrets or []), *argv_secrets(argv)])
    shown: dict[str, Any] = redact.data(data)
    if argv:
        shown["argv"] = redact.data(mask_argv(argv))
    return shown


def read_status(path: str | Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def launcher_alive(data: dict[str, Any]) -> bool:
    """True when the launcher that wrote ``data`` still runs (pid not reused since)."""
    pid, started = data.get("launcher_pid"), data.get("launcher_started")
    if not isinstance(pid, int) or isinstance(pid, bool) or not isinstance(started, (int, float)):
        return False
    return is_running(pid, float(started))


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return ""
    secs = max(0, int(now - ts))
    if secs < 60:
        return f"{secs} s ago"
    if secs < 3600:
        return f"{secs // 60} min {secs % 60} s ago"
    return f"{secs // 3600} h {secs % 3600 // 60} min ago"


def _gateway_line(gateway: object) -> str | None:
    """Worker mode (scaleout): `registered: listed by ... as ...`."""
    if not isinstance(gateway, dict) or not gateway.get("state"):
        return None
    return f"{gateway['state']}: {gateway.get('message') or ''}".rstrip(": ")


def _restarts(data: dict[str, Any]) -> str | None:
    total = data.get("restarts") or 0
    if not total:
        return None
    recent = data.get("restarts_last_hour")
    return f"{total} ({recent} in the last hour)" if isinstance(recent, int) else str(total)


def render(data: dict[str, Any], alive: bool, now: float | None = None) -> str:
    """The status for a person."""
    now = time.time() if now is None else now
    state = data.get("state") or "unknown"
    since = parse_iso(data.get("since"))
    lines = []
    head = f"SGLang server: {state}"
    if since is not None:
        head += f" since {data.get('since')} ({_ago(since, now)})"
    lines.append(head)
    if data.get("message"):
        lines.append(f"  {data['message']}")
    pid = data.get("launcher_pid")
    if alive:
        lines.append(f"  launcher   pid {pid}, running")
    else:
        lines.append(f"  launcher   pid {pid} is NOT running: the state above is its last record")
    rows = [
        ("model", data.get("model")),
        ("url", data.get("url")),
        ("server", f"pid {data['server_pid']}" if data.get("server_pid") else None),
        ("ready at", data.get("ready_at")),
        ("restarts", _restarts(data)),
        ("next start", data.get("next_start_at")),
        ("last exit", data.get("last_exit")),
        ("reason", data.get("last_reason")),
        ("hint", data.get("hint")),
        ("gateway", _gateway_line(data.get("gateway"))),
    ]
    for name, value in rows:
        if value not in (None, "", []):
            lines.append(f"  {name:<10} {value}")
    lines.extend(_phase_lines(data, now))
    argv = data.get("argv") or []
    if argv:
        lines.append(f"  command    {shlex.join(str(a) for a in argv)}")
    last = data.get("last_error") or []
    if last:
        lines.append("  last server lines:")
        lines.extend(f"    {line if len(line) <= 300 else line[:299] + '…'}" for line in last)
    return "\n".join(lines)


def _number(value: object) -> float:
    """A number read from the file (anything else counts as 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value)


def _phase_lines(data: dict[str, Any], now: float) -> list[str]:
    """The load phase now (with download progress) and the durations of the last start."""
    lines = []
    phase = data.get("phase")
    if isinstance(phase, dict) and phase.get("name"):
        since = parse_iso(phase.get("since"))
        elapsed = f" for {max(0, int(now - since))} s" if since is not None else ""
        text = f"{phase.get('title') or phase['name']}{elapsed} (since {phase.get('since')})"
        if phase["name"] == "loading_weights" and phase.get("shards_total"):
            text += f": {phase.get('shards_loaded')} of {phase['shards_total']} shards"
        if phase["name"] == "downloading" and phase.get("bytes_total"):
            done, total = phase.get("bytes_done"), phase["bytes_total"]
            text += f": {fmt_bytes(_number(done))} of {fmt_bytes(_number(total))}"
            if phase.get("rate_bytes_s"):
                text += f", {fmt_bytes(_number(phase['rate_bytes_s']))}/s"
            if phase.get("eta_s") is not None:
                text += f", about {int(phase['eta_s'])} s left"
        lines.append(f"  {'phase':<10} {text}")
    done = [p for p in data.get("phases") or [] if p.get("duration_s") is not None]
    if done:
        took = ", ".join(f"{p['phase']} {p['duration_s']:.1f} s" for p in done)
        lines.append(f"  {'took':<10} {took}")
    download = data.get("download")
    if isinstance(download, dict) and download.get("state") == "failed":
        lines.append(f"  {'download':<10} failed: {download.get('detail')}")
    return lines


def status_path(environ: Mapping[str, str]) -> str:
    """``$LAUNCHER_RUN_DIR/status.json``; an empty variable counts as unset, as in settings."""
    run_dir = environ.get(RUN_DIR_VARIABLE, "").strip() or RUN_DIR_DEFAULT
    return os.path.join(run_dir, STATUS_FILE)


def command_status(as_json: bool, environ: Mapping[str, str] | None = None) -> int:
    """``status [--json]``: exit 0 only when ready and the launcher is alive."""
    path = status_path(os.environ if environ is None else environ)
    data = read_status(path)
    if data is None:
        msg = f"no launcher status at {path} (is `run` running? {RUN_DIR_VARIABLE})"
        if as_json:
            print(json.dumps({**EMPTY, "launcher_alive": False, "error": msg}, indent=1))
        else:
            print(msg, file=sys.stderr)
        return 1
    alive = launcher_alive(data)
    data = masked(data)  # also for a file written before secrets were masked
    if as_json:
        phase = data.get("phase")
        if isinstance(phase, dict) and (since := parse_iso(phase.get("since"))) is not None:
            data["phase"] = {**phase, "elapsed_s": round(max(0.0, time.time() - since), 3)}
        print(json.dumps({**data, "launcher_alive": alive}, indent=1))
    else:
        print(render(data, alive))
    return 0 if data.get("state") == "ready" and alive else 1
