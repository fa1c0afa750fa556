"""Load phases and the stall watchdog in `run`, read from the stand-in's SGLang lines."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from conftest import LauncherRig

REPO_ROOT = str(Path(__file__).resolve().parents[2])


def test_phases_and_their_durations_are_in_status(rig: LauncherRig) -> None:
    env = {"PYTHONPATH": REPO_ROOT, "STANDIN_BIND_DELAY": "0.3", "STANDIN_CAPTURE": "0.4"}
    launcher = rig.start(**env)
    data = rig.wait_state("ready")
    took = {p["phase"]: p["duration_s"] for p in data["phases"]}
    assert list(took) == [
        "starting",
        "loading_weights",
        "kv_cache",
        "cuda_graph",
        "warmup",
        "ready",
    ]
    # Each phase is timed by when its line arrives: it lasts from its start to the next one's.
    done = {phase: d for phase, d in took.items() if phase != "ready"}  # ready: still on
    assert all(isinstance(d, (int, float)) and d >= 0 for d in done.values()), took
    starts = [datetime.fromisoformat(p["started_at"]) for p in data["phases"]]
    for i, phase in enumerate(data["phases"][:-1]):
        gap = (starts[i + 1] - starts[i]).total_seconds()
        assert abs(phase["duration_s"] - gap) < 0.003, (phase, gap)
    assert data["phase"]["name"] == "ready" and data["phase"]["since"]
    shown = rig.cli("status", **env)
    assert shown.returncode == 0
    assert "phase      ready for " in shown.stdout
    assert "took       starting " in shown.stdout
    assert re.search(r", cuda_graph \d", shown.stdout), shown.stdout
    err = rig.stderr()
    for title in ("loading weights", "allocating the KV cache", "capturing CUDA graphs"):
        assert err.count(f"phase: {title}") == 1
    # A restart keeps the last start's phases and begins a new list.
    rig.cli("restart", **env)
    rig.wait_starts(2)
    data = rig.wait_state("ready")
    assert [p["phase"] for p in data["previous_phases"]][-1] == "ready"
    launcher.terminate()
    assert rig.wait_exit(launcher) == 0


def test_a_silent_start_is_reported_naming_its_phase(rig: LauncherRig) -> None:
    """The stand-in prints "Load weight begin" and is then silent (STANDIN_BIND_DELAY). On a
    loaded machine its own start may already outlast the stall timeout, and that stall is
    reported as "starting the server"; output resets the watchdog (Phases.activity), so the
    silence after the weights line is reported again, naming its phase: wait for that one."""
    launcher = rig.start(
        PYTHONPATH=REPO_ROOT, STANDIN_BIND_DELAY="600", LAUNCHER_STALL_TIMEOUT="0.5"
    )
    line = "startup looks stalled: no server output for"
    phase = "while loading weights (LAUNCHER_STALL_TIMEOUT)"
    rig.wait_for(lambda: phase in rig.stderr(), "the stall warning", timeout=60)
    assert line in rig.stderr()

    def stalled_status() -> dict[str, object] | None:
        data = rig.status()
        return data if data is not None and phase in str(data.get("message")) else None

    data = rig.wait_for(stalled_status, "the stall in the status", timeout=60)
    assert line in data["message"] and data["state"] == "starting"
    assert len(rig.starts()) == 1  # only a warning by default
    launcher.terminate()
    assert rig.wait_exit(launcher) == 0


def test_stall_action_restart_starts_the_server_again(rig: LauncherRig) -> None:
    launcher = rig.start(
        PYTHONPATH=REPO_ROOT,
        STANDIN_BIND_DELAY="30",
        LAUNCHER_STALL_TIMEOUT="0.5",
        LAUNCHER_STALL_ACTION="restart",
    )
    rig.wait_starts(2)
    assert "restarting it (LAUNCHER_STALL_ACTION=restart)" in rig.stderr()
    launcher.terminate()
    assert rig.wait_exit(launcher) == 0


def test_bad_stall_action_is_one_line_and_78(rig: LauncherRig) -> None:
    done = rig.cli("run", PYTHONPATH=REPO_ROOT, LAUNCHER_STALL_ACTION="kill")
    assert done.returncode == 78
    assert done.stderr.count("\n") == 1 and "LAUNCHER_STALL_ACTION='kill'" in done.stderr
