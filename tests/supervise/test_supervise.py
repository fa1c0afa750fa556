"""`run` against real processes: the launcher in a subprocess supervising the stand-in server.

Assertions are about what a user sees: exit codes, messages, status.json, processes left
behind (psutil). Times are generous bounds only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil
from conftest import LauncherRig, proc_gone

from vast_sglang_launcher import markers

READY_LINE = "The server is fired up and ready to roll!"


class StateRecorder:
    """Polls status.json in a thread and remembers every state it saw, in order."""

    def __init__(self, rig: LauncherRig) -> None:
        self.rig = rig
        self.states: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            data = self.rig.status()
            state = data.get("state") if data else None
            if state and (not self.states or self.states[-1] != state):
                self.states.append(state)
            time.sleep(0.01)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join()
        return self.states


def test_slow_start_reaches_ready_and_sigterm_leaves_nothing(rig: LauncherRig) -> None:
    rec = StateRecorder(rig)
    launcher = rig.start(STANDIN_BIND_DELAY="1.0", STANDIN_WARMUP="0.6", STANDIN_CHILDREN="2")
    starting = rig.wait_state("starting")
    assert starting["launcher_pid"] == launcher.pid
    assert rig.cli("status").returncode == 1
    ready = rig.wait_state("ready")
    (start,) = rig.starts()
    # Own session and process group, in the workspace, HOME and both model variables set.
    assert start["pid"] == start["pgid"] == start["sid"] == ready["server_pid"]
    assert start["env"]["HOME"] == str(rig.workspace)
    assert start["env"]["cwd"] == str(rig.workspace)
    assert start["env"]["SGLANG_MODEL"] == start["env"]["MODEL_NAME"] == str(rig.model)
    assert ready["argv"][-4:] == ["--host", "127.0.0.1", "--port", str(rig.port)]
    assert ready["ready_at"] and ready["restarts"] == 0
    status = rig.cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "ready" in status.stdout and f"pid {start['pid']}" in status.stdout
    as_json = rig.cli("status", "--json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["state"] == "ready"
    # Server lines pass through unchanged to stdout and to sglang.log.
    log_text = (rig.logs / "sglang.log").read_text()
    for text in (rig.stdout(), log_text):
        assert READY_LINE in text
        assert re.search(r"^\[[0-9: -]+\] Load weight begin\. avail mem=78\.50 GB$", text, re.M)
    assert "server ready" in rig.stderr()  # the launcher's own lines go to stderr

    tree = rig.tree_pids()
    assert len(tree) == 3
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher) == 0
    assert all(proc_gone(p) for p in tree), "server tree left behind"
    assert rig.status()["state"] == "stopped"
    assert rig.cli("status").returncode == 1
    states = rec.stop()
    assert states[:2] == ["starting", "ready"] and states[-1] == "stopped"
    assert "stopping the server" in rig.stderr()  # the state lasts the drain: a sample may miss it


def test_sigterm_during_load_stops_the_tree(rig: LauncherRig) -> None:
    # "at once": not after LAUNCHER_STOP_TIMEOUT (600 s here), and without a SIGKILL
    launcher = rig.start(
        STANDIN_BIND_DELAY="600", STANDIN_CHILDREN="2", LAUNCHER_STOP_TIMEOUT="600"
    )
    rig.wait_starts(1)
    rig.wait_for(lambda: len(rig.starts()[0]["children"]) == 2, "children")
    tree = rig.tree_pids()
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher, timeout=120) == 0
    assert "LAUNCHER_STOP_TIMEOUT" not in rig.stderr()
    assert all(proc_gone(p) for p in tree)
    assert rig.status()["state"] == "stopped"


def test_server_ignoring_sigterm_is_killed_after_stop_timeout(rig: LauncherRig) -> None:
    launcher = rig.start(
        STANDIN_IGNORE_SIGTERM="1", STANDIN_CHILDREN="1", LAUNCHER_STOP_TIMEOUT="1.0"
    )
    rig.wait_state("ready")
    tree = rig.tree_pids()
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher) == 0
    assert all(proc_gone(p) for p in tree)
    # killed once LAUNCHER_STOP_TIMEOUT was spent, as the launcher's line says
    assert "LAUNCHER_STOP_TIMEOUT" in rig.stderr()
    assert "stopping the server" in rig.stderr()
    assert rig.status()["last_exit"] == "killed by SIGKILL"


def test_second_sigint_skips_the_wait(rig: LauncherRig) -> None:
    launcher = rig.start(STANDIN_IGNORE_SIGTERM="1", LAUNCHER_STOP_TIMEOUT="3600")
    rig.wait_state("ready")
    tree = rig.tree_pids()
    launcher.send_signal(signal.SIGINT)
    rig.wait_state("stopping")  # the first one was handled
    launcher.send_signal(signal.SIGINT)
    assert rig.wait_exit(launcher, timeout=120) == 0  # not the hour of LAUNCHER_STOP_TIMEOUT
    assert all(proc_gone(p) for p in tree)


def test_sigkill_of_the_launcher_takes_the_server_down(rig: LauncherRig) -> None:
    launcher = rig.start(STANDIN_CHILDREN="2")
    rig.wait_state("ready")
    tree = rig.tree_pids()
    assert len(tree) == 3
    launcher.send_signal(signal.SIGKILL)
    launcher.wait(60)
    rig.wait_gone(tree)
    # The status file still says ready, but the health check knows better.
    assert rig.status()["state"] == "ready"
    status = rig.cli("status")
    assert status.returncode == 1
    assert "NOT running" in status.stdout
    assert json.loads(rig.cli("status", "--json").stdout)["launcher_alive"] is False


def test_crash_after_ready_restarts_with_growing_delays(rig: LauncherRig) -> None:
    launcher = rig.start(
        STANDIN_CRASH_AFTER="0.4",
        STANDIN_CRASH_MESSAGE="Scheduler hit an exception: boom",
        LAUNCHER_BACKOFF_INITIAL="0.2",
        LAUNCHER_BACKOFF_MAX="5",
    )
    rig.wait_starts(3)
    rig.wait_for(lambda: (rig.status() or {}).get("restarts", 0) >= 2, "two restarts")
    data = rig.status()
    assert data["last_exit"] == "killed by SIGKILL"
    assert "Scheduler hit an exception: boom" in data["last_error"]
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher) == 0
    delays = [float(d) for d in re.findall(r"restarting the server in ([0-9.]+) s", rig.stderr())]
    assert delays[:2] == [0.2, 0.4], rig.stderr()
    # ready for 0.4 s, then the backoff (the delays above): the launcher's lines say so, a
    # sampled status.json could miss either on a loaded machine
    assert "server ready" in rig.stderr()
    assert all(proc_gone(p) for p in rig.tree_pids())


def test_hung_server_is_detected_and_restarted(rig: LauncherRig) -> None:
    launcher = rig.start(
        STANDIN_HANG_AFTER="0.8",
        LAUNCHER_LIVENESS_PERIOD="0.1",
        LAUNCHER_LIVENESS_TIMEOUT="0.3",
        LAUNCHER_LIVENESS_FAILURES="2",
        LAUNCHER_STOP_TIMEOUT="1",
    )
    rig.wait_starts(2)
    rig.wait_for(lambda: (rig.status() or {}).get("restarts", 0) >= 1, "a restart")
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher) == 0
    # unhealthy (a failed probe), then the backoff, as the launcher's lines say (a sampled
    # status.json could miss the short states on a loaded machine)
    err = rig.stderr()
    assert "liveness probe 1/2 failed" in err and "liveness probes in a row" in err
    assert "restarting the server in" in err
    assert all(proc_gone(p) for p in rig.tree_pids())


def _table_without(tmp: Path, option: str) -> Path:
    src = Path(__file__).resolve().parents[2] / "vast_sglang_launcher" / "plan" / "data"
    table = json.loads((src / "server-args-0.5.6.post2.json").read_text())
    table["options"] = [o for o in table["options"] if option not in o["options"]]
    path = tmp / "standin-table.json"
    path.write_text(json.dumps(table))
    return path


def test_bad_flag_exits_78_after_one_try(rig: LauncherRig) -> None:
    # The planner knows --served-model-name; this stand-in's SGLang does not.
    table = _table_without(rig.tmp, "--served-model-name")
    rig.args_file.write_text("--served-model-name demo\n")
    launcher = rig.start(STANDIN_OPTION_TABLE=str(table), LAUNCHER_LOG_FORMAT="json")
    assert rig.wait_exit(launcher) == 78
    assert len(rig.starts()) == 0 or len(rig.starts()) == 1
    assert rig.stderr().count('"server started"') == 1
    events = [json.loads(line) for line in rig.stderr().splitlines() if line.strip()]
    (summary,) = [e for e in events if e["event"] == "giving up"]
    wanted = "unrecognized arguments: --served-model-name demo"
    assert any(wanted in line for line in summary["last_lines"])
    assert "exit status 2" in summary["reason"]
    assert "SGLANG_ARGS" in summary["hint"]
    data = rig.status()
    assert data["state"] == "failed"
    assert data["last_exit"] == "exited with status 2"
    assert rig.cli("status").returncode == 1
    assert "giving up" in (rig.logs / "sglang.log").read_text()


def test_crash_before_ready_gives_up_after_the_configured_tries(rig: LauncherRig) -> None:
    rec = StateRecorder(rig)
    launcher = rig.start(
        STANDIN_BIND_DELAY="30",
        STANDIN_CRASH_AFTER="0.3",
        # a failure a retry may not meet (an out-of-memory before ready is given up at once)
        STANDIN_CRASH_MESSAGE="OSError: [Errno 28] No space left on device",
        LAUNCHER_START_RETRIES="2",
    )
    assert rig.wait_exit(launcher, timeout=30) == 78
    assert len(rig.starts()) == 3
    err = rig.stderr()
    assert "giving up" in err
    assert "3 times in a row" in err
    assert "killed by SIGKILL" in err
    assert "OSError: [Errno 28] No space left on device" in err
    assert "the disk is full" in err  # the hint
    assert err.count("giving up") == 1
    data = rig.status()
    assert data["state"] == "failed" and data["hint"]
    assert rec.stop()[-1] == "failed"
    assert all(proc_gone(p) for p in rig.tree_pids())


def test_sighup_restarts_with_the_args_file_read_again(rig: LauncherRig) -> None:
    rig.args_file.write_text("--served-model-name first\n")
    launcher = rig.start()
    rig.wait_state("ready")
    rig.args_file.write_text("--served-model-name second\n")
    launcher.send_signal(signal.SIGHUP)
    starts = rig.wait_starts(2)
    assert starts[0]["args"]["served_model_name"] == "first"
    assert starts[1]["args"]["served_model_name"] == "second"
    data = rig.wait_for(
        lambda: (s := rig.status()) and s["state"] == "ready" and s["restarts"] == 1 and s,
        "ready again",
    )
    assert data["server_pid"] == starts[1]["pid"]
    assert proc_gone(starts[0]["pid"])
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher) == 0


def test_restart_command(rig: LauncherRig) -> None:
    none = rig.cli("restart")
    assert none.returncode == 1 and "no running launcher" in none.stderr
    launcher = rig.start()
    rig.wait_state("ready")
    done = rig.cli("restart")
    assert done.returncode == 0, done.stderr
    assert str(launcher.pid) in done.stdout
    starts = rig.wait_starts(2)
    rig.wait_for(lambda: (rig.status() or {}).get("server_pid") == starts[1]["pid"], "new pid")
    rig.wait_state("ready")
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher) == 0
    assert all(proc_gone(p) for p in rig.tree_pids())


def test_provisioning_gate_waits_then_releases(rig: LauncherRig) -> None:
    marker = rig.markers / ".provisioning"
    marker.write_text("")  # made by another tool: no owner recorded, so only removal counts
    launcher = rig.start()
    data = rig.wait_state("waiting_provisioning")
    assert str(marker) in data["message"]
    assert rig.starts() == []
    assert rig.cli("status").returncode == 1
    # released by the marker's removal (how fast: test_supervise_parts, with inotify)
    marker.unlink()
    rig.wait_state("starting", timeout=60)
    rig.wait_state("ready")
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher) == 0


def test_provisioning_gate_does_not_wait_for_a_dead_owner(rig: LauncherRig) -> None:
    marker = rig.markers / ".provisioning"
    owner = subprocess.Popen(["sleep", "60"])
    try:
        markers.claim(marker, owner.pid)
        launcher = rig.start()
        rig.wait_state("waiting_provisioning")
        assert rig.starts() == []
    finally:
        owner.kill()
        owner.wait()
    rig.wait_state("ready", timeout=30)
    # Released by the owner's death (it says so), not by a marker that went away.
    assert "provisioning died without finishing" in rig.stderr()
    assert not marker.exists(), "the abandoned marker is cleared for the other services"
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher) == 0


def test_sigterm_while_waiting_for_provisioning_exits_at_once(rig: LauncherRig) -> None:
    (rig.markers / ".provisioning").write_text("")
    launcher = rig.start()
    rig.wait_state("waiting_provisioning")
    launcher.send_signal(signal.SIGTERM)  # the marker never goes: only the signal ends it
    assert rig.wait_exit(launcher, timeout=60) == 0
    assert rig.starts() == []
    assert rig.status()["state"] == "stopped"


def test_occupied_port_is_reported(rig: LauncherRig) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", rig.port))
        sock.listen()
        launcher = rig.start(LAUNCHER_START_RETRIES="1")
        assert rig.wait_exit(launcher) == 78
    assert rig.starts() == []
    err = rig.stderr()
    assert f"port 127.0.0.1:{rig.port} is already in use" in err
    assert f"pid {os.getpid()}" in err
    data = rig.status()
    assert data["state"] == "failed"
    assert "already in use" in data["last_reason"]


def test_no_model_exits_0(rig: LauncherRig) -> None:
    env = {k: v for k, v in rig.env.items() if k != "SGLANG_MODEL"}
    rig.env = env
    launcher = rig.start()
    assert rig.wait_exit(launcher) == 0
    assert "not starting: SGLANG_MODEL is not set" in rig.stderr()
    assert rig.starts() == []


def test_leftover_server_of_an_earlier_launcher_is_stopped(rig: LauncherRig) -> None:
    import subprocess
    import sys

    from conftest import STANDIN

    env = {**rig.env, "STANDIN_BIND_DELAY": "60", "STANDIN_CHILDREN": "1"}
    old = subprocess.Popen(
        [sys.executable, str(STANDIN), "--port", str(rig.port)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        rig.wait_starts(1)
        rig.wait_for(lambda: rig.starts()[0]["children"], "old server's child")
        old_tree = rig.tree_pids()
        rig.run_dir.mkdir()
        record = {
            "pid": old.pid,
            "pgid": old.pid,
            "create_time": psutil.Process(old.pid).create_time(),
            "launcher_pid": 1,
            "argv": [],
        }
        (rig.run_dir / "server.json").write_text(json.dumps(record))
        launcher = rig.start()
        rig.wait_state("ready")
        assert old.wait(10) is not None
        rig.wait_gone(old_tree)
        assert "left over by an earlier launcher" in rig.stderr()
        launcher.send_signal(signal.SIGTERM)
        assert rig.wait_exit(launcher) == 0
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()


def test_second_launcher_on_the_same_run_dir_is_refused(rig: LauncherRig) -> None:
    first = rig.start()
    rig.wait_state("ready")
    second = rig.cli("run")
    assert second.returncode == 78
    assert f"another launcher is already running (pid {first.pid}" in second.stderr
    assert len(rig.starts()) == 1
    assert rig.status()["state"] == "ready"
    first.send_signal(signal.SIGTERM)
    assert rig.wait_exit(first) == 0
    assert not (rig.run_dir / "launcher.pid").exists()


def test_unusable_command_gives_up_at_once(rig: LauncherRig) -> None:
    launcher = rig.start(SGLANG_COMMAND=str(rig.tmp / "no-such-sglang"))
    assert rig.wait_exit(launcher) == 78
    err = rig.stderr()
    assert "cannot execute" in err and "SGLANG_COMMAND" in err
    assert rig.status()["state"] == "failed"


def test_plan_error_exits_78_with_one_line(rig: LauncherRig) -> None:
    rig.args_file.write_text('--served-model-name "unbalanced\n')
    launcher = rig.start()
    assert rig.wait_exit(launcher) == 78
    assert "balance the quotes" in rig.stderr()
    assert "Traceback" not in rig.stderr()
    assert rig.status()["state"] == "failed"
    assert rig.starts() == []
    # The one give-up line in sglang.log (what Vast's serverless worker reports as the error).
    gave_up = [
        line
        for line in (rig.logs / "sglang.log").read_text().splitlines()
        if line.startswith("[vast-sglang-launcher] giving up: ")
    ]
    assert len(gave_up) == 1 and "balance the quotes" in gave_up[0]


def test_sighup_with_a_broken_args_file_keeps_the_server(rig: LauncherRig) -> None:
    launcher = rig.start()
    first = rig.wait_state("ready")
    rig.args_file.write_text('--served-model-name "unbalanced\n')
    launcher.send_signal(signal.SIGHUP)
    rig.wait_for(lambda: "restart refused" in rig.stderr(), "the refusal")
    data = rig.status()  # refused: the launcher keeps the server, nothing more to wait for
    assert data["state"] == "ready" and data["server_pid"] == first["server_pid"]
    assert len(rig.starts()) == 1
    rig.args_file.write_text("--served-model-name fixed\n")
    assert rig.cli("restart").returncode == 0
    starts = rig.wait_starts(2)
    assert starts[1]["args"]["served_model_name"] == "fixed"
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher) == 0


def test_secret_options_are_masked_in_the_launchers_outputs(rig: LauncherRig) -> None:
    """Issue 11: `--api-key` reaches the server, but not the launcher's log line, status.json
    (0600), `status`, nor the server's own `server_args=ServerArgs(...)` line as the launcher
    passes it on to sglang.log and stdout; server.json, which keeps the real argv, is 0600."""
    repo = str(Path(__file__).resolve().parents[2])
    rig.args_file.write_text("--api-key sk-run-secret-1\n")
    launcher = rig.start(PYTHONPATH=repo)
    ready = rig.wait_state("ready")
    (start,) = rig.starts()
    assert "sk-run-secret-1" in start["argv"]  # the server got the real value
    assert "--api-key" in ready["argv"] and "***" in ready["argv"]
    assert (rig.run_dir / "status.json").stat().st_mode & 0o777 == 0o600
    assert "run-secret" not in (rig.run_dir / "status.json").read_text()
    assert (rig.run_dir / "server.json").stat().st_mode & 0o777 == 0o600
    server_log = (rig.logs / "sglang.log").read_text()
    assert "server_args=ServerArgs(" in server_log and "api_key='***'" in server_log
    assert "run-secret" not in server_log
    for args in (("status",), ("status", "--json")):
        shown = rig.cli(*args, PYTHONPATH=repo)
        assert shown.returncode == 0 and "--api-key" in shown.stdout
        assert "run-secret" not in shown.stdout + shown.stderr
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher) == 0
    started = [line for line in rig.stderr().splitlines() if "server started" in line]
    assert len(started) == 1 and "--api-key" in started[0] and "***" in started[0]
    assert "run-secret" not in rig.stderr()
    assert "server_args=ServerArgs(" in rig.stdout() and "run-secret" not in rig.stdout()
