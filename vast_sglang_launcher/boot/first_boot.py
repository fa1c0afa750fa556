"""Boot steps before the services start, and the `provision` command that reruns them.

Order on every boot: the hotfix script (every boot, failure logged), the first boot (APT_PACKAGES
and PIP_PACKAGES, once: marker `.first_boot_complete`, written only when every install
succeeded), then provisioning (see provisioning.py). A failed step never stops the boot.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
from collections.abc import Callable, Mapping

from .. import markers
from ..coldstart.prefetch import run_foreground as run_prefetch
from ..edge.portal import default_portal_config
from ..logs import get_logger
from ..redact import Redactor, redactor_for
from ..rotating_log import RotatingLog
from ..settings import Settings
from .interrupts import Interrupted, signals_raise
from .packages import (
    BREAK_SYSTEM_PACKAGES,
    PackageError,
    PackageLists,
    apt_commands,
    check_package_lists,
    externally_managed,
    pip_command,
    pip_python,
)
from .provisioning import run_provisioning
from .scripts import ScriptError, run_script
from .steps import StepResult
from .supervisord_env import supervisor_environment
from .tee import open_log, run_tee

log = get_logger(__name__)

HOTFIX = "hotfix"
FIRST_BOOT = "first boot"
FIRST_BOOT_LOG = "first_boot.log"


def service_env(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of boot scripts, installers and every service: the container's, with
    SGLANG_MODEL and MODEL_NAME both set to the model, HOME=WORKSPACE, PORTAL_CONFIG
    defaulted to publish the SGLang API beside the Instance Portal and Jupyter, and the
    variables that the supervisord configuration expands (LAUNCHER_PYTHON, ...)."""
    env = dict(environ)
    env.update(supervisor_environment(settings))
    env["PORTAL_CONFIG"] = settings.portal_config or default_portal_config(settings)
    if settings.model:
        env["SGLANG_MODEL"] = env["MODEL_NAME"] = settings.model
    env["WORKSPACE"] = str(settings.workspace)
    env["HOME"] = str(settings.workspace)
    return env


def prepare_dirs(settings: Settings) -> None:
    """Create the workspace, the log and the run directory (supervisord's socket and pid
    file go there); a failure is only a warning."""
    for path in (settings.workspace, settings.log_dir, settings.run_dir):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("cannot create directory", path=str(path), error=str(exc))


# --- hotfix --------------------------------------------------------------------------------


def run_hotfix(settings: Settings, env: Mapping[str, str]) -> StepResult:
    """Run HOTFIX_SCRIPT (every boot; the script decides whether it has work to do)."""
    if not settings.hotfix_script:
        return StepResult(HOTFIX, "skipped", "HOTFIX_SCRIPT is not set")
    try:
        done = run_script("HOTFIX_SCRIPT", settings.hotfix_script, "hotfix", settings, env)
    except ScriptError as exc:
        log.error("hotfix failed; boot continues", error=str(exc))
        return StepResult(HOTFIX, "failed", str(exc))
    log_path = settings.log_dir / "hotfix.log"
    if done.status != 0:
        log.error("hotfix failed; boot continues", exit_status=done.status, log=str(log_path))
        return StepResult(HOTFIX, "failed", f"exit status {done.status}; see {log_path}")
    log.info("hotfix done")
    return StepResult(HOTFIX, "ok")


# --- first boot ----------------------------------------------------------------------------


def _run_installer(
    argv: list[str],
    what: str,
    env: Mapping[str, str],
    log_file: RotatingLog | None,
    redact: Redactor,
) -> None:
    log.info(f"first boot: running {what}", command=redact(shlex.join(argv)))
    try:
        done = run_tee(argv, env=env, log_file=log_file)
    except OSError as exc:
        raise PackageError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    if done.status != 0:
        tail = [redact(line) for line in done.tail]
        last = next((line.strip() for line in reversed(tail) if line.strip()), "")
        raise PackageError(
            f"{what} failed with exit status {done.status}" + (f": {last}" if last else ""),
            tail,
        )


def _install_apt(
    settings: Settings,
    packages: list[str],
    env: Mapping[str, str],
    log_file: RotatingLog | None,
    redact: Redactor,
) -> None:
    apt_get = shutil.which("apt-get", path=env.get("PATH", os.defpath))
    if apt_get is None:
        raise PackageError("APT_PACKAGES is set but apt-get is not on PATH")
    apt_env = {**env, "DEBIAN_FRONTEND": "noninteractive"}
    update = not settings.marker(markers.LAUNCH).exists()
    if not update:
        log.info(f"first boot: skipping apt-get update ({markers.LAUNCH} exists)")
    for argv in apt_commands(apt_get, packages, update=update):
        _run_installer(argv, f"apt-get {argv[1]}", apt_env, log_file, redact)


def _install_pip(
    settings: Settings,
    packages: list[str],
    env: Mapping[str, str],
    log_file: RotatingLog | None,
    redact: Redactor,
) -> None:
    python = pip_python(settings, env)
    uv = shutil.which("uv", path=env.get("PATH", os.defpath))
    pip_env = dict(env)
    pip_env.setdefault("PIP_ROOT_USER_ACTION", "ignore")
    marker = externally_managed(python, env)
    if marker is not None:
        # SGLang's image installs into its system Python: PIP_PACKAGES belong there too.
        value = pip_env.setdefault(BREAK_SYSTEM_PACKAGES, "1")  # a value of the user's stays
        note = (
            f"first boot: {python} is externally managed (PEP 668 marker {marker}); installing "
            f"PIP_PACKAGES into it anyway, as Vast's images do "
            + ("(uv --break-system-packages)" if uv else f"({BREAK_SYSTEM_PACKAGES}={value})")
        )
        log.info(note)
        if log_file is not None:
            log_file.write(note.encode() + b"\n")
    log.info(
        "first boot: installing PIP_PACKAGES", python=str(python), installer="uv" if uv else "pip"
    )
    argv = pip_command(python, packages, uv=uv, break_system_packages=marker is not None)
    _run_installer(argv, "uv pip install" if uv else "pip install", pip_env, log_file, redact)


def run_first_boot(
    settings: Settings, lists: PackageLists, env: Mapping[str, str], *, force: bool = False
) -> StepResult:
    """Install APT_PACKAGES and PIP_PACKAGES unless `.first_boot_complete` exists (or when
    forced); the marker is written only when every install succeeded."""
    marker = settings.marker(markers.FIRST_BOOT_COMPLETE)
    if marker.exists() and not force:
        return StepResult(FIRST_BOOT, "skipped", f"{marker} exists; --force reruns it")
    redact = redactor_for(settings, *lists.apt, *lists.pip)
    log_file = (
        open_log(settings.log_dir / FIRST_BOOT_LOG, settings.log_max_bytes, settings.log_backups)
        if lists.apt or lists.pip
        else None
    )
    try:
        if lists.apt:
            _install_apt(settings, lists.apt, env, log_file, redact)
        if lists.pip:
            _install_pip(settings, lists.pip, env, log_file, redact)
        markers.write(marker, markers.stamp())
    except PackageError as exc:
        log.error(
            "first boot failed; it is tried again on the next boot",
            error=str(exc),
            last_lines="\n".join(exc.tail),
        )
        return StepResult(FIRST_BOOT, "failed", str(exc))
    except OSError as exc:
        log.error("first boot: cannot write its marker", path=str(marker), error=str(exc))
        return StepResult(FIRST_BOOT, "failed", f"cannot write {marker}: {exc}")
    finally:
        if log_file is not None:
            log_file.close()
    installed = [f"{len(v)} {k}" for k, v in (("apt", lists.apt), ("pip", lists.pip)) if v]
    detail = "installed " + " and ".join(installed) + " package(s)" if installed else ""
    log.info("first boot complete", installed=detail or "nothing to install")
    return StepResult(FIRST_BOOT, "ok", detail)


# --- provision -----------------------------------------------------------------------------


def _prefetch(settings: Settings) -> StepResult | None:
    """The weight download in the foreground (coldstart); None (no line) without a model."""
    done = run_prefetch(settings)
    return StepResult.of("prefetch", *done) if done is not None else None


def command_provision(settings: Settings, args: argparse.Namespace) -> int:
    """`provision`: every boot step in the foreground, then one summary line per step.

    Exit status 1 when a step failed, 128+N when interrupted by signal N.
    """
    lists = check_package_lists(settings)
    force = bool(getattr(args, "force", False))
    env = service_env(settings, os.environ)
    prepare_dirs(settings)
    steps: list[tuple[str, Callable[[], StepResult | None]]] = [
        (HOTFIX, lambda: run_hotfix(settings, env)),
        (FIRST_BOOT, lambda: run_first_boot(settings, lists, env, force=force)),
        ("provisioning", lambda: run_provisioning(settings, env, force=force)),
        ("prefetch", lambda: _prefetch(settings)),
    ]
    results: list[StepResult] = []
    status = 0
    current = HOTFIX
    try:
        with signals_raise():
            for name, step in steps:
                current = name
                result = step()
                if result is not None:
                    results.append(result)
    except Interrupted as exc:
        results.append(StepResult(current, "interrupted", f"by {exc}"))
        status = exc.exit_status
    for result in results:
        print(result.line(), flush=True)
    if status:
        return status
    return 1 if any(r.failed for r in results) else 0
