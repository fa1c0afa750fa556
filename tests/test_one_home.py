"""Helpers that every capability needs live once, at the shared top level (issue 23 item 4):
a second copy would drift (two byte formats, two pid checks with different tolerances)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from vast_sglang_launcher import markers, pids
from vast_sglang_launcher.loopback import reachable_host
from vast_sglang_launcher.units import fmt_bytes

PACKAGE = Path(__file__).resolve().parents[1] / "vast_sglang_launcher"


def _defined() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                found.setdefault(node.name, []).append(str(path.relative_to(PACKAGE)))
    return found


def test_each_shared_helper_is_defined_once_at_the_top_level() -> None:
    defined = _defined()
    assert defined["iso"] == ["timestamps.py"]
    assert defined["parse_iso"] == ["timestamps.py"]
    assert defined["fmt_bytes"] == ["units.py"]
    assert defined["started_at"] == ["pids.py"]
    assert defined["reachable_host"] == ["loopback.py"]
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        name = str(path.relative_to(PACKAGE))
        if name != "loopback.py":
            assert '"0.0.0.0"' not in text and '"::"' not in text, name
        if name != "pids.py":
            assert "/proc/{pid}/stat" not in text and ".create_time() - " not in text, name


def test_wildcards_are_reached_through_loopback() -> None:
    assert reachable_host("0.0.0.0") == reachable_host("") == "127.0.0.1"
    assert reachable_host("::") == "::1"
    assert reachable_host("10.1.2.3") == "10.1.2.3"


def test_bytes_read_the_same_everywhere() -> None:
    assert [fmt_bytes(n) for n in (0, 512, 1536, 3 * 2**30, 5000 * 2**30)] == [
        "0 B",
        "512 B",
        "1.5 KiB",
        "3.0 GiB",
        "5000.0 GiB",
    ]


def test_a_pid_is_the_same_process_only_with_its_start_time() -> None:
    me = pids.started_at(os.getpid())
    assert me is not None and pids.is_running(os.getpid(), me)
    assert pids.is_running(os.getpid(), None)  # no recorded start: any live process
    assert not pids.is_running(os.getpid(), me - 1000)  # a reused pid
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    assert not pids.is_running(child.pid, None) and pids.started_at(0) is None
    # the markers' owner check is this one
    assert markers.is_alive(markers.Owner(os.getpid(), me))
    assert not markers.is_alive(markers.Owner(os.getpid(), me + 1000))
