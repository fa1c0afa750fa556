"""PROVISIONING_SCRIPT: run on every boot until it succeeds once, then never again.

Markers (under LAUNCHER_MARKER_DIR):

- `.provisioning` exists for exactly as long as the script runs; it records the owner's pid
  and start time, so that one left by a killed process is recognised as stale and removed.
  It is removed when provisioning ends, also when the launcher gets SIGTERM/SIGINT.
- `.provisioning_complete` after success: provisioning never runs again (`--force` reruns it).
- `.provisioning_failed` after failure: first line the exit status, then the reason. The
  instance still starts; the next boot tries again.

At container start, `entrypoint` creates `.provisioning` before it execs supervisord and
starts this module as a detached child (``python -m vast_sglang_launcher.provisioning
--ready-fd N``); the child takes the marker over, reports on fd N, and runs the script while
the services start. The server's gate watches `.provisioning` and starts it the moment the
child removes the marker.
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .. import markers
from ..errors import LauncherError, report
from ..logs import configure_for, get_logger
from ..settings import Settings, load_settings
from .interrupts import Interrupted, signals_raise
from .scripts import ScriptError, run_script
from .steps import StepResult

log = get_logger(__name__)

STEP = "provisioning"
VAR = "PROVISIONING_SCRIPT"
_READY = b"ready\n"
_READY_TIMEOUT = 30.0
_WAIT_PERIOD = 0.5


def _clear_stale(settings: Settings) -> markers.Owner | None:
    """Remove `.provisioning` when its owner is gone; the live owner otherwise."""
    marker = settings.marker(markers.PROVISIONING)
    owner = markers.read_owner(marker)
    if owner is None:
        return None
    if owner.pid != os.getpid() and markers.is_alive(owner):
        return owner
    log.warning(
        f"removing a stale {markers.PROVISIONING}; provisioning runs again",
        path=str(marker),
        pid=owner.pid or None,
    )
    markers.remove(marker)
    return None


def _wait_for_owner(settings: Settings) -> None:
    """Wait while another process provisions (e.g. the one the entrypoint started)."""
    announced = False
    while (owner := _clear_stale(settings)) is not None:
        if not announced:
            log.info("provisioning is already running; waiting for it to finish", pid=owner.pid)
            announced = True
        time.sleep(_WAIT_PERIOD)


def _pending(settings: Settings, force: bool) -> StepResult | None:
    """A `skipped` result when there is nothing to run, else None."""
    if not settings.provisioning_script:
        return StepResult(STEP, "skipped", f"{VAR} is not set")
    complete = settings.marker(markers.PROVISIONING_COMPLETE)
    if complete.exists() and not force:
        return StepResult(STEP, "skipped", f"{complete} exists; --force reruns it")
    return None


def _attempt(settings: Settings, source: str, env: Mapping[str, str]) -> StepResult:
    complete = settings.marker(markers.PROVISIONING_COMPLETE)
    failed = settings.marker(markers.PROVISIONING_FAILED)
    log_path = settings.log_dir / "provisioning.log"
    try:
        done = run_script(VAR, source, "provisioning", settings, env)
        status, reason = done.status, f"exit status {done.status}"
    except ScriptError as exc:
        status, reason = 1, str(exc)
    try:
        if status == 0:
            markers.write(complete, markers.stamp())
            markers.remove(failed)
        else:
            markers.write(failed, f"{status}\n{reason}\n")
    except OSError as exc:
        log.error("cannot write the provisioning markers", error=str(exc))
        return StepResult(STEP, "failed", f"{reason}; cannot write its marker: {exc}")
    if status == 0:
        log.info("provisioning complete")
        return StepResult(STEP, "ok")
    log.error(
        "provisioning failed; the instance starts anyway and the next boot tries again",
        reason=reason,
        log=str(log_path),
    )
    return StepResult(STEP, "failed", f"{reason}; see {log_path}")


def run_provisioning(
    settings: Settings,
    env: Mapping[str, str],
    *,
    force: bool = False,
    owned: bool = False,
    on_claimed: Callable[[], None] | None = None,
) -> StepResult:
    """Run PROVISIONING_SCRIPT in the foreground when it has not completed yet (or `force`).

    Waits first for a provisioning already running in another process. `owned`: the caller
    (the entrypoint's child) was handed `.provisioning` and takes it over. `on_claimed` is
    called once `.provisioning` names this process. Interrupted propagates after the
    script's process group is stopped and `.provisioning` removed.
    """
    if not owned:
        _wait_for_owner(settings)
    marker = settings.marker(markers.PROVISIONING)
    skipped = _pending(settings, force)
    source = settings.provisioning_script
    if skipped is not None or not source:
        if owned:
            markers.remove(marker)
        return skipped or StepResult(STEP, "skipped")
    try:
        refused = _claim(marker)
        if refused is not None:
            return refused
        if on_claimed is not None:
            on_claimed()
        return _attempt(settings, source, env)
    finally:
        markers.remove(marker)


def _claim(marker: Path) -> StepResult | None:
    """Write `.provisioning` naming this process; a failed step when it cannot be written."""
    try:
        markers.claim(marker)
    except OSError as exc:
        log.error(
            f"cannot write {markers.PROVISIONING}; provisioning does not run",
            path=str(marker),
            error=str(exc),
        )
        return StepResult(STEP, "failed", f"cannot write {marker}: {exc}")
    return None


# --- in the background of a boot ----------------------------------------------------------


def _await_ready(fd: int, child: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    got = b""
    while time.monotonic() < deadline and child.poll() is None:
        readable, _, _ = select.select([fd], [], [], 0.1)
        if readable:
            chunk = os.read(fd, 64)
            if not chunk:
                break
            got += chunk
            if got.endswith(_READY):
                return True
    return got.endswith(_READY)


def start_background(settings: Settings, env: Mapping[str, str]) -> StepResult:
    """Create `.provisioning`, then start provisioning as a detached child (its own session,
    stdout/stderr inherited) and return once the child holds the marker. The caller execs
    the process supervisor next, which reaps the child."""
    owner = _clear_stale(settings)
    if owner is not None:
        return StepResult(STEP, "running", f"already running as pid {owner.pid}")
    skipped = _pending(settings, force=False)
    if skipped is not None:
        return skipped
    marker = settings.marker(markers.PROVISIONING)
    refused = _claim(marker)
    if refused is not None:
        return refused
    read_fd, write_fd = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", __name__, "--ready-fd", str(write_fd)],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
    except OSError as exc:
        markers.remove(marker)
        os.close(read_fd)
        return StepResult(STEP, "failed", f"cannot start it in the background: {exc}")
    finally:
        os.close(write_fd)
    try:
        ready = _await_ready(read_fd, child, _READY_TIMEOUT)
    finally:
        os.close(read_fd)
    if not ready:
        owner = markers.read_owner(marker)
        if owner is not None and owner.pid in (os.getpid(), child.pid):
            markers.remove(marker)
        log.error("background provisioning did not start", pid=child.pid, exit_status=child.poll())
        return StepResult(STEP, "failed", "the background process did not start")
    log.info(
        "provisioning runs in the background; the server starts when it finishes",
        pid=child.pid,
        log=str(settings.log_dir / "provisioning.log"),
    )
    return StepResult(STEP, "running", f"in the background as pid {child.pid}")


def main(argv: Sequence[str] | None = None) -> int:
    """The detached child: take `.provisioning` over, say so on --ready-fd, provision."""
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}")
    parser.add_argument("--ready-fd", type=int, required=True, help="fd to report 'ready' on")
    args = parser.parse_args(argv)
    ready_fd: int | None = args.ready_fd

    def ready() -> None:
        nonlocal ready_fd
        if ready_fd is not None:
            os.write(ready_fd, _READY)
            os.close(ready_fd)
            ready_fd = None

    try:
        settings = load_settings()
        configure_for(settings)
        with signals_raise():
            result = run_provisioning(settings, os.environ, owned=True, on_claimed=ready)
    except LauncherError as exc:
        return report(exc)
    except Interrupted as exc:
        log.warning("provisioning interrupted; it runs again on the next boot", signal=str(exc))
        return exc.exit_status
    finally:
        if ready_fd is not None:
            os.close(ready_fd)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
