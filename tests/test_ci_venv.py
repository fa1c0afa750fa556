"""`.ci/venv` (what .ci/run makes its venv with) recovers from a half-made venv."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

VENV_SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "venv"
PYTHON3 = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")


def make(venv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_SCRIPT), str(venv)],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def works(venv: Path) -> bool:
    pip = subprocess.run(
        [str(venv / "bin" / "python3"), "-m", "pip", "--version"], capture_output=True
    )
    return (venv / "bin" / "activate").is_file() and pip.returncode == 0


@pytest.fixture
def system_python() -> str:
    """The system python3, which must make venvs here (.ci/run installs python3-venv)."""
    assert PYTHON3 is not None, "no python3 on /usr/local/bin:/usr/bin:/bin"
    done = subprocess.run([PYTHON3, "-c", "import ensurepip"], capture_output=True)
    assert done.returncode == 0, "python3 has no ensurepip: apt-get install python3-venv"
    return PYTHON3


def test_a_half_made_venv_is_made_again(tmp_path: Path, system_python: str) -> None:
    """What a `python3 -m venv .venv` without python3-venv leaves: only the python3 links."""
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("python", "python3"):
        os.symlink(system_python, venv / "bin" / name)
    done = make(venv)
    assert done.returncode == 0, done.stderr
    assert "is not a working venv" in done.stderr
    assert works(venv)


def test_a_working_venv_is_left_as_it_is(tmp_path: Path, system_python: str) -> None:
    venv = tmp_path / ".venv"
    assert make(venv).returncode == 0 and works(venv)
    mark = venv / "kept"
    mark.write_text("")
    done = make(venv)
    assert done.returncode == 0 and done.stderr == ""
    assert mark.exists()
