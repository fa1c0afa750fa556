"""status.json and the `status` command (a Docker HEALTHCHECK: exit 0 only when ready)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from vast_sglang_launcher.supervise.status import STATES, StatusFile, healthy, read_status, render


def _cli(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAUNCHER_RUN_DIR": str(run_dir)}
    return subprocess.run(
        [sys.executable, "-m", "vast_sglang_launcher", "status", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _write(run_dir: Path, state: str, pid: int | None = None) -> StatusFile:
    me = psutil.Process(pid or os.getpid())
    status = StatusFile(
        run_dir / "status.json", launcher_pid=me.pid, launcher_started=me.create_time()
    )
    status.update(state=state, server_pid=4242, argv=["sglang", "serve"], restarts=2)
    return status


def test_update_writes_atomically_and_tracks_since(tmp_path: Path) -> None:
    status = _write(tmp_path / "run", "starting")
    first = read_status(tmp_path / "run" / "status.json")
    assert first is not None and first["state"] == "starting" and first["since"]
    status.update(message="still loading")
    assert read_status(status.path)["since"] == first["since"]  # type: ignore[index]
    status.update(state="ready")
    data = read_status(status.path)
    assert data is not None and data["state"] == "ready"
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["status.json"]  # no tmp left


def test_unknown_state_is_a_bug(tmp_path: Path) -> None:
    with pytest.raises(AssertionError):
        StatusFile(tmp_path / "s.json").update(state="exploded")


def test_unwritable_status_is_remembered_not_raised(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    status = StatusFile(tmp_path / "file" / "status.json")
    status.update(state="ready")
    assert status.error and "cannot write" in status.error


@pytest.mark.parametrize("state", STATES)
def test_only_ready_with_a_live_launcher_is_healthy(tmp_path: Path, state: str) -> None:
    status = _write(tmp_path, state)
    assert healthy(status.data) is (state == "ready")
    result = _cli(tmp_path)
    assert result.returncode == (0 if state == "ready" else 1), result.stdout + result.stderr
    assert f"SGLang server: {state}" in result.stdout
    as_json = _cli(tmp_path, "--json")
    assert as_json.returncode == result.returncode
    data = json.loads(as_json.stdout)
    assert data["state"] == state and data["launcher_alive"] is True
    assert data["server_pid"] == 4242 and data["restarts"] == 2


def test_dead_launcher_is_unhealthy_even_when_ready(tmp_path: Path) -> None:
    status = _write(tmp_path, "ready")
    status.update(launcher_started=status.data["launcher_started"] - 1000)  # pid reused
    result = _cli(tmp_path)
    assert result.returncode == 1
    assert "NOT running" in result.stdout
    assert json.loads(_cli(tmp_path, "--json").stdout)["launcher_alive"] is False


def test_missing_status_file(tmp_path: Path) -> None:
    result = _cli(tmp_path / "nothing")
    assert result.returncode == 1
    assert "no launcher status" in result.stderr
    as_json = _cli(tmp_path / "nothing", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["state"] is None


def test_render_shows_failure_details() -> None:
    text = render(
        {
            "state": "failed",
            "since": "2025-01-01T00:00:00.000+00:00",
            "launcher_pid": 1,
            "last_exit": "exited with status 2",
            "hint": "check SGLANG_ARGS",
            "argv": ["sglang", "serve", "--model-path", "a b"],
            "last_error": ["usage: ...", "error: unrecognized arguments: --x"],
        },
        alive=False,
        now=1735689600.0 + 90,
    )
    assert "SGLang server: failed since 2025-01-01T00:00:00.000+00:00 (1 min 30 s ago)" in text
    assert "exited with status 2" in text and "check SGLANG_ARGS" in text
    assert "sglang serve --model-path 'a b'" in text
    assert "    error: unrecognized arguments: --x" in text


# --- issue 11: secrets in status.json and `status` ------------------------------------------------

SECRET_ARGV = [
    "sglang",
    "serve",
    "--model-path",
    "org/m",
    "--api-key",
    "sk-status-secret",
    "--admin-api-key=adm-status-secret",
]


def test_status_file_is_private_and_masks_secret_options(tmp_path: Path) -> None:
    me = psutil.Process()
    status = StatusFile(
        tmp_path / "status.json", launcher_pid=me.pid, launcher_started=me.create_time()
    )
    status.update(
        state="failed",
        argv=SECRET_ARGV,
        last_error=["server_args=ServerArgs(api_key='sk-status-secret')"],
        message="gave up",
    )
    path = tmp_path / "status.json"
    assert (path.stat().st_mode & 0o777) == 0o600
    text = path.read_text()
    assert "status-secret" not in text
    data = json.loads(text)
    assert data["argv"][4:] == ["--api-key", "***", "--admin-api-key=***"]
    assert data["last_error"] == ["server_args=ServerArgs(api_key='***')"]
    assert status.data["argv"] == SECRET_ARGV  # the launcher itself keeps the real argv
    for args in ((), ("--json",)):
        shown = _cli(tmp_path, *args)
        assert "status-secret" not in shown.stdout + shown.stderr
        assert "--api-key" in shown.stdout


def test_status_masks_a_file_written_before_masking(tmp_path: Path) -> None:
    me = psutil.Process()
    (tmp_path / "status.json").write_text(
        json.dumps(
            {
                "state": "ready",
                "launcher_pid": me.pid,
                "launcher_started": me.create_time(),
                "argv": SECRET_ARGV,
            }
        )
    )
    for args in ((), ("--json",)):
        shown = _cli(tmp_path, *args)
        assert shown.returncode == 0
        assert "status-secret" not in shown.stdout and "--api-key" in shown.stdout
