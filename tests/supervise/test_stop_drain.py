"""A stop loses nothing in flight: SIGTERM reaches SGLang's main process only, which drains
(the stand-in does what `TokenizerManager.sigterm_watchdog` does, with its real 5 s period),
and the server's tree ends on its own. Also: a restart request during the final shutdown.

The budgets here are generous (a loaded machine); how long a stop takes is in
bench/bench_docker_stop.py and BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

import httpx
from conftest import LauncherRig

DRAIN = {
    "STANDIN_CHILDREN": "2",  # the schedulers: they die of SIGTERM, as SGLang's do
    "STANDIN_WATCHDOG_PERIOD": "5",  # SGLang's own
    "STANDIN_STREAM_INTERVAL": "2",  # 5 chunks: 8 s, longer than one watchdog period
    "LAUNCHER_STOP_TIMEOUT": "60",
}


def stream(port: int, sink: list[str]) -> None:
    payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    with (
        contextlib.suppress(httpx.HTTPError),
        httpx.stream("POST", url, json=payload, timeout=120) as r,
    ):
        for line in r.iter_lines():
            if line.startswith("data: "):
                sink.append(line[len("data: ") :])


def start_stream(rig: LauncherRig) -> tuple[threading.Thread, list[str]]:
    got: list[str] = []
    reader = threading.Thread(target=stream, args=(rig.port, got), daemon=True)
    reader.start()
    rig.wait_for(lambda: got, "the first chunk", 60)
    return reader, got


def signals_of(rig: LauncherRig, pid: int) -> list[str]:
    path = Path(rig.state_dir) / f"signals-{pid}.txt"
    return path.read_text().split() if path.exists() else []


def test_sigterm_mid_stream_delivers_every_chunk_and_the_server_ends_itself(
    rig: LauncherRig,
) -> None:
    launcher = rig.start(**DRAIN)
    rig.wait_state("ready", 60)
    (start,) = rig.starts()
    tree = rig.tree_pids()
    reader, got = start_stream(rig)
    launcher.send_signal(signal.SIGTERM)
    reader.join(120)
    assert len(got) == 6 and got[-1] == "[DONE]", got
    assert rig.wait_exit(launcher, 120) == 0
    rig.wait_gone(tree, 60)
    err = rig.stderr()
    assert "killing the server's processes" not in err, rig.output()  # it ended on its own
    assert "Gracefully exiting... Remaining number of requests 1." in rig.stdout()
    assert signals_of(rig, int(start["pid"])) == ["SIGTERM"]  # the main process, once
    assert rig.status()["state"] == "stopped"


def test_restart_mid_stream_delivers_every_chunk_then_starts_again(rig: LauncherRig) -> None:
    launcher = rig.start(**DRAIN)
    rig.wait_state("ready", 60)
    first = rig.tree_pids()
    reader, got = start_stream(rig)
    assert rig.cli("restart").returncode == 0
    reader.join(120)
    assert len(got) == 6 and got[-1] == "[DONE]", got
    rig.wait_starts(2, 120)
    rig.wait_gone(first, 60)
    rig.wait_state("ready", 60)
    assert "killing the server's processes" not in rig.stderr(), rig.output()
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher, 120) == 0


def test_sighup_during_the_final_shutdown_is_ignored(rig: LauncherRig) -> None:
    """`restart` (SIGHUP) right after a stop: the launcher keeps its handlers until the tree
    is gone and through its exit; every SIGHUP is logged and ignored, exit status 0."""
    launcher = rig.start(STANDIN_CHILDREN="1")
    rig.wait_state("ready", 60)
    tree = rig.tree_pids()
    launcher.send_signal(signal.SIGTERM)
    rig.wait_state("stopping", 60)
    sent = 0
    while launcher.poll() is None:  # through the take-down, the loop's close and the exit
        with contextlib.suppress(ProcessLookupError):
            launcher.send_signal(signal.SIGHUP)
            sent += 1
        with contextlib.suppress(Exception):
            launcher.wait(0.005)
    assert launcher.returncode == 0, rig.output()
    assert sent > 0
    assert "received SIGHUP while stopping: ignored" in rig.stderr()
    rig.wait_gone(tree)
    assert len(rig.starts()) == 1  # no restart
