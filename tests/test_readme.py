"""The README's commands, run as written: the two commands and "Try it without a GPU"."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import free_port, processes_naming

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _blocks(text: str) -> list[str]:
    return re.findall(r"^ *```[a-z]*\n(.*?)^ *```$", text, re.M | re.S)


def test_the_two_commands_start_from_a_venv_and_ci_runs_the_test_command() -> None:
    blocks = [textwrap.dedent(b) for b in _blocks(_section("The two commands"))]
    assert blocks[0].strip().splitlines() == [
        "apt-get update && apt-get install -y python3-venv",
        "python3 -m venv .venv && . .venv/bin/activate",
    ]
    test_command = blocks[-1].strip()
    assert test_command == "python3 -m pytest -q -n 4 --dist loadgroup"
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci[-1] == test_command


def test_try_it_without_a_gpu_runs_as_written(tmp_path: Path) -> None:
    """The section's bash block, run by bash: ready, a crash, a restart, a clean stop."""
    recipe = _blocks(_section("Try it without a GPU"))[0]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "vast-sglang-launcher"  # what `pip install` puts on PATH
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -m vast_sglang_launcher "$@"\n')
    launcher.chmod(0o755)
    (bin_dir / "python3").symlink_to(sys.executable)
    env = {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', os.defpath)}",
        "PYTHONPATH": str(ROOT),
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp_path),  # the recipe's mktemp -d
        "LAUNCHER_SERVER_PORT": str(free_port()),  # 18000 may be taken here
        # long enough that the recipe's next `status` sees the backoff on a loaded machine
        # (two launcher starts); the README's own run has the default, 2 s
        "LAUNCHER_BACKOFF_INITIAL": "15",
    }
    proc = subprocess.Popen(
        ["bash", "-c", recipe],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out + err
    assert err == ""
    assert "SGLang server: ready since" in out
    assert "restarting in" in out and "killed by SIGKILL" in out
    assert re.search(r"^  restarts +1 \(1 in the last hour\)$", out, re.M), out
    assert out.rstrip().endswith("launcher exit status: 0")
    # this recipe's processes, by the tmp dir in their environment (another session's
    # stand-in may have the same port: each session has a network namespace of its own)
    assert not processes_naming(tmp_path), "the stand-in outlived the recipe"
    workdir = next(p for p in tmp_path.iterdir() if p.name.startswith("tmp."))
    assert (
        "The server is fired up and ready to roll!" in (workdir / "log" / "sglang.log").read_text()
    )


def test_the_contents_list_every_section_in_order() -> None:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    headings = [h for h in re.findall(r"^## (.+)$", text, re.M) if h != "Contents"]
    contents = text.split("## Contents", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\d+\. \[(.+?)\]\(#", contents, re.M) == headings
