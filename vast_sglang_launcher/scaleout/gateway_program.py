"""Gateway mode: `gateway`, the supervisord program that runs SGLang's gateway (smg, the
Shepherd Model Gateway: `smg launch`; or `sglang-router`, its predecessor) in this image when
LAUNCHER_RUN_GATEWAY is true.

The gateway listens on 127.0.0.1:LAUNCHER_GATEWAY_PORT; the auth edge publishes it (8010 by
default, see `edge.portal.default_portal_config`), so every client and every registering
worker must carry this instance's token, exactly as for the SGLang API. The gateway gets no
`--api-key` of its own: with one it would ask clients for that key too, and without one it
sends each worker's registered `api_key` to that worker (checked on smg 1.13.0 and
sglang-router 0.3.2). Static workers (LAUNCHER_GATEWAY_WORKERS) go to `--worker-urls`; workers
join at run time with `POST /workers` (worker mode, `join`). `--health-check-timeout-secs`
(both gateways; 5 s by default) is raised to what SGLang's `/health` may take, as `join`
does per worker; LAUNCHER_GATEWAY_ARGS come last, so a user's value wins (argparse).

The router runs as a child in the foreground: SIGTERM/SIGINT are passed on, its exit status
is ours. When it refuses its options (argparse's exit 2) the command exits 78, which
supervisord treats as final; other early failures wait a little first, so a crash loop
is never a tight loop. With LAUNCHER_RUN_GATEWAY false it exits 0 at once.
"""

from __future__ import annotations

import argparse
import re
import shlex
import signal
import subprocess
import sys
import time
from types import FrameType

from ..errors import EX_CONFIG, ConfigError
from ..logs import get_logger
from ..settings import Settings
from .join import SGLANG_HEALTH_TIMEOUT, check_url

EARLY = 60.0
"""A router that ends within this many seconds of its start failed to start (its Python
start alone, importing sglang_router, took over 10 s on a loaded 2-core machine)."""
PAUSE = 5.0
"""Seconds to wait before exiting after an early failure (supervisord restarts us)."""


def static_workers(settings: Settings) -> list[str]:
    return [
        check_url(url, "LAUNCHER_GATEWAY_WORKERS")
        for url in re.split(r"[\s,]+", settings.gateway_workers.strip())
        if url
    ]


def gateway_argv(settings: Settings) -> list[str]:
    """The router's command line (pure; ConfigError for a bad setting)."""
    try:
        command = shlex.split(settings.gateway_command)
        extra = shlex.split(settings.gateway_args)
    except ValueError as exc:
        raise ConfigError(
            f"LAUNCHER_GATEWAY_COMMAND or LAUNCHER_GATEWAY_ARGS cannot be split: {exc}; "
            "fix the quoting"
        ) from None
    if not command:
        raise ConfigError("LAUNCHER_GATEWAY_COMMAND is empty; set it or unset it")
    argv = [*command, "--host", "127.0.0.1", "--port", str(settings.gateway_port)]
    argv += ["--health-check-timeout-secs", str(SGLANG_HEALTH_TIMEOUT + 5)]
    workers = static_workers(settings)
    if workers:
        argv += ["--worker-urls", *workers]
    return argv + extra


def command_gateway(settings: Settings, args: argparse.Namespace) -> int:
    """``gateway``: run the gateway in the foreground (supervisord program `gateway`)."""
    log = get_logger("vast_sglang_launcher.gateway")
    if not settings.run_gateway:
        log.info("gateway mode is off (LAUNCHER_RUN_GATEWAY); not starting the gateway")
        return 0
    argv = gateway_argv(settings)
    log.info("starting the gateway", command=shlex.join(argv))
    sys.stdout.flush()
    started = time.monotonic()
    try:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise ConfigError(
            f"cannot start the gateway {argv[0]!r}: {exc.strerror or exc} "
            "(LAUNCHER_GATEWAY_COMMAND; is smg installed?)"
        ) from None

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    rc = child.wait()
    ran = time.monotonic() - started
    if rc == 2 and ran < EARLY:
        log.error(
            "the gateway refused its options (exit 2); fix LAUNCHER_GATEWAY_ARGS or "
            "LAUNCHER_GATEWAY_WORKERS, then `supervisorctl start services:gateway`"
        )
        return EX_CONFIG
    if rc != 0 and ran < EARLY:
        log.error(f"the gateway exited with status {rc} after {ran:.1f} s; retrying in {PAUSE:g} s")
        time.sleep(PAUSE)
    return rc if rc >= 0 else 128 - rc
