"""`edge`: write the Caddyfile and the Instance Portal's list, then exec Caddy."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..errors import ConfigError
from ..files import write_atomic
from ..logs import get_logger
from ..settings import Settings
from .caddyfile import edge_warnings, parse_caddy_version, proxied_entries, render_caddyfile
from .portal import link_entries, portal_entries, portal_yaml_text

SERVERLESS_PAUSE = 3.0
"""Seconds `edge` waits before its exit 0 in serverless mode: longer than caddy.conf's
startsecs (2), so supervisord records EXITED rather than a failed start (Vast's
`exit_serverless.sh` sleeps for the same reason)."""

log = get_logger("edge")


def caddyfile_path(settings: Settings) -> Path:
    return settings.run_dir / "Caddyfile"


def caddy_environment(settings: Settings, environ: dict[str, str]) -> dict[str, str]:
    """Caddy's whole environment: only what its configuration needs. Its storage, autosaved
    config and HOME go under LAUNCHER_RUN_DIR; nothing else of the launcher's environment
    (tokens, PORTAL_CONFIG, ...) is passed, so no placeholder could read it."""
    base = settings.run_dir / "caddy"
    env = {
        "PATH": environ.get("PATH") or os.defpath,
        "HOME": str(base),
        "XDG_DATA_HOME": str(base / "data"),
        "XDG_CONFIG_HOME": str(base / "config"),
    }
    for key in ("TZ", "LANG", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        if environ.get(key):
            env[key] = environ[key]
    return env


# --- the command ---------------------------------------------------------------------------


def caddy_version(caddy: str | None) -> tuple[int, int, int] | None:
    """The version `caddy version` prints (the Caddyfile's syntax depends on it); None when
    there is no Caddy or it does not answer."""
    if caddy is None:
        return None
    try:
        done = subprocess.run(
            [caddy, "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_caddy_version(done.stdout) if done.returncode == 0 else None


def command_edge(settings: Settings, args: argparse.Namespace) -> int:
    entries = portal_entries(settings)
    caddy = shutil.which(settings.caddy_bin)
    text = render_caddyfile(settings, entries, caddy_version(caddy))
    if settings.serverless and not args.print:
        # Vast's image stops Caddy (and the portal, Jupyter ...) in serverless mode
        # (vast-ai/base-image `opt/supervisor-scripts/caddy.sh` sources
        # `utils/exit_serverless.sh`): clients reach the server through Vast's worker on
        # WORKER_PORT, which checks the autoscaler's signature on every request.
        log.info("serverless mode (SERVERLESS): not starting the auth proxy")
        sys.stdout.flush()
        time.sleep(SERVERLESS_PAUSE)
        return 0
    if args.print:
        sys.stdout.write(text)
        return 0

    if caddy is None:
        raise ConfigError(
            f"LAUNCHER_CADDY_BIN={settings.caddy_bin!r} is not an executable on PATH; "
            "install Caddy or point LAUNCHER_CADDY_BIN at it"
        )
    if settings.enable_https:
        for var, path in (
            ("LAUNCHER_TLS_CERT", settings.tls_cert),
            ("LAUNCHER_TLS_KEY", settings.tls_key),
        ):
            if not os.access(path, os.R_OK):
                raise ConfigError(
                    f"ENABLE_HTTPS is true but {var}={str(path)!r} cannot be read; provide "
                    f"the file, point {var} at it, or set ENABLE_HTTPS=false"
                )
    for warning in edge_warnings(settings, entries):
        log.warning(warning)

    try:
        write_atomic(settings.portal_yaml, portal_yaml_text(entries), 0o644)
    except OSError as exc:
        log.warning("cannot write the Instance Portal's application list", error=str(exc))
    config = caddyfile_path(settings)
    write_atomic(config, text, 0o600)
    env = caddy_environment(settings, dict(os.environ))
    for key in ("XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        Path(env[key]).mkdir(mode=0o700, parents=True, exist_ok=True)

    sites = proxied_entries(entries)
    log.info(
        "starting the auth proxy",
        caddy=caddy,
        config=str(config),
        ports={e.external: e.internal for e in sites},
        links={e.name: e.external for e in link_entries(entries)},
        auth=settings.enable_auth,
        https=settings.enable_https,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [caddy, "run", "--config", str(config), "--adapter", "caddyfile"]
    os.execve(caddy, argv, env)  # noqa: S606 - the proxy replaces this process
