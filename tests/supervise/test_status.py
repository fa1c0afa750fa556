"""status.json and the `status` command (a Docker HEALTHCHECK: exit 0 only when ready)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import run_launcher, wait_for

from vast_sglang_launcher.pids import started_at
from vast_sglang_launcher.settings import Settings, env_name
from vast_sglang_launcher.supervise.status import (
    RUN_DIR_DEFAULT,
    RUN_DIR_VARIABLE,
    STATES,
    read_status,
    render,
    status_path,
)
from vast_sglang_launcher.supervise.status_writer import StatusFile
from vast_sglang_launcher.timestamps import iso, parse_iso


def _cli(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAUNCHER_RUN_DIR": str(run_dir)}
    return run_launcher("status", *args, env=env)


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
    # no tmp left; the serving marker (the edge proxies to SGLang) follows the state
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["serving", "status.json"]
    status.update(state="backoff")
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["status.json"]


def test_the_serving_marker_follows_the_state(tmp_path: Path) -> None:
    status = _write(tmp_path / "run", "starting")
    marker = tmp_path / "run" / "serving"
    seen = []
    for state in ("starting", "ready", "unhealthy", "ready", "stopping", "stopped"):
        status.update(state=state, **({"ready_at": "x"} if state == "ready" else {}))
        seen.append(marker.exists())
    assert seen == [False, True, True, True, True, False]
    # a stop before the server was ever ready: not serving
    status.update(state="starting", ready_at=None)
    status.update(state="stopping")
    assert not marker.exists()


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
    _write(tmp_path, state)
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


def test_run_dir_is_read_as_the_settings_class_reads_it() -> None:
    assert env_name("run_dir") == RUN_DIR_VARIABLE
    assert Path(RUN_DIR_DEFAULT) == Settings.model_fields["run_dir"].default
    assert status_path({}) == f"{RUN_DIR_DEFAULT}/status.json"
    assert status_path({"LAUNCHER_RUN_DIR": " "}) == f"{RUN_DIR_DEFAULT}/status.json"
    assert status_path({"LAUNCHER_RUN_DIR": "/x"}) == "/x/status.json"


def test_process_start_time_is_psutils(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for pid in (os.getpid(), child.pid):
            started = started_at(pid)
            assert started is not None
            assert abs(started - psutil.Process(pid).create_time()) < 0.01
        child.kill()  # not waited for yet: a zombie, which is not a live launcher
        wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, "a zombie")
        assert started_at(child.pid) is None
    finally:
        child.kill()
        child.wait()
    assert started_at(child.pid) is None


BLOCKED = ("pydantic", "pydantic_settings", "pydantic_core", "structlog", "httpx", "psutil")


@pytest.mark.parametrize("args", [(), ("--json",)])
def test_status_needs_only_the_standard_library(tmp_path: Path, args: tuple[str, ...]) -> None:
    """`status` is the HEALTHCHECK: it must not pay for pydantic, structlog, httpx or psutil."""
    _write(tmp_path, "ready")
    blocked = "; ".join(f"sys.modules[{m!r}] = None" for m in BLOCKED)
    code = (
        f"import runpy, sys; {blocked}; sys.argv = ['x', 'status', *{list(args)!r}]\n"
        "try:\n"
        "    runpy.run_module('vast_sglang_launcher', run_name='__main__')\n"
        "finally:\n"
        "    loaded = [m for m in sys.modules if m.startswith('vast_sglang_launcher')]\n"
        "    print(sorted(loaded), file=sys.stderr)\n"
    )
    env = {**os.environ, "LAUNCHER_RUN_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "ready" in proc.stdout
    modules = proc.stderr.strip()
    assert "settings" not in modules and "logs" not in modules and "process" not in modules
    assert "status_writer" not in modules


def test_times_read_back_as_datetime_reads_them() -> None:
    import datetime
    import random

    rng = random.Random(14)
    for _ in range(2000):
        ts = rng.uniform(0, 4e9)
        minutes = rng.choice([0, 60, -300, 330, 345, -570, 840, -720])
        tz = datetime.timezone(datetime.timedelta(minutes=minutes))
        text = datetime.datetime.fromtimestamp(ts, tz).isoformat(timespec="milliseconds")
        expected = datetime.datetime.fromisoformat(text).timestamp()
        assert parse_iso(text) == pytest.approx(expected, abs=1e-6), text
    now = time.time()
    assert parse_iso(iso(now)) == pytest.approx(now, abs=0.001)
    assert parse_iso("2025-01-31T14:02:11") is not None  # another form: datetime's parser
    assert parse_iso("yesterday") is None and parse_iso(None) is None


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
