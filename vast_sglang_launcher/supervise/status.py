"""status.json: what the launcher is doing, written atomically on every change, and the
``status`` command that shows it (exit 0 only when the server is ready and the launcher that
wrote it still runs, so it can serve as a Docker HEALTHCHECK)."""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ..files import write_atomic
from ..settings import Settings
from .process import same_process
from .states import ServerState

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


def iso(ts: float | None) -> str | None:
    """Local time with offset, to the millisecond (``2025-01-31T14:02:11.123+00:00``)."""
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


def parse_iso(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


class StatusFile:
    """The launcher's status document; ``update`` rewrites the file (tmp + os.replace)."""

    def __init__(self, path: Path, **initial: Any) -> None:
        self.path = path
        self.data: dict[str, Any] = {**EMPTY, **initial}
        self.error: str | None = None

    def update(self, **changes: Any) -> None:
        state = changes.get("state")
        if state is not None:
            assert state in STATES, state
            if state != self.data.get("state"):
                changes.setdefault("since", iso(time.time()))
        self.data.update(changes)
        self.data["updated_at"] = iso(time.time())
        self.write()

    def write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(self.data, indent=1) + "\n")
            self.error = None
        except OSError as exc:
            self.error = f"cannot write {self.path}: {exc.strerror or exc}"

    @property
    def state(self) -> str | None:
        value = self.data.get("state")
        return value if isinstance(value, str) else None


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def launcher_alive(data: dict[str, Any]) -> bool:
    """True when the launcher that wrote ``data`` still runs (pid not reused since)."""
    pid, started = data.get("launcher_pid"), data.get("launcher_started")
    if not isinstance(pid, int) or not isinstance(started, (int, float)):
        return False
    return same_process(pid, float(started)) is not None


def healthy(data: dict[str, Any]) -> bool:
    return data.get("state") == "ready" and launcher_alive(data)


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return ""
    secs = max(0, int(now - ts))
    if secs < 60:
        return f"{secs} s ago"
    if secs < 3600:
        return f"{secs // 60} min {secs % 60} s ago"
    return f"{secs // 3600} h {secs % 3600 // 60} min ago"


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
        ("restarts", data.get("restarts") or None),
        ("next start", data.get("next_start_at")),
        ("last exit", data.get("last_exit")),
        ("reason", data.get("last_reason")),
        ("hint", data.get("hint")),
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


def _size(n: object) -> str:
    value = float(n) if isinstance(n, (int, float)) else 0.0
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _phase_lines(data: dict[str, Any], now: float) -> list[str]:
    """The load phase now (with download progress) and the durations of the last start."""
    lines = []
    phase = data.get("phase")
    if isinstance(phase, dict) and phase.get("name"):
        since = parse_iso(phase.get("since"))
        elapsed = f" for {max(0, int(now - since))} s" if since is not None else ""
        text = f"{phase.get('title') or phase['name']}{elapsed} (since {phase.get('since')})"
        if phase["name"] == "downloading" and phase.get("bytes_total"):
            text += f": {_size(phase.get('bytes_done'))} of {_size(phase.get('bytes_total'))}"
            if phase.get("rate_bytes_s"):
                text += f", {_size(phase['rate_bytes_s'])}/s"
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


def command_status(settings: Settings, args: argparse.Namespace) -> int:
    """``status [--json]``: exit 0 only when ready and the launcher is alive."""
    path = settings.status_file
    data = read_status(path)
    if data is None:
        msg = f"no launcher status at {path} (is `run` running? LAUNCHER_RUN_DIR)"
        if getattr(args, "json", False):
            print(json.dumps({**EMPTY, "launcher_alive": False, "error": msg}, indent=1))
        else:
            print(msg, file=sys.stderr)
        return 1
    alive = launcher_alive(data)
    if getattr(args, "json", False):
        phase = data.get("phase")
        if isinstance(phase, dict) and (since := parse_iso(phase.get("since"))) is not None:
            data["phase"] = {**phase, "elapsed_s": round(max(0.0, time.time() - since), 3)}
        print(json.dumps({**data, "launcher_alive": alive}, indent=1))
    else:
        print(render(data, alive))
    return 0 if data.get("state") == "ready" and alive else 1
