"""The supervisor's parts on their own: output pass-through, the
provisioning-marker wait, the port check and the process-tree stop."""

from __future__ import annotations

import asyncio
import functools
import io
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import free_port, proc_gone, wait_for

from vast_sglang_launcher.supervise.probes import health_url
from vast_sglang_launcher.supervise.process import Tree, describe_exit, port_in_use
from vast_sglang_launcher.supervise.provisioning_gate import DirectoryWatch, wait_until_gone
from vast_sglang_launcher.supervise.server_output import OutputSink, ServerProtocol


def test_describe_exit() -> None:
    assert describe_exit(0) == "exited with status 0"
    assert describe_exit(2) == "exited with status 2"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"


def test_health_url_probes_wildcards_through_loopback() -> None:
    assert health_url("127.0.0.1", 18000) == "http://127.0.0.1:18000/health"
    assert health_url("0.0.0.0", 1) == "http://127.0.0.1:1/health"
    assert health_url("::", 2) == "http://[::1]:2/health"
    assert health_url("localhost", 3, "") == "http://localhost:3"


# --- output pass-through -----------------------------------------------------------------


class _Buffer(io.BytesIO):
    pass


def _protocol(tmp_path: Path, tail: int = 3) -> tuple[ServerProtocol, _Buffer, Path, list[str]]:
    out = _Buffer()
    log = tmp_path / "logs" / "sglang.log"
    events: list[str] = []
    sink = OutputSink(out, log, tail)

    async def make() -> ServerProtocol:
        return ServerProtocol(sink, lambda: events.append("ready"), lambda: events.append("exit"))

    proto = asyncio.run(make())
    return proto, out, log, events


def test_lines_pass_through_unchanged_whole_lines_only(tmp_path: Path) -> None:
    proto, out, log, events = _protocol(tmp_path)
    proto.pipe_data_received(1, b"first line\nsec")
    assert out.getvalue() == b"first line\n"
    proto.pipe_data_received(1, b"ond \xff\xfe bytes\r\n\x1b[32mgreen\x1b[0m\n")
    proto.pipe_data_received(1, b"The server is fired up and ready to roll!\n")
    proto.pipe_data_received(1, b"no newline at the end")
    proto.pipe_connection_lost(1, None)
    expected = (
        b"first line\nsecond \xff\xfe bytes\r\n\x1b[32mgreen\x1b[0m\n"
        b"The server is fired up and ready to roll!\nno newline at the end\n"
    )
    assert out.getvalue() == expected
    proto.sink.close()
    assert log.read_bytes() == expected
    assert events == ["ready"]
    assert proto.sink.last_lines() == [
        "\x1b[32mgreen\x1b[0m",
        "The server is fired up and ready to roll!",
        "no newline at the end",
    ]


def test_progress_bars_keep_their_last_frame_in_the_tail(tmp_path: Path) -> None:
    proto, out, _, _ = _protocol(tmp_path)
    proto.pipe_data_received(1, b"Loading 10%\rLoading 50%\rLoading 100%\n")
    assert out.getvalue() == b"Loading 10%\rLoading 50%\rLoading 100%\n"
    assert proto.sink.last_lines() == ["Loading 100%"]


def test_overlong_line_is_passed_on_in_pieces(tmp_path: Path) -> None:
    proto, out, _, _ = _protocol(tmp_path)
    proto.pipe_data_received(1, b"x" * 70_000)
    assert len(out.getvalue()) == 70_000


def test_unwritable_log_dir_still_passes_output_through(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = _Buffer()
    sink = OutputSink(out, blocker / "sglang.log", 5)
    assert sink.log_error
    sink.write([b"line\n"])
    assert out.getvalue() == b"line\n"


# --- provisioning marker ------------------------------------------------------------------


@pytest.mark.parametrize("inotify", [True, False])
def test_marker_wait_releases_soon_after_removal(tmp_path: Path, inotify: bool) -> None:
    marker = tmp_path / ".provisioning"
    marker.write_text("")

    async def scenario() -> tuple[bool, float]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        removed_at: list[float] = []

        def remove() -> None:
            marker.unlink()
            removed_at.append(loop.time())

        loop.call_later(0.3, remove)
        released = await wait_until_gone(
            marker, stop, use_inotify=inotify, poll_interval=0.2, recheck_interval=3600
        )
        return released, loop.time() - removed_at[0]

    released, latency = asyncio.run(scenario())
    assert released
    # The re-check is an hour away: only the event (or the 0.2 s poll) releases it before;
    # 60 s is a bound no loaded machine reaches, and far from the re-check.
    assert latency < 60, latency


def test_marker_wait_returns_false_on_stop(tmp_path: Path) -> None:
    marker = tmp_path / ".provisioning"
    marker.write_text("")

    async def scenario() -> bool:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.1, stop.set)
        return await wait_until_gone(marker, stop, recheck_interval=3600)

    t0 = time.monotonic()
    assert asyncio.run(scenario()) is False
    assert time.monotonic() - t0 < 60  # the stop, not the hour-long re-check
    assert marker.exists()


def test_marker_absent_returns_at_once(tmp_path: Path) -> None:
    async def scenario() -> bool:
        return await wait_until_gone(tmp_path / "missing" / ".provisioning", asyncio.Event())

    assert asyncio.run(scenario()) is True


def test_directory_watch_uses_inotify_on_linux(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("inotify is Linux-only")
    watch = DirectoryWatch(tmp_path)
    try:
        assert watch.fd >= 0
    finally:
        watch.close()


# --- port and process tree ----------------------------------------------------------------


def test_port_in_use_names_the_holder() -> None:
    port = free_port()
    assert port_in_use("127.0.0.1", port) is None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        busy = port_in_use("127.0.0.1", port)
    assert busy is not None and f"127.0.0.1:{port} is already in use" in busy
    assert port_in_use("127.0.0.1", port) is None


CHILD_TREE = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
# one child in the group, one that escapes into a session of its own
stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
subprocess.Popen([sys.executable, "-c", stubborn])
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
print("ok", flush=True)
time.sleep(60)
"""


def test_tree_terminate_kills_group_and_escaped_descendants() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_TREE], start_new_session=True, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ok\n"
        leader = psutil.Process(proc.pid)
        kids = leader.children(recursive=True)
        assert len(kids) == 2

        async def stop() -> tuple[bool, list[int]]:
            tree = Tree(proc.pid, [leader], keep_pids=[proc.pid])
            killed: list[int] = []
            graceful = await tree.terminate(
                0.3, on_kill=lambda rest: killed.extend(p.pid for p in rest)
            )
            return graceful, killed

        graceful, killed = asyncio.run(stop())
        assert not graceful
        assert proc.pid in killed
        proc.wait(5)
        for kid in kids:
            wait_for(functools.partial(proc_gone, kid.pid), f"child {kid.pid} to end")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def test_a_launcher_bug_pauses_before_exiting(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    in_process_signals: None,
) -> None:
    """supervisord restarts an unexpected exit at once: the launcher must not crash-loop."""
    import argparse

    from vast_sglang_launcher.logs import configure
    from vast_sglang_launcher.settings import load_settings
    from vast_sglang_launcher.supervise import commands as supervise

    async def broken(self: supervise.Supervisor) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(supervise.Supervisor, "run", broken)
    configure("console", "info")
    settings = load_settings(
        {
            "LAUNCHER_BACKOFF_MAX": "0.4",
            "LAUNCHER_BACKOFF_INITIAL": "0.1",
            "LAUNCHER_RUN_DIR": str(tmp_path),
        }
    )
    slept: list[float] = []

    class Clock:
        """The `time` the command sees: its sleeps recorded, not slept."""

        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        def sleep(self, seconds: float) -> None:
            slept.append(seconds)

    monkeypatch.setattr(supervise, "time", Clock())
    assert supervise.command_run(settings, argparse.Namespace()) == 1
    assert slept == [0.4]  # LAUNCHER_BACKOFF_MAX before exiting: supervisord does not spin
    err = capsys.readouterr().err
    assert "the launcher failed (a bug" in err and "RuntimeError: boom" in err
    # Python's own traceback, as in the image (whose launcher venv has no rich): not rich's
    # box with every local variable, which structlog picks when rich can be imported
    assert "Traceback (most recent call last):" in err and "╭" not in err
