"""APT_PACKAGES and PIP_PACKAGES: check the lists, find SGLang's Python, install.

A list is split into words like a shell would (quotes allowed) but never reaches a shell:
each word becomes one argument. A word that looks like an option, or that holds shell syntax
(`;`, `|`, `&`, `$`, backquotes, redirections, ...), is refused before anything runs: the
user meant something the launcher will not do. PIP_PACKAGES may use version comparisons
(`numpy<2`, `torch>=2.4,<2.6`): a requirement of that exact form is accepted.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, LauncherError
from ..settings import Settings
from ..words import split_words

_SHELL_CHARS = frozenset(";|&$`<>(){}!*?'\"\\") | frozenset(" \t\r\n")
_SHELL_LEADING = ("#", "~")  # a comment, a home directory: shell syntax at a word's start
# Debian package name, optionally =version, /release or :arch; or a local .deb path.
_APT_WORD = re.compile(r"^[A-Za-z0-9./][A-Za-z0-9+.:~_=/-]*$")
_VERSION_CLAUSE = r"(?:===|==|!=|<=|>=|~=|<|>)[0-9][A-Za-z0-9.*+!_-]*"
_PIP_REQUIREMENT = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"  # project name
    r"(?:\[[A-Za-z0-9._,-]+\])?"  # extras
    rf"{_VERSION_CLAUSE}(?:,{_VERSION_CLAUSE})*$"
)
_PYTHON_NAME = re.compile(r"^python[0-9.]*$")


class PackageError(LauncherError):
    """An install failed or could not be attempted; `tail` holds the tool's last lines."""

    def __init__(self, message: str, tail: list[str] | None = None) -> None:
        super().__init__(message)
        self.tail = tail or []


@dataclass(frozen=True)
class PackageLists:
    """The checked package lists of a first boot."""

    apt: list[str]
    pip: list[str]


def _refuse_option(var: str, word: str, tool: str) -> ConfigError:
    return ConfigError(
        f"{var}: {word!r} looks like an option; {var} takes package names only (no option "
        f"is passed to {tool}): remove {word!r} from {var}"
    )


def _has_shell_syntax(word: str) -> bool:
    return word.startswith(_SHELL_LEADING) or any(c in _SHELL_CHARS for c in word)


def _refuse_shell(var: str, word: str) -> ConfigError:
    chars = "".join(sorted({c for c in word if c in _SHELL_CHARS})) or word[0]
    return ConfigError(
        f"{var}: {word!r} contains shell syntax ({chars!r}); {var} is a space-separated list "
        f"of package names and is never run by a shell: fix {var}"
    )


def parse_apt_packages(value: str, var: str = "APT_PACKAGES") -> list[str]:
    """The Debian packages of APT_PACKAGES; ConfigError for an option or shell syntax."""
    words = split_words(value, var, comments=False)
    for word in words:
        if word.startswith("-"):
            raise _refuse_option(var, word, "apt-get")
        if not _APT_WORD.match(word):
            if _has_shell_syntax(word):
                raise _refuse_shell(var, word)
            raise ConfigError(f"{var}: {word!r} is not a Debian package name: fix {var}")
    return words


def parse_pip_packages(value: str, var: str = "PIP_PACKAGES") -> list[str]:
    """The requirements of PIP_PACKAGES; ConfigError for an option or shell syntax."""
    words = split_words(value, var, comments=False)
    for word in words:
        if word.startswith("-"):
            raise _refuse_option(var, word, "pip")
        if _PIP_REQUIREMENT.match(word):
            continue
        if _has_shell_syntax(word):
            raise _refuse_shell(var, word)
    return words


def check_package_lists(settings: Settings) -> PackageLists:
    """Both lists, checked; nothing is run."""
    return PackageLists(
        apt=parse_apt_packages(settings.apt_packages),
        pip=parse_pip_packages(settings.pip_packages),
    )


# --- the Python that runs SGLang -----------------------------------------------------------


def interpreter_of(script: Path, path: str | None) -> Path | None:
    """The Python a script's shebang runs (`#!/venv/bin/python`, `#!/usr/bin/env python3`,
    or pip's `#!/bin/sh` + `'''exec' /long/path/python` form); None when it names none."""
    try:
        with script.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    lines = head.decode("utf-8", errors="replace").splitlines()
    words = lines[0][2:].split()
    if not words:
        return None
    program = Path(words[0]).name
    if program == "env":
        names = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        found = shutil.which(names[0], path=path) if names else None
        return Path(found) if found else None
    if _PYTHON_NAME.match(program):
        return Path(words[0])
    if program in ("sh", "bash") and len(lines) > 1:
        try:
            exec_words = shlex.split(lines[1])
        except ValueError:
            return None
        if len(exec_words) >= 2 and exec_words[0] == "exec":
            return Path(exec_words[1])
    return None


def pip_python(settings: Settings, env: Mapping[str, str]) -> Path:
    """The Python that PIP_PACKAGES go into: LAUNCHER_PIP_PYTHON, else the interpreter of
    SGLANG_COMMAND (`python3 -m ...`: that python; `sglang serve`: the script's shebang)."""
    path = env.get("PATH", os.defpath)
    if settings.pip_python is not None:
        chosen = settings.pip_python
        if not (chosen.is_file() and os.access(chosen, os.X_OK)):
            raise PackageError(
                f"LAUNCHER_PIP_PYTHON={chosen} is not an executable file; fix or unset "
                "LAUNCHER_PIP_PYTHON"
            )
        return chosen
    argv = settings.sglang_command_words
    if not argv:
        raise PackageError("SGLANG_COMMAND is empty; set LAUNCHER_PIP_PYTHON for PIP_PACKAGES")
    found = shutil.which(argv[0], path=path)
    if found is None:
        raise PackageError(
            f"cannot find the Python that runs SGLang: {argv[0]!r} (from SGLANG_COMMAND) is "
            "not on PATH; set LAUNCHER_PIP_PYTHON to that Python"
        )
    if _PYTHON_NAME.match(Path(argv[0]).name):
        return Path(found)
    python = interpreter_of(Path(found), path)
    if python is None:
        raise PackageError(
            f"cannot tell which Python runs {found} (from SGLANG_COMMAND): it has no Python "
            "shebang; set LAUNCHER_PIP_PYTHON to that Python"
        )
    return python


# --- PEP 668: a Python that its distribution manages -----------------------------------------

# What pip itself checks before it installs (pip/_internal/utils/misc.py
# check_externally_managed, pip 23.0 and later): outside a virtualenv (running_under_virtualenv:
# sys.prefix differs from sys.base_prefix, or the old sys.real_prefix), a file
# EXTERNALLY-MANAGED in sysconfig's "stdlib" directory refuses the install.
_MARKER_PROBE = (
    "import json, sys, sysconfig; print(json.dumps({'venv': sys.prefix != getattr(sys, "
    "'base_prefix', sys.prefix) or hasattr(sys, 'real_prefix'), 'stdlib': "
    "sysconfig.get_path('stdlib')}))"
)


def externally_managed(python: Path, env: Mapping[str, str]) -> Path | None:
    """The EXTERNALLY-MANAGED marker that makes pip refuse to install into ``python`` (PEP
    668), or None (a venv, no marker, or a Python that cannot be asked: pip then decides)."""
    try:
        done = subprocess.run(
            [str(python), "-I", "-c", _MARKER_PROBE],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        if answer["venv"]:
            return None
        marker = Path(answer["stdlib"]) / "EXTERNALLY-MANAGED"
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError, KeyError, TypeError):
        return None
    return marker if marker.is_file() else None


BREAK_SYSTEM_PACKAGES = "PIP_BREAK_SYSTEM_PACKAGES"
"""pip's --break-system-packages as a variable: what Vast's images set (vast-ai/base-image
Dockerfile and external/sglang/Dockerfile: ``ENV PIP_BREAK_SYSTEM_PACKAGES=1``) so that
installs go into the image's own Python; a pip older than the option ignores it."""


# --- the commands --------------------------------------------------------------------------


def apt_commands(apt_get: str, packages: list[str], *, update: bool) -> list[list[str]]:
    """`apt-get update` (unless skipped) then the install."""
    install = [apt_get, "install", "-y", "--no-install-recommends", *packages]
    return [[apt_get, "update"], install] if update else [install]


def pip_command(
    python: Path, packages: list[str], *, uv: str | None, break_system_packages: bool = False
) -> list[str]:
    """`uv pip install --python PY` when uv is present, else `PY -m pip install`.

    ``break_system_packages``: PY carries the PEP 668 marker. pip is told so by the
    environment (BREAK_SYSTEM_PACKAGES, set by the caller); uv, which does not read pip's
    variables, by its flag, as Vast's provisioner passes it for the system Python
    (vast-ai/base-image ``instance-tools/lib/provisioner/installers/pip.py``)."""
    if uv is not None:
        flag = ["--break-system-packages"] if break_system_packages else []
        return [uv, "pip", "install", "--python", str(python), *flag, *packages]
    return [str(python), "-m", "pip", "install", *packages]
