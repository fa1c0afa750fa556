"""`serverless`: the supervisord program that runs Vast's worker when SERVERLESS is true.

It checks Vast's variables (`worker_config.worker_env`: one line and exit 78 for a bad or
missing one), marks where this boot's part of sglang.log begins, writes the worker's spec and
runs `pyworker` with LAUNCHER_SERVERLESS_PYTHON (the `vastai` venv) in the foreground:
SIGTERM/SIGINT are passed on, its output goes to stdout (the container log) and to
`$LAUNCHER_LOG_DIR/serverless.log`, its exit status is ours. With SERVERLESS false it exits
0 at once.

The start of this boot's log is kept in `$LAUNCHER_RUN_DIR/serverless/start.json` with the
start time of PID 1 (the container's boot): a worker restarted by supervisord within the same
boot reads sglang.log from the same place, so it still sees the ready line; a new boot starts
at the end of what earlier boots wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

import psutil

from ..errors import EX_CONFIG, ConfigError
from ..files import write_atomic
from ..logs import get_logger
from ..rotating_log import RotatingLog
from ..settings import Settings
from . import pyworker
from .worker_config import worker_env, worker_spec

SERVER_LOG = "sglang.log"
LOG_FILE = "serverless.log"
EARLY = 10.0
"""A worker that ends within this many seconds of its start failed to start."""
PAUSE = 5.0
"""Seconds to wait before exiting after an early failure (supervisord restarts us)."""


def _boot_id() -> float:
    try:
        return psutil.Process(1).create_time()
    except (psutil.Error, OSError):
        return 0.0


def log_start(state: Path, server_log: Path) -> dict[str, Any]:
    """Where this boot's part of sglang.log begins: {"inode", "offset"} (kept per boot)."""
    boot = _boot_id()
    with contextlib.suppress(OSError, ValueError):
        kept = json.loads(state.read_text())
        if kept.get("boot") == boot:
            return {"inode": kept["inode"], "offset": kept["offset"]}
    try:
        st = os.stat(server_log)
        start: dict[str, Any] = {"inode": st.st_ino, "offset": st.st_size}
    except FileNotFoundError:
        start = {"inode": None, "offset": 0}
    write_atomic(state, json.dumps({"boot": boot, **start}))
    return start


def _copy(out: IO[bytes], log: RotatingLog) -> None:
    """The worker's output to stdout and serverless.log, line by line."""
    for line in iter(out.readline, b""):
        with contextlib.suppress(OSError):
            log.write(line)
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
    log.close()


def command_serverless(settings: Settings, args: argparse.Namespace) -> int:
    """``serverless``: run Vast's worker in the foreground (supervisord program)."""
    log = get_logger("vast_sglang_launcher.serverless")
    if not settings.serverless:
        log.info("Vast Serverless is off (SERVERLESS); not starting Vast's worker")
        return 0
    env = worker_env(settings, os.environ)
    try:
        python = shlex.split(settings.serverless_python)
    except ValueError as exc:
        raise ConfigError(
            f"LAUNCHER_SERVERLESS_PYTHON cannot be split: {exc}; fix the quoting"
        ) from None
    if not python:
        raise ConfigError("LAUNCHER_SERVERLESS_PYTHON is empty; set it or unset it")
    home = settings.run_dir / "serverless"
    home.mkdir(parents=True, exist_ok=True)
    server_log = settings.log_dir / SERVER_LOG
    spec = worker_spec(settings, str(server_log), str(home / "model.log"))
    spec.update(log_start(home / "start.json", server_log))
    write_atomic(home / "worker.json", json.dumps(spec, indent=1), mode=0o600)
    argv = [*python, pyworker.__file__, str(home / "worker.json")]
    log.info(
        "starting Vast's worker",
        command=shlex.join(argv),
        worker_port=settings.worker_port,
        server=f"{spec['model_server_url']}:{spec['model_server_port']}",
    )
    sys.stdout.flush()
    sys.stderr.flush()
    out_log = RotatingLog(settings.log_dir / LOG_FILE, settings.log_max_bytes, settings.log_backups)
    # Handlers first: a SIGTERM that came before the worker started must still reach it.
    pending: list[int] = []
    running: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if running and running[0].poll() is None:
            running[0].send_signal(signum)
        elif not running:
            pending.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    started = time.monotonic()
    try:
        # cwd: the worker keeps its benchmark result there (`.has_benchmark`).
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot start Vast's worker with {python[0]!r}: {exc.strerror or exc} "
            "(LAUNCHER_SERVERLESS_PYTHON)"
        ) from None
    running.append(child)
    for signum in pending:
        child.send_signal(signum)
    assert child.stdout is not None
    copier = threading.Thread(target=_copy, args=(child.stdout, out_log), daemon=True)
    copier.start()
    rc = child.wait()
    copier.join(5)
    ran = time.monotonic() - started
    if rc == EX_CONFIG:
        log.error("Vast's worker cannot start (see its line above); fix LAUNCHER_SERVERLESS_PYTHON")
        return EX_CONFIG
    if rc != 0 and ran < EARLY:
        log.error(
            f"Vast's worker exited with status {rc} after {ran:.1f} s; retrying in {PAUSE:g} s"
        )
        time.sleep(PAUSE)
    return rc if rc >= 0 else 128 - rc
