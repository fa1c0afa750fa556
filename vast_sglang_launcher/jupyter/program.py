"""`jupyter`: the supervisord program that runs JupyterLab behind the auth edge.

It starts nothing unless a `PORTAL_CONFIG` entry named Jupyter publishes it (external port
different from the internal one; the default `localhost:8080:18080:/:Jupyter` does). Then
it waits for provisioning (as the server does), writes the kernelspec that runs SGLang's
Python, and runs Jupyter in the foreground in `WORKSPACE`: its output goes to
`$LAUNCHER_LOG_DIR/jupyter.log` and to stdout (the container log).

Jupyter starts each kernel and terminal in a session of its own (jupyter_client
`provisioning/local_provisioner.py` passes `start_new_session`; terminado's pty processes
call setsid), so a signal to a process group cannot reach them. On SIGTERM Jupyter shuts
them down itself (jupyter_server `serverapp.py`: `_signal_stop`, then `cleanup_kernels` and
`cleanup_extensions`) and gets STOP_GRACE seconds for it before it is killed; this command
is a child subreaper, so whatever is left once Jupyter has exited (a terminal's shell often
is) is re-parented here and hung up, then killed, with psutil: nothing is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO

import psutil

from .. import markers
from ..boot.packages import pip_python
from ..edge.portal import portal_entries
from ..errors import ConfigError, LauncherError
from ..files import write_atomic
from ..logs import get_logger
from ..rotating_log import RotatingLog
from ..settings import Settings
from ..supervise.process import set_child_subreaper
from ..supervise.provisioning_gate import wait_until_gone
from .server_args import (
    is_jupyter,
    jupyter_argv,
    jupyter_environment,
    jupyter_place,
    kernel_spec_text,
    kernelspec_path,
    preferred_dir,
)

LOG_FILE = "jupyter.log"
EARLY = 10.0
"""Jupyter ending within this many seconds of its start failed to start."""
PAUSE = 5.0
"""Seconds to wait before exiting after an early failure (supervisord restarts us)."""
SWEEP_WAIT = 3.0
"""Seconds left processes get between SIGTERM and SIGKILL."""
RELAY_WAIT = 5.0
"""Seconds to wait for the last of Jupyter's output once every process of it is gone."""
STOP_GRACE = 1.5
"""Seconds Jupyter gets to stop after SIGTERM before it is killed (then swept). It keeps no
state of its own that a kill loses (notebooks are saved by the browser's requests, and the
kernels were hung up already), and on `docker stop` it is stopped after the server's drain,
inside Docker's 10 s: its shutdown must not take seconds on a loaded machine."""

log = get_logger("vast_sglang_launcher.jupyter")


def _check(settings: Settings) -> None:
    if not (settings.jupyter_bin.is_file() and os.access(settings.jupyter_bin, os.X_OK)):
        raise ConfigError(
            f"JUPYTER_BIN={settings.jupyter_bin} is not an executable file; install "
            "JupyterLab there, point JUPYTER_BIN at its `jupyter` command, or remove the "
            "Jupyter entry from PORTAL_CONFIG"
        )
    start = preferred_dir(settings)
    if not start.is_dir():
        var = "JUPYTER_DIR" if settings.jupyter_dir else "WORKSPACE"
        raise ConfigError(f"{var}={start} is not a directory; create it or fix {var}")


def _wait_for_provisioning(settings: Settings) -> bool:
    """False when stopped while provisioning still ran."""
    marker = settings.marker(markers.PROVISIONING)
    if not os.path.lexists(marker) or markers.provisioning_abandoned(settings.marker_dir):
        return True
    log.info("waiting for provisioning to finish", marker=str(marker))

    async def wait() -> bool:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            return await wait_until_gone(
                marker,
                stop,
                abandoned=lambda: markers.provisioning_abandoned(settings.marker_dir),
            )
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    return asyncio.run(wait())


def _sglang_python(settings: Settings) -> Path | None:
    """SGLang's Python, when it has ipykernel; else a warning and None."""
    try:
        python = pip_python(settings, os.environ)
    except LauncherError as exc:
        log.warning(f"no SGLang kernel in Jupyter: {exc}")
        return None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('ipykernel') is None)"
    try:
        found = subprocess.run([str(python), "-c", probe], check=False, timeout=60).returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning(f"no SGLang kernel in Jupyter: cannot run {python}: {exc}")
        return None
    if found != 0:
        log.warning(
            f"no SGLang kernel in Jupyter: SGLang's Python ({python}) has no ipykernel; add "
            "ipykernel to PIP_PACKAGES (or set LAUNCHER_PIP_PYTHON to a Python that has it)"
        )
        return None
    return python


def _relay(stream: IO[bytes], logfile: RotatingLog) -> None:
    """Copy Jupyter's output to jupyter.log and to stdout, line by line."""
    out = sys.stdout.buffer
    failed = False
    for line in iter(stream.readline, b""):
        if not failed:
            try:
                logfile.write(line)
            except OSError as exc:
                failed = True
                log.warning(f"cannot write {logfile.path}: {exc}; Jupyter's output goes on")
        try:
            out.write(line)
            out.flush()
        except (OSError, ValueError):
            pass
    stream.close()


def _hang_up(procs: list[psutil.Process]) -> None:
    """SIGHUP then SIGTERM, as a closed terminal would: interactive shells exit on SIGHUP,
    kernels on either (terminado's `terminate` starts the same way)."""
    for sig in (signal.SIGHUP, signal.SIGTERM):
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)


def _sweep() -> None:
    """Stop what outlived Jupyter (re-parented to this subreaper)."""
    try:
        left = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for proc in left:
        with contextlib.suppress(psutil.Error):
            log.info("stopping a process that outlived Jupyter", pid=proc.pid, name=proc.name())
    _hang_up(left)
    _gone, alive = psutil.wait_procs(left, timeout=SWEEP_WAIT)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=SWEEP_WAIT)


def _wait(child: subprocess.Popen[bytes], stopping: Callable[[], float | None]) -> int:
    """Jupyter's exit status; SIGKILL once it has had STOP_GRACE seconds to stop."""
    while True:
        try:
            return child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            since = stopping()
            if since is not None and time.monotonic() - since > STOP_GRACE:
                log.info(f"Jupyter did not stop within {STOP_GRACE:g} s; killing it")
                child.kill()


def command_jupyter(settings: Settings, args: argparse.Namespace) -> int:
    """``jupyter``: run JupyterLab in the foreground (supervisord program `jupyter`)."""
    if settings.serverless:
        # as Vast's image does (vast-ai/base-image ROOT/opt/supervisor-scripts/jupyter.sh
        # sources utils/exit_serverless.sh): a serverless worker serves no notebooks
        log.info("not starting Jupyter: serverless mode (SERVERLESS)")
        return 0
    entries = portal_entries(settings)
    place = jupyter_place([(e.name, e.external, e.internal) for e in entries])
    if place is None:
        if any(is_jupyter(e.name) for e in entries):
            log.info(
                "not starting Jupyter: PORTAL_CONFIG's Jupyter entries only link to a port "
                "that is published as it is; publish Jupyter behind the auth edge with "
                "localhost:8080:18080:/:Jupyter"
            )
        else:
            log.info("not starting Jupyter: PORTAL_CONFIG has no Jupyter entry")
        return 0
    _check(settings)
    stopping = False

    def stop_early(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    if not _wait_for_provisioning(settings):
        return 0
    python = _sglang_python(settings)
    spec = kernelspec_path(settings)
    if python is not None:
        write_atomic(spec, kernel_spec_text(python), 0o644)
    else:
        spec.unlink(missing_ok=True)

    logfile = RotatingLog(settings.log_dir / LOG_FILE, settings.log_max_bytes, settings.log_backups)
    try:
        logfile.open()
    except OSError as exc:
        raise ConfigError(
            f"cannot write {logfile.path} ({exc.strerror or exc}); fix LAUNCHER_LOG_DIR"
        ) from None
    set_child_subreaper()
    argv = jupyter_argv(settings, place)
    log.info(
        "starting Jupyter",
        command=shlex.join(argv),
        published=place.external,
        kernel=str(python) if python else None,
    )
    sys.stdout.flush()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop_early)
    started = time.monotonic()
    try:
        child = subprocess.Popen(
            argv,
            cwd=settings.workspace,
            env=jupyter_environment(settings, os.environ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot start Jupyter {argv[0]!r}: {exc.strerror or exc}; fix JUPYTER_BIN"
        ) from None

    stop_asked: float | None = None

    def forward(_signum: int, _frame: FrameType | None) -> None:
        # Jupyter asks for confirmation on SIGINT; SIGTERM stops it at once. Its kernels are
        # left to it: one killed under a running Jupyter is restarted by its restarter
        # (jupyter_client `restarter.py`), so they are swept only once Jupyter is gone.
        nonlocal stopping, stop_asked
        stopping = True
        if stop_asked is None:
            stop_asked = time.monotonic()
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    if stopping:
        forward(signal.SIGTERM, None)
    assert child.stdout is not None
    relay = threading.Thread(target=_relay, args=(child.stdout, logfile), daemon=True)
    relay.start()
    rc = _wait(child, lambda: stop_asked)
    # kernels write to Jupyter's stdout too: the relay sees its end once they are gone
    _sweep()
    relay.join(RELAY_WAIT)
    if not relay.is_alive():
        logfile.close()
    ran = time.monotonic() - started
    if stopping:
        log.info("Jupyter stopped", exit=rc)
        return 0
    if rc != 0 and ran < EARLY:
        log.error(
            f"Jupyter exited with status {rc} after {ran:.1f} s (its last lines are in "
            f"{logfile.path}); retrying in {PAUSE:g} s"
        )
        time.sleep(PAUSE)
    return rc if rc >= 0 else 128 - rc
