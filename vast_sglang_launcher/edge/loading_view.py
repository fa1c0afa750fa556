"""What the API port answers while SGLang is not ready: status.json -> one JSON document.

`loading_view` is a pure function of the status document (as `read_status` gives it: a dict,
or None when the file is missing or not JSON), the server's last lines and the time. It never
raises on what it reads: a field of the wrong type counts as absent, and a document that says
nothing usable reads as "starting". The same document is the 503 body for API clients
(OpenAI's error shape: `{"error": {"message", "type", "code", ...}}`) and the data the
loading page polls.

The status fields read here are written by `supervise.status.StatusFile` (state, since,
message, last_reason, hint, last_error, next_start_at, phases) and by
`coldstart.phases.PhaseTracker` through it (`phase`: name, title, since, and the download's
bytes_done, bytes_total, rate_bytes_s, eta_s). The weight load's shard progress is read
tolerantly (`shards_done`/`shards_total`, `shards: {done, total}` or `shards: "a/b"`), so a
writer that names them either way is shown.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ..coldstart.phases import ORDER, TITLES, fmt_duration
from ..timestamps import parse_iso
from ..units import fmt_bytes

ERROR_TYPE = "server_not_ready"
LINES_SHOWN = 12
LINE_CHARS = 400
DEFAULT_RETRY_S = 5
MAX_RETRY_S = 60

_STATE_PHASES = {
    "waiting_provisioning": "waiting_provisioning",
    "backoff": "backoff",
    "failed": "failed",
    "stopping": "stopping",
    "stopped": "stopped",
    "unhealthy": "unhealthy",
}
_TITLES = {
    **TITLES,
    "backoff": "restarting after a crash",
    "failed": "failed",
    "stopping": "stopping",
    "stopped": "stopped",
    "unhealthy": "not answering its health checks",
}


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _lines(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    out = [v if len(v) <= LINE_CHARS else v[: LINE_CHARS - 1] + "…" for v in value if _text(v)]
    return out[-LINES_SHOWN:]


def _shards(phase: dict[str, Any]) -> tuple[int, int] | None:
    done, total = phase.get("shards_done"), phase.get("shards_total")
    shards = phase.get("shards")
    if isinstance(shards, dict):
        done, total = shards.get("done"), shards.get("total")
    elif isinstance(shards, str) and shards.count("/") == 1:
        a, b = shards.split("/")
        done, total = (int(a), int(b)) if a.strip().isdigit() and b.strip().isdigit() else (0, 0)
    d, t = _num(done), _num(total)
    if d is None or t is None or t <= 0 or d < 0:
        return None
    return int(min(d, t)), int(t)


def _progress(name: str, phase: dict[str, Any]) -> dict[str, Any] | None:
    """The progress bar's data: bytes (downloading) or shards (loading weights)."""
    if name == "downloading":
        total, done = _num(phase.get("bytes_total")), _num(phase.get("bytes_done")) or 0.0
        if not total or total <= 0:
            return None
        rate, eta = _num(phase.get("rate_bytes_s")), _num(phase.get("eta_s"))
        text = f"{fmt_bytes(done)} of {fmt_bytes(total)}"
        if rate:
            text += f", {fmt_bytes(rate)}/s"
        if eta is not None and eta >= 0:
            text += f", about {_about(eta)} left"
        return {
            "unit": "bytes",
            "done": int(min(done, total)),
            "total": int(total),
            "fraction": round(min(done / total, 1.0), 4),
            "rate_bytes_s": int(rate) if rate else None,
            "eta_s": round(eta, 1) if eta is not None and eta >= 0 else None,
            "text": text,
        }
    shards = _shards(phase)
    if shards is not None and name == "loading_weights":
        done_shards, total_shards = shards
        return {
            "unit": "shards",
            "done": done_shards,
            "total": total_shards,
            "fraction": round(done_shards / total_shards, 4),
            "text": f"shard {done_shards} of {total_shards}",
        }
    return None


def _about(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _timeline(data: dict[str, Any], current: str | None, now: float) -> list[dict[str, Any]]:
    """The phases of this start: each with its duration, the running one with its elapsed
    time (what is done and what runs now)."""
    out = []
    phases = data.get("phases")
    for item in phases if isinstance(phases, list) else []:
        if not isinstance(item, dict) or item.get("phase") not in ORDER:
            continue
        name = item["phase"]
        took = _num(item.get("duration_s"))
        started = parse_iso(item.get("started_at"))
        running = took is None
        if running and started is not None:
            took = max(0.0, now - started)
        out.append(
            {
                "phase": name,
                "title": TITLES[name],
                "state": "running" if running and name == current else "done",
                "duration_s": round(took, 1) if took is not None else None,
                "duration": fmt_duration(took) if took is not None else "",
            }
        )
    return out


def _cause(lines: list[str]) -> str | None:
    """The line that names what went wrong: the last one that says Error, else the last."""
    for line in reversed(lines):
        if "error" in line.lower() or "exception" in line.lower():
            return line.strip()
    return lines[-1].strip() if lines else None


def loading_view(
    data: dict[str, Any] | None, lines: list[str] | None = None, now: float | None = None
) -> dict[str, Any]:
    """The not-ready answer: `{"error": {...}}` with message, type, code, phase, progress,
    the timeline, the last lines, the hint; `retry_after` (seconds, or None after a give-up)
    sits beside `error` for the HTTP layer, which removes it."""
    now = time.time() if now is None else now
    data = data if isinstance(data, dict) else {}
    state = _text(data.get("state"))
    raw_phase = data.get("phase")
    phase: dict[str, Any] = raw_phase if isinstance(raw_phase, dict) else {}
    name = phase.get("name") if phase.get("name") in ORDER else None
    current = _STATE_PHASES.get(state or "") or name or "starting"
    if current == "ready":  # status says ready, but SGLang did not answer the edge
        current = "starting"
    since = parse_iso(phase.get("since") if current == name else data.get("since"))
    elapsed = max(0.0, now - since) if since is not None else None
    progress = _progress(current, phase) if current == name else None
    last = _lines(lines) if lines else _lines(data.get("last_error"))
    hint, reason = _text(data.get("hint")), _text(data.get("last_reason"))
    retry: int | None = DEFAULT_RETRY_S

    if current == "failed":
        cause = _cause(_lines(data.get("last_error"))) or reason
        message = "SGLang failed to start and the launcher gave up"
        message += f": {reason}" if reason else ""
        message += f". Hint: {hint}" if hint else ""
        message += f". Cause: {cause}" if cause and cause != reason else ""
        retry = None
    elif current == "backoff":
        at = parse_iso(data.get("next_start_at"))
        wait = max(1.0, at - now) if at is not None else float(DEFAULT_RETRY_S)
        message = f"SGLang is restarting after a crash, next start in {_about(wait)}"
        message += f" ({reason})" if reason else ""
        retry = math.ceil(wait)
    else:
        message = f"SGLang is loading: {_TITLES[current]}"
        if progress is not None:
            message += f", {progress['text']}"
        elif elapsed is not None:
            message += f" for {fmt_duration(elapsed)}"
        if progress and progress.get("eta_s"):
            retry = math.ceil(progress["eta_s"])
    error: dict[str, Any] = {
        "message": message,
        "type": ERROR_TYPE,
        "code": "failed" if current == "failed" else "loading",
        "phase": current,
        "title": _TITLES[current],
        "elapsed_s": round(elapsed, 1) if elapsed is not None else None,
        "progress": progress,
        "phases": _timeline(data, current, now),
        "last_lines": last,
        "hint": hint,
        "reason": reason,
    }
    retry_after = None if retry is None else max(1, min(MAX_RETRY_S, retry))
    return {"error": error, "retry_after": retry_after}
