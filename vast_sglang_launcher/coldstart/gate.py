"""The server's wait for the weight prefetch (`run`, once provisioning has ended).

When the prefetch is still running, the server waits for it: it never starts on a partial
download. A finished, skipped or absent prefetch costs nothing. A failed one is reported in
one line; only a definite 404 or a gated repo without a token keeps the server from
starting (the launcher then exits 78), anything else lets SGLang start and report.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..redact import settings_secrets
from ..settings import Settings
from ..units import fmt_bytes
from . import progress
from .phases import PhaseTracker, fmt_duration

POLL = 0.05
"""Seconds between reads of prefetch.json while waiting (a small local file)."""


@dataclass(frozen=True)
class Verdict:
    start: bool
    """False: do not start the server (`line` says why; exit 78)."""
    line: str = ""
    download: dict[str, Any] = field(default_factory=dict)
    """For status.json: the prefetch's state, detail, kind and what happens next."""


def _download_detail(doc: dict[str, Any], rate: float) -> dict[str, Any]:
    done, total = int(doc.get("done_bytes") or 0), int(doc.get("total_bytes") or 0)
    eta = (total - done) / rate if rate > 0 and total > done else None
    return {
        "repo": doc.get("repo"),
        "bytes_done": done,
        "bytes_total": total,
        "rate_bytes_s": round(rate),
        "eta_s": round(eta, 1) if eta is not None else None,
    }


async def wait_for_weights(
    settings: Settings,
    stop: asyncio.Event,
    phases: PhaseTracker,
    log: Any,
    on_wait: Callable[[], None] = lambda: None,
) -> Verdict:
    """Wait while the prefetch runs (phase `downloading`, with bytes, rate and ETA; the stall
    watchdog warns when no byte moves for LAUNCHER_STALL_TIMEOUT); `on_wait` is called once
    when a wait begins. Returns whether the server may start; check `stop` after it."""
    path = progress.status_path(settings.run_dir)
    doc = progress.read_status(path)
    if doc is None:
        return Verdict(True)
    loop = asyncio.get_running_loop()
    if doc.get("state") in progress.RUNNING and progress.owner_alive(doc):
        on_wait()
        # The first plan follows the download and reads config.json through the hub client:
        # import it meanwhile, so that the server starts sooner when the download ends.
        warm = loop.run_in_executor(None, importlib.import_module, "huggingface_hub.file_download")
        phases.enter("downloading", **_download_detail(doc, 0.0))
        log.info("waiting for the weights to download")
        samples: list[tuple[float, int]] = []
        last_seen: tuple[object, ...] | None = None
        checked = False
        while doc is not None and doc.get("state") in progress.RUNNING:
            if not progress.owner_alive(doc):
                break
            if not checked and doc.get("repo"):
                checked = True
                other = await loop.run_in_executor(None, _served_instead, settings, doc)
                if other is not None:
                    log.warning(other)
                    await stop_download(settings, log, settings.stop_timeout)
                    return Verdict(
                        True, "", {"state": "stopped", "repo": doc.get("repo"), "detail": other}
                    )
            done = int(doc.get("done_bytes") or 0)
            now = loop.time()
            samples = [s for s in samples if now - s[0] <= 10.0] + [(now, done)]
            rate = (done - samples[0][1]) / (now - samples[0][0]) if now > samples[0][0] else 0.0
            seen = (done, doc.get("total_bytes"), doc.get("repo"), doc.get("state"))
            if seen != last_seen:
                if last_seen is None or done != last_seen[0]:
                    phases.activity()
                last_seen = seen
                phases.update(**_download_detail(doc, rate))
            stalled = phases.stalled()
            if stalled:
                log.warning(stalled)
                phases.publish(message=stalled)  # status.json's message, as in a start
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL)
            if stop.is_set():
                return Verdict(True)
            doc = progress.read_status(path)
        with contextlib.suppress(Exception):
            await warm
    if doc is None:
        return Verdict(True)
    return _after(doc, log)


def _served_instead(settings: Settings, doc: dict[str, Any]) -> str | None:
    """When provisioning is over, plan again: the line saying that the server will serve
    another model (or revision) than the running download fetches, else None. The prefetch
    planned at boot, before the provisioning script could write `--model-path` into the
    args file."""
    from .prefetch import served_model

    try:
        model, revision = served_model(settings)
    except Exception:  # a plan that fails now fails again, with its message, at the start
        return None
    repo, rev = doc.get("repo"), doc.get("revision") or "main"
    if model == repo and (revision or "main") == rev:
        return None
    serves = f"{model}@{revision}" if revision else str(model)
    return (
        f"the server will serve {serves}, not {repo}@{rev} (the plan after provisioning): "
        "stopping that download; SGLang fetches what it serves"
    )


async def stop_download(settings: Settings, log: Any, grace: float = 2.0) -> None:
    """Stop a running prefetch: SIGTERM (it removes its partial files and says so in
    prefetch.json), then SIGKILL after `grace` seconds. Once it is gone, the partials it
    left (one a download thread opened after its own sweep, or all of them after SIGKILL)
    are removed here. For every stop of `run`: the prefetch runs in a session of its own,
    so nothing else would stop it before the container's PID 1 exits and the kernel kills
    it."""
    import psutil

    path = progress.status_path(settings.run_dir)
    doc = progress.read_status(path)
    if not doc or doc.get("state") not in progress.RUNNING or not progress.owner_alive(doc):
        return
    pid = int(doc["pid"])
    try:
        proc = psutil.Process(pid)
        proc.terminate()
    except psutil.Error:
        return
    log.info("stopping the weight download", pid=pid)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, proc.wait, grace)
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.Error):
            proc.kill()
            await loop.run_in_executor(None, proc.wait, grace)
    except psutil.Error:
        pass
    _sweep_partials(settings, path, log)


def _sweep_partials(settings: Settings, path: Path, log: Any) -> None:
    """Remove the partials of the stopped download's repo that no live download writes
    (`progress.remove_orphan_partials` skips a partial whose huggingface_hub lock is held)
    and count them in prefetch.json's detail."""
    doc = progress.read_status(path) or {}
    repo = doc.get("repo")
    if not isinstance(repo, str) or progress.owner_alive(doc):
        return
    count, size = progress.remove_orphan_partials(settings.hub_cache, repo)
    if not count:
        return
    log.info(
        f"removed {progress.partial_files(count)} ({fmt_bytes(size)}) "
        f"the stopped download of {repo} left"
    )
    if doc.get("state") == "stopped":
        removed = int(doc.get("removed_partials") or 0) + count
        new = {**doc, "detail": progress.stopped_detail(removed), "removed_partials": removed}
        with contextlib.suppress(OSError):
            progress.write_status(path, new, settings_secrets(settings))


def _after(doc: dict[str, Any], log: Any) -> Verdict:
    state = doc.get("state")
    summary = {k: doc.get(k) for k in ("state", "repo", "detail", "kind", "next", "total_bytes")}
    if state == "stopped":
        log.info(f"the weight download was {doc.get('detail') or 'stopped'}")
        return Verdict(True, "", summary)
    if state in progress.RUNNING:  # its process died (killed) before it could say so
        log.warning(
            "the download process ended without finishing; starting the server, SGLang "
            "downloads what is missing"
        )
        return Verdict(True, "", {**summary, "state": "abandoned"})
    if state == "failed":
        line = f"weight download failed: {doc.get('detail')}"
        if doc.get("fatal"):
            log.error(f"{line}; not starting the server (exit 78)")
            return Verdict(False, line, summary)
        log.warning(f"{line}; {doc.get('next') or 'starting the server anyway'}")
        return Verdict(True, line, summary)
    elif state == "done":
        took = ""
        started, finished = doc.get("started_at"), doc.get("finished_at")
        if isinstance(started, (int, float)) and isinstance(finished, (int, float)):
            took = f" in {fmt_duration(finished - started)}"
        total = int(doc.get("total_bytes") or 0)
        log.info(f"weights ready{took}: {fmt_bytes(total)} of {doc.get('repo')}")
    return Verdict(True, "", summary)
