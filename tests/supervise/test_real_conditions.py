"""The supervisor under real-world conditions (issue 10): a stalled stdout, a full disk, log
growth, SGLang's real failure lines, a /health that hangs during load, a zombie leader,
diagnostics and flapping. Each condition is reproduced with real processes: the SGLang
stand-in, a pipe nobody reads, a tiny tmpfs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import STANDIN, LauncherRig, proc_gone, run_launcher

from vast_sglang_launcher.rotating_log import RotatingLog
from vast_sglang_launcher.settings import load_settings
from vast_sglang_launcher.supervise.run_dir import ServerRecord
from vast_sglang_launcher.supervise.stop_budget import SERVER_EXIT_ALLOWANCE, SGLANG_WATCHDOG_PERIOD


def start_on_pipe(rig: LauncherRig, **env: str) -> tuple[subprocess.Popen[bytes], int]:
    """`run` with stdout and stderr on one pipe (supervisord's redirect_stderr) that nobody
    reads; returns the launcher and the pipe's read end."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        rig.argv("run"),
        env={**rig.env, **env},
        stdin=subprocess.DEVNULL,
        stdout=write_fd,
        stderr=write_fd,
        cwd=rig.tmp,
    )
    os.close(write_fd)
    rig.launchers.append(proc)
    return proc, read_fd


def drain(fd: int, into: bytearray) -> threading.Thread:
    def run() -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            into.extend(chunk)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# --- 1. output back-pressure ------------------------------------------------------------


def test_a_stalled_stdout_blocks_neither_probes_nor_signals(rig: LauncherRig) -> None:
    launcher, read_fd = start_on_pipe(rig, STANDIN_CHATTER="20", STANDIN_CHILDREN="1")
    try:
        # the pipe (64 KiB) is full within a second; the launcher goes on regardless
        rig.wait_state("ready", timeout=30)
        log = rig.logs / "sglang.log"
        size = log.stat().st_size
        rig.wait_for(lambda: log.stat().st_size > size + 200_000, "sglang.log to keep growing")
        assert psutil.Process(launcher.pid).status() != psutil.STATUS_DISK_SLEEP
        # the status moves while stdout is stalled: a crash-free restart on request
        rig.cli("restart")
        rig.wait_starts(2, timeout=30)
        rig.wait_state("ready", timeout=30)
        pids = rig.tree_pids()
        launcher.send_signal(signal.SIGTERM)
        assert rig.wait_exit(launcher, timeout=60) == 0
        rig.wait_gone(pids)
        assert rig.status()["state"] == "stopped"
    finally:
        os.close(read_fd)


def test_dropped_lines_are_counted_once_the_reader_catches_up(rig: LauncherRig) -> None:
    launcher, read_fd = start_on_pipe(rig, STANDIN_CHATTER="20")
    got = bytearray()
    try:
        rig.wait_state("ready", timeout=30)
        log = rig.logs / "sglang.log"
        # more than the relay's 1 MiB queue plus the pipe has been printed meanwhile
        rig.wait_for(lambda: log.stat().st_size > 3_000_000, "3 MB of server output", 60)
        reader = drain(read_fd, got)
        rig.wait_for(lambda: b"of output dropped" in got, "the dropped-lines notice", 30)
        text = got.decode(errors="replace")
        line = next(x for x in text.splitlines() if "of output dropped" in x)
        count = int(line.split("] ", 1)[1].split()[0])
        assert count > 1000, line
        assert "sglang.log" in line
        launcher.send_signal(signal.SIGTERM)
        assert rig.wait_exit(launcher) == 0
        reader.join(10)
        # every line reached the log file, none was cut
        assert log.read_bytes().count(b"Decode batch.") > count
    finally:
        os.close(read_fd)


# --- 3. a full disk -----------------------------------------------------------------------


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> None:
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_a_full_run_dir_is_one_line_and_exit_78(rig: LauncherRig) -> None:
    with tiny_tmpfs(rig.tmp / "full", "64k") as full:
        fill(full)
        done = rig.cli("run", LAUNCHER_RUN_DIR=str(full / "run"))
    assert done.returncode == 78, done.stderr
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, done.stderr
    assert str(full / "run") in lines[0] and "No space left on device" in lines[0]
    assert "bug" not in done.stderr and "Traceback" not in done.stderr
    assert rig.starts() == []


def test_a_full_log_disk_warns_once_and_serving_goes_on(rig: LauncherRig) -> None:
    with tiny_tmpfs(rig.tmp / "logs", "256k"):
        launcher = rig.start(STANDIN_CHATTER="5")
        rig.wait_state("ready", timeout=30)
        rig.wait_for(lambda: "cannot write the server's output" in rig.stderr(), "the warning")
        # the lines still reach stdout, and more of them fail to go to the log file meanwhile
        size = len(rig.stdout())
        rig.wait_for(lambda: len(rig.stdout()) > size + 10_000, "stdout to keep growing")
        assert rig.status()["state"] == "ready"
        err = rig.stderr()
        assert err.count("cannot write the server's output") == 1, err
        assert "No space left on device" in err and "serving goes on" in err
        launcher.send_signal(signal.SIGTERM)
        assert rig.wait_exit(launcher) == 0


# --- 4. rotation ----------------------------------------------------------------------------


def test_sglang_log_is_rotated_by_size(rig: LauncherRig) -> None:
    launcher = rig.start(
        STANDIN_CHATTER="2", LAUNCHER_LOG_MAX_BYTES="8192", LAUNCHER_LOG_BACKUPS="2"
    )
    log = rig.logs / "sglang.log"
    second = rig.logs / "sglang.log.2"
    rig.wait_for(second.exists, "two rotated copies")
    first = second.stat().st_ino
    # one more rotation with two copies already there: the oldest goes, no sglang.log.3
    rig.wait_for(lambda: second.exists() and second.stat().st_ino != first, "a third rotation")
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher) == 0
    assert not (rig.logs / "sglang.log.3").exists()
    for path in (log, rig.logs / "sglang.log.1", rig.logs / "sglang.log.2"):
        assert path.stat().st_size <= 8192
    # whole lines only: every copy ends with a newline
    assert (rig.logs / "sglang.log.1").read_bytes().endswith(b"\n")


def test_rotating_log_keeps_the_newest_backups(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "provisioning.log", max_bytes=100, backups=2)
    log.open()
    for i in range(10):
        log.write(f"{i}".encode() * 60 + b"\n")
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["provisioning.log", "provisioning.log.1", "provisioning.log.2"]
    assert (tmp_path / "provisioning.log").read_bytes().startswith(b"9")
    assert (tmp_path / "provisioning.log.2").read_bytes().startswith(b"7")


def test_a_burst_larger_than_the_size_is_rotated_in_whole_lines(tmp_path: Path) -> None:
    """A loaded machine reads a busy server's output in big chunks: one write of many lines
    still leaves every file within the size, each ending with a newline."""
    log = RotatingLog(tmp_path / "sglang.log", max_bytes=100, backups=5)
    log.open()
    log.write(b"".join(b"line %02d of a burst\n" % i for i in range(20)))  # 400 bytes
    log.write(b"x" * 150 + b"\n")  # one line longer than the size: whole, in a file alone
    log.close()
    files = sorted(tmp_path.iterdir())
    text = b"".join(p.read_bytes() for p in reversed(files[1:])) + files[0].read_bytes()
    assert text.count(b"of a burst\n") == 20
    for path in files:
        data = path.read_bytes()
        assert data.endswith(b"\n")
        assert len(data) <= 100 or data == b"x" * 150 + b"\n", (path.name, len(data))


def test_provisioning_log_is_rotated(tmp_path: Path) -> None:
    script = tmp_path / "prov.sh"
    script.write_text("for i in $(seq 1 400); do echo line $i of the provisioning script; done\n")
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LAUNCHER_MARKER_DIR": str(tmp_path / "markers"),
        "LAUNCHER_LOG_DIR": str(tmp_path / "logs"),
        "LAUNCHER_RUN_DIR": str(tmp_path / "run"),
        "WORKSPACE": str(tmp_path / "ws"),
        "PROVISIONING_SCRIPT": str(script),
        "LAUNCHER_LOG_MAX_BYTES": "4096",
        "LAUNCHER_LOG_BACKUPS": "1",
    }
    (tmp_path / "markers").mkdir()
    done = run_launcher("provision", env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    logs = tmp_path / "logs"
    assert (logs / "provisioning.log.1").exists()
    assert not (logs / "provisioning.log.2").exists()
    assert (logs / "provisioning.log").stat().st_size <= 4096
    assert "line 400 of" in (logs / "provisioning.log").read_text()


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("LAUNCHER_LOG_MAX_BYTES", "lots"),
        ("LAUNCHER_LOG_MAX_BYTES", "100"),
        ("LAUNCHER_LOG_BACKUPS", "-1"),
        ("LAUNCHER_FLAP_THRESHOLD", "0"),
        ("LAUNCHER_STOP_TIMEOUT", "0"),
    ],
)
def test_new_settings_reject_bad_values_in_one_line(rig: LauncherRig, var: str, value: str) -> None:
    done = rig.cli("run", **{var: value})
    assert done.returncode == 78
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and var in lines[0], done.stderr
    assert rig.starts() == []


def test_defaults_fit_docker_stop() -> None:
    settings = load_settings({})
    # An idle SGLang exits on its own at its watchdog's first look (<= 5 s) ...
    assert settings.stop_timeout >= SGLANG_WATCHDOG_PERIOD + SERVER_EXIT_ALLOWANCE
    # ... and supervisord's steps (three 1 s polls: TERM seen, launcher gone, edge gone) and
    # the kill still fit docker stop's 10 s for everything (BENCHMARKS.md: about 3.5 s).
    assert settings.stop_timeout + 4 <= 10
    assert settings.log_max_bytes == 100 * 1024 * 1024 and settings.log_backups == 3


# --- 5. real failure lines ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "release", "needle", "ends"),
    [
        ("no_accelerator", "0.5.6.post2", "sees no GPU", "exited with status 1"),
        ("no_accelerator", "0.5.23", "sees no GPU", "exited with status 1"),
        ("unsupported_arch", "0.5.8", "architecture", "killed by SIGKILL"),
        ("model_not_found", "0.5.8", "SGLANG_MODEL", "exited with status 1"),
        ("gated", "0.5.8", "HF_TOKEN", "exited with status 1"),
        ("tp_heads", "0.5.6.post2", "--tp", "killed by SIGKILL"),
    ],
)
def test_failures_a_restart_cannot_fix_are_given_up_at_once(
    rig: LauncherRig, failure: str, release: str, needle: str, ends: str
) -> None:
    launcher = rig.start(
        STANDIN_FAILURE=failure, STANDIN_RELEASE=release, LAUNCHER_START_RETRIES="3"
    )
    assert rig.wait_exit(launcher) == 78
    assert len(rig.starts()) == 1  # no retry
    data = rig.status()
    assert data["state"] == "failed"
    assert needle in data["hint"]
    assert data["last_exit"] == ends
    assert "cannot fix" in data["last_reason"]
    err = rig.stderr()
    assert "restarting the server" not in err
    assert f"hint: {data['hint']}" in err


def test_transient_failures_keep_the_backoff_and_show_the_hint(rig: LauncherRig) -> None:
    launcher = rig.start(
        STANDIN_CRASH_AFTER="0.3",
        STANDIN_BIND_DELAY="10",
        STANDIN_CRASH_MESSAGE="OSError: [Errno 28] No space left on device",
        LAUNCHER_BACKOFF_INITIAL="1",
        LAUNCHER_START_RETRIES="2",
    )
    data = rig.wait_state("backoff")
    assert data["hint"] and "disk is full" in data["hint"]  # status.json, not only the log
    assert rig.wait_exit(launcher, timeout=30) == 78
    assert len(rig.starts()) == 3


# --- 6. the ready line interrupts a probe in flight ---------------------------------------


def test_the_ready_line_interrupts_a_hanging_startup_probe(rig: LauncherRig) -> None:
    launcher = rig.start(
        STANDIN_HEALTH_HANG="1", STANDIN_WARMUP="1.5", LAUNCHER_LIVENESS_TIMEOUT="3600"
    )
    log = rig.logs / "sglang.log"
    rig.wait_for(
        lambda: log.exists() and b"ready to roll" in log.read_bytes(), "the ready line", 60
    )
    rig.wait_state("ready", timeout=120)  # not after the hour-long probe timeout
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher) == 0


# --- 7. leftovers with a zombie leader ------------------------------------------------------


def test_a_leftover_group_is_swept_even_when_its_leader_is_a_zombie(rig: LauncherRig) -> None:
    old = subprocess.Popen(
        [sys.executable, str(STANDIN), "--port", "1"],
        env={
            **rig.env,
            "STANDIN_CHILDREN": "2",
            "STANDIN_ORPHANS": "1",
            "STANDIN_BIND_DELAY": "3600",
            "STANDIN_STATE_DIR": str(rig.tmp / "old"),
        },
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        record = rig.wait_for(lambda: list((rig.tmp / "old").glob("start-*.json")), "old start")
        kids = json.loads(record[0].read_text())["children"]
        rig.run_dir.mkdir(parents=True, exist_ok=True)
        ServerRecord(old.pid, old.pid, psutil.Process(old.pid).create_time(), 1, ["sglang"]).save(
            rig.run_dir / "server.json"
        )
        os.kill(old.pid, signal.SIGKILL)  # not reaped: a zombie, as after a SIGKILLed launcher
        rig.wait_for(
            lambda: psutil.Process(old.pid).status() == psutil.STATUS_ZOMBIE, "a zombie leader"
        )
        assert psutil.pid_exists(old.pid)
        launcher = rig.start()
        rig.wait_state("ready", timeout=30)
        assert all(proc_gone(k) for k in kids), "the old server's processes still run"
        assert "left over by an earlier launcher" in rig.stderr()
        launcher.send_signal(signal.SIGTERM)
        assert rig.wait_exit(launcher) == 0
    finally:
        with contextlib.suppress(psutil.Error):
            for kid in json.loads(next((rig.tmp / "old").glob("start-*.json")).read_text())[
                "children"
            ]:
                psutil.Process(kid).kill()
        old.wait()


# --- 8. diagnostics -------------------------------------------------------------------------


def test_a_startup_timeout_names_the_last_probe(rig: LauncherRig) -> None:
    # The deadline must leave the stand-in time to bind and answer one 503 (its warmup) on a
    # loaded machine: with 1 s, the last answer could be a refused connection (not bound yet).
    launcher = rig.start(
        STANDIN_WARMUP="3600", LAUNCHER_STARTUP_TIMEOUT="20", LAUNCHER_START_RETRIES="0"
    )
    assert rig.wait_exit(launcher) == 78
    reason = rig.status()["last_reason"]
    assert "not ready within 20 s" in reason and "HTTP 503" in reason
    assert "HTTP 503" in rig.stderr()


def test_a_busy_port_is_not_shown_as_a_server_line(rig: LauncherRig) -> None:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", rig.port))
        sock.listen()
        launcher = rig.start(LAUNCHER_START_RETRIES="0")
        assert rig.wait_exit(launcher) == 78
    data = rig.status()
    assert data["last_error"] == []
    assert "LAUNCHER_SERVER_PORT" in data["hint"]
    shown = rig.cli("status").stdout
    assert "last server lines" not in shown and "already in use" in shown


def test_the_server_leader_gets_sigterm_once(rig: LauncherRig) -> None:
    launcher = rig.start(STANDIN_CHILDREN="2", STANDIN_DRAIN="0.5")
    rig.wait_state("ready")
    pid = rig.starts()[0]["pid"]
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher) == 0
    assert (rig.state_dir / f"signals-{pid}.txt").read_text() == "SIGTERM\n"


def test_plan_warnings_are_logged_when_the_server_starts(rig: LauncherRig) -> None:
    launcher = rig.start(SGLANG_ARGS="--mem-fraction-statc 0.8")
    assert rig.wait_exit(launcher) == 78  # the stand-in refuses the typo, as SGLang does
    err = rig.stderr()
    assert "server started" in err
    after = err.split("server started", 1)[1]
    assert "did you mean --mem-fraction-static?" in after


# --- 9. flapping ------------------------------------------------------------------------------


def test_flapping_is_counted_and_warned_about(rig: LauncherRig) -> None:
    launcher = rig.start(
        STANDIN_CRASH_AFTER="1.5",
        LAUNCHER_BACKOFF_MAX="0.2",
        LAUNCHER_FLAP_THRESHOLD="2",
    )
    rig.wait_for(lambda: "the server is flapping" in rig.stderr(), "the flapping warning", 40)
    data = rig.wait_for(
        lambda: (rig.status() or {}).get("restarts_last_hour", 0) >= 3 and rig.status(),
        "3 restarts in the last hour",
    )
    assert data["restarts"] >= 3
    assert "LAUNCHER_FLAP_THRESHOLD=2" in rig.stderr()
    shown = rig.cli("status").stdout
    assert "in the last hour)" in shown
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher) == 0


COUNTER = """\
import os, select, signal, subprocess, sys, time
sig = signal.SIGRTMIN + 1
out = sys.argv[1]
r, w = os.pipe2(os.O_NONBLOCK)
signal.signal(sig, lambda *a: None)
signal.set_wakeup_fd(w, warn_on_full_buffer=False)
if len(sys.argv) > 2:  # the leader: one child in its process group
    subprocess.Popen([sys.executable, "-c", sys.argv[2], out + ".child"])
open(out + ".ready", "w").close()
count = 0
while True:
    select.select([r], [], [], 0.05)
    try:
        count += len(os.read(r, 64))
    except BlockingIOError:
        pass
    with open(out, "w") as fh:
        fh.write(str(count))
"""


def test_each_process_of_the_tree_gets_a_signal_once(tmp_path: Path) -> None:
    """Real-time signals are queued, never merged: each delivery is counted."""
    import asyncio

    from vast_sglang_launcher.supervise.process import Tree

    out = tmp_path / "count"
    leader = subprocess.Popen(
        [sys.executable, "-c", COUNTER, str(out), COUNTER], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 10
        while (
            not (tmp_path / "count.ready").exists() or not (tmp_path / "count.child.ready").exists()
        ):
            assert time.monotonic() < deadline
            time.sleep(0.02)

        async def send() -> None:
            tree = Tree(leader.pid, [psutil.Process(leader.pid)], keep_pids=[leader.pid])
            assert len(tree.scan()) == 2
            tree.signal(int(signal.SIGRTMIN) + 1)

        asyncio.run(send())
        # every kill() has returned: a second delivery would be pending now, so the
        # counters (rewritten every 50 ms) read 1 each only if each process got it once
        counts = [out, tmp_path / "count.child"]
        deadline = time.monotonic() + 60
        while [p.read_text() if p.exists() else "" for p in counts] != ["1", "1"]:
            assert time.monotonic() < deadline, [p.read_text() for p in counts]
            time.sleep(0.02)
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()
