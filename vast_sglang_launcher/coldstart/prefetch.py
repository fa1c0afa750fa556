"""The weight prefetch: download the model from the hub while the boot does everything else.

At container start the entrypoint calls `start_background`, which starts this module as a
detached process (``python -m vast_sglang_launcher.coldstart.prefetch``) before the first
boot's installs and the provisioning script, so that the three run side by side. The process
plans (to learn the model and revision exactly as the server will get them), skips a local
directory, offline mode and a download already complete in the cache, lists the repo's
files, checks the free disk, and downloads the files SGLang loads with `huggingface_hub`.
Its state is in `$LAUNCHER_RUN_DIR/prefetch.json` (see `progress`); `run` waits for it only
when provisioning ends first (`gate`). `provision` runs the same steps in the foreground
(`run_foreground`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from .. import hub as hubmod
from .. import hub_cache, repo_files
from ..errors import LauncherError
from ..host_limits import read_host_limits, thread_caps
from ..logs import configure_for, get_logger
from ..plan.prepare import prepare_plan
from ..redact import settings_secrets
from ..settings import Settings, load_settings
from ..units import fmt_bytes
from . import preflight, progress
from .phases import fmt_duration

log = get_logger(__name__)

STATUS_PERIOD = 0.5
"""Seconds between rewrites of prefetch.json while downloading."""
LOG_PERIOD = 10.0
"""Seconds between download progress lines in the log (at most)."""

NEXT_START = "the server starts anyway; SGLang downloads what is missing and reports any error"
NEXT_STOP = "the server is not started (exit 78): fix the setting and restart the instance"


@dataclass(frozen=True)
class Result:
    state: str
    """done, skipped or failed."""
    detail: str
    fatal: bool = False


def _me() -> dict[str, Any]:
    me = psutil.Process()
    return {"pid": me.pid, "pid_started": me.create_time()}


class _Status:
    """prefetch.json of this process: every write carries the whole document."""

    def __init__(self, path: Path, secrets: list[str] | None = None) -> None:
        self.path = path
        self.secrets = secrets or []
        self.doc: dict[str, Any] = {**_me(), "state": "starting", "started_at": time.time()}

    def set(self, **fields: Any) -> None:
        self.doc.update(fields)
        try:
            progress.write_status(self.path, self.doc, self.secrets)
        except OSError as exc:
            log.warning(f"cannot write {self.path}: {exc.strerror or exc}")

    def finish(self, result: Result, **fields: Any) -> Result:
        self.set(
            state=result.state,
            detail=result.detail,
            fatal=result.fatal,
            finished_at=time.time(),
            **fields,
        )
        return result


def served_model(settings: Settings) -> tuple[str | None, str | None]:
    """The model and revision the server would get if it started now (the plan)."""
    return _model_and_revision(settings)


def _model_and_revision(settings: Settings) -> tuple[str | None, str | None]:
    """The model and revision the server will get: SGLANG_MODEL when no user argument can
    name others, else the plan's (which reads --model-path and --revision as SGLang does)."""
    if settings.model and not _user_args(settings):
        return settings.model, None
    plan = prepare_plan(settings)
    return plan.model, plan.revision


# --- when there is nothing to download: the skip checks of both callers ---------------------


def _switched_off(settings: Settings) -> str | None:
    """Why no download runs whatever the model: LAUNCHER_PREFETCH, or offline mode."""
    if not settings.prefetch:
        return "LAUNCHER_PREFETCH is off"
    if settings.hf_hub_offline:
        return "HF_HUB_OFFLINE is set"
    return None


@dataclass(frozen=True)
class _Nothing:
    """A model the download need not fetch: the result and prefetch.json's fields."""

    result: Result
    fields: dict[str, Any]


def _nothing_to_fetch(
    settings: Settings, model: str, revision: str | None, cache: bool = True
) -> _Nothing | None:
    """A local path (skipped) or, with `cache`, a download of `model` at `revision` complete
    in the HF cache (done: no request at all); None when there is something to fetch."""
    if not hubmod.is_repo_id(model):
        return _Nothing(Result("skipped", f"{model} is a local path, not a hub repo"), {})
    rev = revision or "main"
    done = hub_cache.complete_in_cache(settings.hub_cache, model, rev) if cache else None
    if done is None:
        return None
    total = sum(done.files.values())
    return _Nothing(
        Result("done", f"{model} is complete in the cache ({fmt_bytes(total)})"),
        {
            "repo": model,
            "revision": rev,
            "total_bytes": total,
            "done_bytes": total,
            "files": len(done.files),
        },
    )


def run_prefetch(settings: Settings) -> Result:
    """Every step of the prefetch, in this process; prefetch.json follows each step."""
    status = _Status(progress.status_path(settings.run_dir), settings_secrets(settings))
    status.set()
    off = _switched_off(settings)
    if off is not None:
        return status.finish(Result("skipped", off))
    try:
        model, revision = _model_and_revision(settings)
    except LauncherError as exc:
        return status.finish(Result("skipped", f"no plan: {exc}"))
    if not model:
        return status.finish(Result("skipped", "no model is set"))
    nothing = _nothing_to_fetch(settings, model, revision)
    if nothing is not None:
        return status.finish(nothing.result, **nothing.fields)
    status.set(repo=model, revision=revision or "main")
    return _fetch(settings, status, model, revision, settings.hub_cache)


def _fetch(
    settings: Settings, status: _Status, model: str, revision: str | None, cache: Path
) -> Result:
    access = hubmod.hub_access(settings).for_download()
    status.set(state="listing")
    try:
        listing = hubmod.list_files(model, revision, access, log.warning)
    except hubmod.HubProblem as exc:
        return _failed(status, exc)
    chosen = set(repo_files.choose(f.path for f in listing.files))
    files = [(f.path, f.size, f.etag) for f in listing.files if f.path in chosen]
    total = sum(size for _, size, _ in files)
    removed, removed_bytes = progress.remove_orphan_partials(cache, model)
    if removed:
        log.info(
            f"removed {progress.partial_files(removed)} "
            f"({fmt_bytes(removed_bytes)}) left by an interrupted earlier download of {model}: "
            "huggingface_hub cannot resume them"
        )
    have = progress.reusable_bytes(cache, model, files)
    problem_line = preflight.disk_problem(
        model, total - have, total, preflight.free_bytes(cache), cache
    )
    if problem_line is not None:
        return _failed(status, hubmod.HubProblem("disk", problem_line))
    status.set(
        state="downloading",
        commit=listing.commit,
        total_bytes=total,
        done_bytes=have,
        files=len(files),
    )
    log.info(
        f"downloading {model}: {len(files)} files, {fmt_bytes(total)}"
        + (f" ({fmt_bytes(have)} already in the cache)" if have else ""),
        cache=str(cache),
        connections=settings.prefetch_connections,
    )
    outcome: list[BaseException | Path] = []

    def work() -> None:
        try:
            outcome.append(
                hubmod.download(
                    listing, sorted(chosen), cache, access, settings.prefetch_connections
                )
            )
        except BaseException as exc:
            outcome.append(exc)

    began = time.monotonic()
    thread = threading.Thread(target=work, name="prefetch", daemon=True)
    thread.start()
    last_log = began
    while thread.is_alive():
        thread.join(STATUS_PERIOD)
        got = progress.bytes_on_disk(cache, model, files)
        status.set(done_bytes=got)
        now = time.monotonic()
        if thread.is_alive() and now - last_log >= LOG_PERIOD:
            last_log = now
            log.info(_progress_line(model, got - have, got, total, now - began))
    result = outcome[0] if outcome else RuntimeError("the download thread ended without a word")
    if isinstance(result, hubmod.HubProblem):
        return _failed(status, result)
    if isinstance(result, BaseException):
        return _failed(status, hubmod.classify(result, model, access.token is not None))
    sizes = {path: size for path, size, _ in files}
    hub_cache.save_manifest(
        cache, hub_cache.Manifest(model, listing.revision, listing.commit, sizes)
    )
    took = time.monotonic() - began
    log.info(f"downloaded {model}: {fmt_bytes(total)} in {fmt_duration(took)}")
    return status.finish(
        Result("done", f"downloaded {fmt_bytes(total)} in {fmt_duration(took)}"),
        done_bytes=total,
    )


def _progress_line(model: str, moved: int, got: int, total: int, elapsed: float) -> str:
    rate = moved / elapsed if elapsed > 0 else 0.0
    eta = f", about {fmt_duration((total - got) / rate)} left" if rate > 0 else ""
    pct = 100.0 * got / total if total else 100.0
    return (
        f"downloading {model}: {fmt_bytes(got)} of {fmt_bytes(total)} ({pct:.0f}%), "
        f"{fmt_bytes(rate)}/s{eta}"
    )


def _failed(status: _Status, problem: hubmod.HubProblem) -> Result:
    nxt = NEXT_STOP if problem.fatal else NEXT_START
    log.error(f"download failed: {problem.line}; {nxt}")
    return status.finish(Result("failed", problem.line, problem.fatal), kind=problem.kind, next=nxt)


# --- started by the entrypoint, or by `provision` ---------------------------------------------


def might_have_a_model(settings: Settings) -> bool:
    """False when no model can be set: no SGLANG_MODEL, no SGLANG_ARGS and no args file (so
    no --model-path either). The plan itself decides otherwise."""
    return bool(
        settings.model or settings.sglang_args.strip() or settings.sglang_args_file.exists()
    )


def _user_args(settings: Settings) -> bool:
    """Whether the user gave SGLang arguments (SGLANG_ARGS, a non-empty args file) that could
    name a model or a revision; an unreadable file counts as arguments (the plan says why)."""
    if settings.sglang_args.strip():
        return True
    try:
        return bool(settings.sglang_args_file.read_text().strip())
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError):
        return True


def start_background(settings: Settings, env: Mapping[str, str]) -> tuple[str, str]:
    """Start the prefetch as a detached process (its own session, stdout and stderr
    inherited) and record it in prefetch.json before returning, so that `run` knows to wait
    for it. Returns (outcome, detail): running, skipped or failed."""
    path = progress.status_path(settings.run_dir)
    doc = progress.read_status(path)
    if doc and doc.get("state") in progress.RUNNING and progress.owner_alive(doc):
        return "running", f"already running as pid {doc.get('pid')}"
    # What an earlier boot of this container recorded (a failure, another model) is not
    # this boot's: `run` must not act on it.
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
    if not might_have_a_model(settings):
        return "skipped", "no model is set"
    off = _switched_off(settings)
    if off is not None:
        return "skipped", off
    # SGLANG_MODEL at main is complete in the cache when no user argument could name another
    # model or revision: a second boot then needs no process and no request at all. With
    # arguments, the plan decides (in the child).
    nothing = (
        _nothing_to_fetch(settings, settings.model, None, cache=not _user_args(settings))
        if settings.model
        else None
    )
    if nothing is not None and nothing.result.state == "skipped":
        return "skipped", nothing.result.detail
    if nothing is not None:
        detail = nothing.result.detail
        try:
            progress.write_status(
                path, {**_me(), "state": "done", "detail": detail, **nothing.fields}
            )
        except OSError as exc:
            return "failed", f"cannot write {path}: {exc.strerror or exc}"
        return "ok", detail
    child_env = dict(env)
    caps = thread_caps(read_host_limits(), env)
    child_env.update(caps.env)
    if caps.capped:  # a small pids budget: no high-performance mode (more threads)
        log.info(f"the download's thread pools: {caps.why}")
    else:
        child_env.setdefault("HF_XET_HIGH_PERFORMANCE", "1")  # hf-xet's fast path, when used
    child_env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", __name__],
            env=child_env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        return "failed", f"cannot start it in the background: {exc}"
    try:
        started = psutil.Process(child.pid).create_time()
    except psutil.Error:
        started = None
    try:
        progress.write_status(
            path,
            {
                "state": "starting",
                "pid": child.pid,
                "pid_started": started,
                "started_at": time.time(),
            },
        )
    except OSError as exc:
        return "failed", f"cannot write {path}: {exc.strerror or exc}"
    log.info("the weights download in the background", pid=child.pid)
    return "running", f"in the background as pid {child.pid}"


def run_foreground(settings: Settings) -> tuple[str, str] | None:
    """`provision`: wait for a prefetch already running, else run one here. Returns
    (outcome, detail): ok, skipped or failed; None when no model can be set at all."""
    if not might_have_a_model(settings):
        return None
    path = progress.status_path(settings.run_dir)
    doc = progress.read_status(path)
    if doc and doc.get("state") in progress.RUNNING and progress.owner_alive(doc):
        log.info("a download is already running; waiting for it", pid=doc.get("pid"))
        while doc and doc.get("state") in progress.RUNNING and progress.owner_alive(doc):
            time.sleep(STATUS_PERIOD)
            doc = progress.read_status(path)
        if doc is None or doc.get("state") in progress.RUNNING:
            return "failed", "the running download ended without finishing"
        result = Result(str(doc.get("state")), str(doc.get("detail", "")), bool(doc.get("fatal")))
    else:
        result = run_prefetch(settings)
    return ("ok" if result.state == "done" else result.state), result.detail


class Stopped(BaseException):
    """SIGTERM: the launcher stops (a container stop, a new plan for another model)."""


def _on_sigterm(signum: int, _frame: object) -> None:
    raise Stopped


def _stopped(settings: Settings) -> int:
    """After SIGTERM: remove this process's partial files (they could never be reused) and
    say so in prefetch.json; the download thread dies with the process. A worker thread can
    still open a new partial between this scan and the exit: the launcher sweeps once the
    process is gone (`gate.stop_download`)."""
    path = progress.status_path(settings.run_dir)
    doc = progress.read_status(path) or {}
    repo = doc.get("repo")
    removed = 0
    if isinstance(repo, str):
        for partial in progress.own_partials(settings.hub_cache, repo):
            with contextlib.suppress(OSError):
                partial.unlink()
                removed += 1
    detail = progress.stopped_detail(removed)
    with contextlib.suppress(OSError):
        progress.write_status(
            path,
            {
                **doc,
                "state": "stopped",
                "detail": detail,
                "removed_partials": removed,
                "finished_at": time.time(),
            },
            settings_secrets(settings),
        )
    log.info(f"download {detail}")
    return 128 + signal.SIGTERM


def main() -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    settings = None
    try:
        settings = load_settings()
        configure_for(settings)
        result = run_prefetch(settings)
    except LauncherError as exc:
        log.error(f"download not started: {exc}")
        return 1
    except Stopped:
        if settings is None:
            return 128 + signal.SIGTERM
        code = _stopped(settings)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # not sys.exit: the download thread must not finish a file now
    return 1 if result.state == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
