"""The directories a command writes: created, and checked writable, before it starts (the one
place the settings meet the filesystem; `cli` calls it right after loading the settings)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError
from .settings import Settings, env_name


def in_container(root: Path = Path("/")) -> bool:
    """True inside a Docker (/.dockerenv) or Podman (/run/.containerenv) container."""
    return (root / ".dockerenv").exists() or (root / "run" / ".containerenv").exists()


def require_writable_dirs(settings: Settings, *fields: str, container: bool | None = None) -> None:
    """Create each directory setting in ``fields`` and check that it can be written.

    Outside a container the defaults (/run/..., /var/log/portal, /workspace, /) need root: a
    first try by hand then stops here with one line naming every variable to set (exit 78)
    instead of failing half-way. Even as root, outside a container (`container`, default
    `in_container()`) a missing directory that is the image's default is not created: the
    line names it instead, so that a try on one's own machine leaves nothing behind.
    """
    if not (in_container() if container is None else container):
        missing = [
            f"{env_name(f)}={getattr(settings, f)}"
            for f in fields
            if f not in settings.model_fields_set and not Path(getattr(settings, f)).exists()
        ]
        if missing:
            many = len(missing) > 1
            names = " and ".join(m.split("=", 1)[0] for m in missing)
            raise ConfigError(
                f"this is not a container, and {', '.join(missing)} (the image's "
                f"default{'s' if many else ''}) do{'' if many else 'es'} not exist: the "
                "launcher creates the image's directories only in a container; set "
                f'{names} to {"directories" if many else "a directory"} of yours (see "Try '
                f'it without a GPU" in README.md), or create {"them" if many else "it"}'
            )
    failed: list[tuple[str, Path, str]] = []
    for field in fields:
        path: Path = getattr(settings, field)
        try:
            path.mkdir(parents=True, exist_ok=True)
            if not os.access(path, os.W_OK | os.X_OK):
                failed.append((env_name(field), path, "Permission denied"))
        except OSError as exc:
            failed.append((env_name(field), path, exc.strerror or str(exc)))
    if not failed:
        return
    where = '(outside a container, see "Try it without a GPU" in README.md)'
    if len(failed) == 1:
        var, path, problem = failed[0]
        raise ConfigError(
            f"{var}={path} cannot be used ({problem}): set {var} to a directory you can "
            f"write {where}"
        )
    listed = ", ".join(f"{var}={path} ({problem})" for var, path, problem in failed)
    names = ", ".join(var for var, _, _ in failed)
    raise ConfigError(f"cannot use {listed}: set {names} to directories you can write {where}")
