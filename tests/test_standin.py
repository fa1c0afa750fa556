"""Tests for tests/sglang_standin.py, the stand-in for the SGLang server process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from conftest import free_port, wait_for

STANDIN = Path(__file__).resolve().parent / "sglang_standin.py"
READY_LINE = "The server is fired up and ready to roll!"


def ignored_signals(pid: int) -> int:
    """The SigIgn mask of /proc/PID/status (bit N-1: signal N)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigIgn in /proc/{pid}/status")


def pending_signals(pid: int) -> int:
    """The signals pending for PID, its own and its thread group's (SigPnd | ShdPnd)."""
    mask = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            mask |= int(line.split()[1], 16)
    return mask


def kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def all_dead(procs: list[psutil.Process]) -> bool:
    """True when every process is gone or a zombie (PID 1 here may reap orphans slowly)."""
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


class Standin:
    """A running stand-in; stdout/stderr are collected by background threads."""

    def __init__(self, args: list[str], env: dict[str, str], port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        full_env = {**os.environ, **env}
        self.proc = subprocess.Popen(
            [sys.executable, str(STANDIN), *args],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))

    def out(self) -> str:
        return "\n".join(self.stdout)

    def err(self) -> str:
        return "\n".join(self.stderr)

    def wait(self, timeout: float = 5.0) -> int:
        rc = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=2)
        return rc

    def get(self, path: str, timeout: float = 2.0) -> httpx.Response:
        return httpx.get(self.base + path, timeout=timeout)

    def status(self, path: str = "/health") -> int | None:
        try:
            return self.get(path, timeout=1.0).status_code
        except httpx.TransportError:
            return None

    def wait_healthy(self, timeout: float = 5.0) -> None:
        wait_for(lambda: self.status() == 200, timeout=timeout)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Standin]]:
    started: list[Standin] = []

    def _launch(*args: str, port: int | None = None, **env: Any) -> Standin:
        port = port or free_port()
        argv = ["--model-path", "test/model", "--host", "127.0.0.1", "--port", str(port), *args]
        run = Standin(argv, {k: str(v) for k, v in env.items()}, port)
        started.append(run)
        return run

    yield _launch
    for run in started:
        kill_group(run.proc)


def test_unknown_flag_exits_2() -> None:
    proc = subprocess.run(
        [sys.executable, str(STANDIN), "--model-path", "m", "--bogus"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert proc.returncode == 2
    assert "sglang serve: error: unrecognized arguments: --bogus" in proc.stderr


def test_ambiguous_abbreviation_exits_2() -> None:
    proc = subprocess.run(
        [sys.executable, str(STANDIN), "--model-path", "m", "--pp", "2"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert proc.returncode == 2
    assert "ambiguous option: --pp could match" in proc.stderr


def test_abbreviation_and_state_files(launch: Callable[..., Standin], tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"STANDIN_STATE_DIR": state, "STANDIN_EXIT_AFTER": "0", "MODEL_NAME": "mname"}
    first = launch("--tp", "2", **env)
    assert first.wait() == 0
    second = launch("--tp-size", "4", **env)
    assert second.wait() == 0

    data = json.loads((state / "start-1.json").read_text())
    assert data["pid"] == first.proc.pid
    assert data["pgid"] == first.proc.pid  # started with start_new_session
    assert data["sid"] == first.proc.pid
    assert data["argv"][-2:] == ["--tp", "2"]
    assert data["args"]["tensor_parallel_size"] == "2"
    assert data["args"]["model_path"] == "test/model"
    assert data["env"]["MODEL_NAME"] == "mname"
    assert data["env"]["cwd"] == os.getcwd()
    assert "server_args=ServerArgs(model_path='test/model'" in first.out()
    assert "tp_size=2" in first.out()

    data2 = json.loads((state / "start-2.json").read_text())
    assert data2["args"]["tensor_parallel_size"] == "4"
    assert sorted(p.name for p in state.iterdir()) == ["start-1.json", "start-2.json"]


def test_bind_delay_warmup_and_ready_line(launch: Callable[..., Standin]) -> None:
    # Each phase lasts 4 s: each check below runs at its phase's start (waited for), well
    # within it even on a loaded machine.
    run = launch(STANDIN_BIND_DELAY="4", STANDIN_WARMUP="4")
    wait_for(lambda: "Load weight begin." in run.out())
    with pytest.raises(httpx.ConnectError):
        run.get("/health", timeout=0.5)

    wait_for(lambda: run.status("/v1/models") == 200)
    assert run.status("/health") == 503
    assert run.status("/health_generate") == 503
    models = run.get("/v1/models").json()
    assert models["object"] == "list"
    assert models["data"][0]["id"] == "test/model"
    assert READY_LINE not in run.stdout

    run.wait_healthy()
    assert run.status("/health_generate") == 200
    wait_for(lambda: READY_LINE in [line.split("] ", 1)[-1] for line in run.stdout])
    info = run.get("/model_info").json()
    assert info == {"model_path": "test/model", "is_generation": True}
    assert run.status("/nope") == 404


def test_children_share_pgid_and_die_with_parent(
    launch: Callable[..., Standin], tmp_path: Path
) -> None:
    run = launch(STANDIN_CHILDREN="2", STANDIN_STATE_DIR=tmp_path)
    parent = psutil.Process(run.proc.pid)
    children = wait_for(lambda: len(parent.children()) == 2 and parent.children())
    pgid = os.getpgid(run.proc.pid)
    for child in children:
        assert os.getpgid(child.pid) == pgid
    run.wait_healthy()
    # Once both children have armed PR_SET_PDEATHSIG, kill only the parent.
    wait_for(lambda: all((tmp_path / f"armed-{c.pid}").exists() for c in children))
    os.kill(run.proc.pid, signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    wait_for(lambda: all_dead(children))


def test_crash_after_dies_by_sigkill(launch: Callable[..., Standin]) -> None:
    run = launch(
        STANDIN_CHILDREN="1",
        STANDIN_CRASH_AFTER="0.5",
        STANDIN_CRASH_MESSAGE="RuntimeError: CUDA error: out of memory",
    )
    parent = psutil.Process(run.proc.pid)
    children = wait_for(parent.children)
    assert run.wait() == -signal.SIGKILL
    assert "CUDA error: out of memory" in run.err()
    wait_for(lambda: all_dead(children))


def test_exit_after_with_code(launch: Callable[..., Standin]) -> None:
    run = launch(STANDIN_EXIT_AFTER="0.2", STANDIN_EXIT_CODE="3", STANDIN_CRASH_MESSAGE="bye")
    assert run.wait() == 3
    assert "bye" in run.err()


def _stream_lines(run: Standin, sink: list[str], timeout: float = 60.0) -> None:
    """Read one streamed chat completion into ``sink`` ("data: ..." payloads)."""
    payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with (
        contextlib.suppress(httpx.HTTPError),
        httpx.stream("POST", run.base + "/v1/chat/completions", json=payload, timeout=timeout) as r,
    ):
        for line in r.iter_lines():
            if line.startswith("data: "):
                sink.append(line[len("data: ") :])


@pytest.mark.parametrize(
    ("release", "rc"),
    [
        # <= 0.5.18 sigterm_watchdog: kill_process_tree(include_parent=True) kills itself
        ("0.5.6.post2", -signal.SIGKILL),
        ("0.5.18", -signal.SIGKILL),
        # 0.5.20+: kill_process_tree(include_parent=False), then sys.exit(0)
        ("0.5.23", 0),
    ],
)
def test_sigterm_drains_the_request_in_flight_then_ends_the_tree(
    launch: Callable[..., Standin], release: str, rc: int
) -> None:
    run = launch(
        STANDIN_CHILDREN=2,
        STANDIN_RELEASE=release,
        STANDIN_WATCHDOG_PERIOD=0.3,
        STANDIN_STREAM_INTERVAL=0.3,
    )
    run.wait_healthy(30)
    children = psutil.Process(run.proc.pid).children()
    got: list[str] = []
    reader = threading.Thread(target=_stream_lines, args=(run, got))
    reader.start()
    wait_for(lambda: got, timeout=30)
    run.proc.send_signal(signal.SIGTERM)  # the main process only, as the launcher does
    wait_for(lambda: run.status() == 503, timeout=30)
    reader.join(60)
    assert len(got) == 6 and got[-1] == "[DONE]", got
    assert run.wait(60) == rc
    assert "Draining requests and shutting down..." in run.out()
    assert "Gracefully exiting... Remaining number of requests 1." in run.out()
    wait_for(lambda: all_dead(children), timeout=30)


def test_sigterm_to_the_group_kills_the_schedulers_and_the_request_hangs(
    launch: Callable[..., Standin],
) -> None:
    run = launch(STANDIN_CHILDREN=1, STANDIN_WATCHDOG_PERIOD=0.2, STANDIN_STREAM_INTERVAL=0.3)
    run.wait_healthy(30)
    children = psutil.Process(run.proc.pid).children()
    got: list[str] = []
    reader = threading.Thread(target=_stream_lines, args=(run, got), daemon=True)
    reader.start()
    wait_for(lambda: got, timeout=30)
    os.killpg(run.proc.pid, signal.SIGTERM)
    wait_for(lambda: all_dead(children), timeout=30)  # no handler: died of it
    # The main process drains forever: its one request never ends without a scheduler.
    wait_for(lambda: run.out().count("Remaining number of requests 1.") >= 3, timeout=30)
    assert run.proc.poll() is None
    assert "[DONE]" not in got
    run.proc.kill()
    run.wait(30)


def test_sigterm_before_ready_has_its_default_action(launch: Callable[..., Standin]) -> None:
    run = launch(STANDIN_CHILDREN=1, STANDIN_BIND_DELAY=3600)
    wait_for(lambda: "Load weight begin" in run.out(), timeout=30)
    children = psutil.Process(run.proc.pid).children()
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(30) == -signal.SIGTERM
    wait_for(lambda: all_dead(children), timeout=30)  # PDEATHSIG


def test_force_shutdown_skips_the_drain(launch: Callable[..., Standin]) -> None:
    run = launch(
        STANDIN_RELEASE="0.5.23",
        STANDIN_WATCHDOG_PERIOD=0.2,
        STANDIN_DRAIN=3600,
        SGL_FORCE_SHUTDOWN="1",
    )
    run.wait_healthy(30)
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(30) == 0
    assert "force shutdown flag set. Force exiting." in run.out()


@pytest.mark.parametrize(("release", "ignores"), [("0.5.20", False), ("0.5.22", True)])
def test_a_rank_above_0_waits_for_rank_0_from_0_5_22(
    launch: Callable[..., Standin], release: str, ignores: bool
) -> None:
    run = launch("--node-rank", "1", "--nnodes", "2", STANDIN_RELEASE=release)
    run.wait_healthy(30)
    run.proc.send_signal(signal.SIGTERM)
    if not ignores:
        assert run.wait(30) == -signal.SIGTERM
        return
    wait_for(lambda: "waiting for the rank-0 ShutdownReq" in run.out(), timeout=30)
    assert run.proc.poll() is None
    run.proc.kill()
    run.wait(30)


def test_start_records_are_never_seen_half_written(
    launch: Callable[..., Standin], tmp_path: Path
) -> None:
    runs = [launch(STANDIN_STATE_DIR=tmp_path, STANDIN_BIND_DELAY=3600) for _ in range(4)]
    seen: set[str] = set()
    while len(seen) < len(runs):
        for path in tmp_path.glob("start-*.json"):
            json.loads(path.read_text())  # whole, or not there at all
            seen.add(path.name)
    assert seen == {f"start-{n}.json" for n in range(1, 5)}
    assert not list(tmp_path.glob(".start-*"))


def test_ignore_sigterm(launch: Callable[..., Standin]) -> None:
    run = launch(STANDIN_IGNORE_SIGTERM="1")
    run.wait_healthy()
    # SIGTERM is ignored (SigIgn): the kernel drops it when it is sent, nothing to wait for
    assert ignored_signals(run.proc.pid) & (1 << (signal.SIGTERM - 1))
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.poll() is None
    assert run.status() == 200
    run.proc.kill()
    assert run.wait() == -signal.SIGKILL


def test_hang_makes_health_time_out(launch: Callable[..., Standin]) -> None:
    run = launch(STANDIN_HANG_AFTER="0.6")
    # no wait for a healthy answer first: on a loaded machine the hang may come before it
    wait_for(lambda: run.proc.poll() is None and _times_out(run))
    assert run.proc.poll() is None
    # The port still accepts connections.
    with socket.create_connection(("127.0.0.1", run.port), timeout=1):
        pass


def _times_out(run: Standin) -> bool:
    try:
        run.get("/health", timeout=0.3)
    except httpx.ReadTimeout:
        return True
    except httpx.ConnectError:  # not bound yet
        return False
    return False


def test_chat_completion_non_streaming(launch: Callable[..., Standin]) -> None:
    run = launch()
    run.wait_healthy()
    resp = httpx.post(
        run.base + "/v1/chat/completions",
        json={"model": "test/model", "messages": [{"role": "user", "content": "hi"}]},
        timeout=2,
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"]


def test_streaming_chunks_arrive_over_time(launch: Callable[..., Standin]) -> None:
    run = launch(STANDIN_STREAM_INTERVAL="0.01")
    run.wait_healthy()
    payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", run.base + "/v1/chat/completions", json=payload, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: ") :] for line in r.iter_lines() if line.startswith("data: ")]
    assert len(events) == 6
    assert events[-1] == "[DONE]"
    chunks = [json.loads(data) for data in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # One chunk at a time: with an hour between chunks, the first still comes (a server that
    # sent the body whole would send nothing within the client's timeout).
    slow = launch(STANDIN_STREAM_INTERVAL="3600")
    slow.wait_healthy()
    with httpx.stream("POST", slow.base + "/v1/chat/completions", json=payload, timeout=60) as r:
        first = next(line for line in r.iter_lines() if line.startswith("data: "))
    assert json.loads(first[len("data: ") :])["choices"][0]["delta"]["role"] == "assistant"


@pytest.mark.parametrize(
    ("failure", "release", "last", "rc"),
    [
        (
            "no_accelerator",
            "0.5.6.post2",
            "RuntimeError: No accelerator (CUDA, XPU, HPU, NPU) is available.",
            1,
        ),
        (
            "no_accelerator",
            "0.5.23",
            "RuntimeError: No accelerator (CUDA, XPU, HPU, NPU, MUSA, MPS) or platform plugin "
            "is available.",
            1,
        ),
        ("unsupported_arch", "0.5.8", "are not supported for now", -signal.SIGKILL),
        ("tp_heads", "0.5.8", "AssertionError: 14 is not divisible by 4", -signal.SIGKILL),
        ("model_not_found", "0.5.8", "is not a valid model identifier", 1),
        ("gated", "0.5.8", "You are trying to access a gated repo.", 1),
    ],
)
def test_failure_modes_print_the_real_lines(
    launch: Callable[..., Standin], failure: str, release: str, last: str, rc: int
) -> None:
    run = launch(STANDIN_FAILURE=failure, STANDIN_RELEASE=release, STANDIN_CHILDREN=1)
    assert run.wait(10) == rc
    assert last in run.stderr[-1]


def test_health_hangs_before_ready_when_asked(launch: Callable[..., Standin]) -> None:
    run = launch(STANDIN_HEALTH_HANG=1, STANDIN_WARMUP=1.0)
    wait_for(lambda: "Uvicorn running" in run.out())
    with pytest.raises(httpx.ReadTimeout):
        run.get("/health", timeout=0.5)
    wait_for(lambda: READY_LINE in run.out())
    assert run.status() == 200


def test_orphans_outlive_the_server(launch: Callable[..., Standin], tmp_path: Path) -> None:
    run = launch(STANDIN_CHILDREN=1, STANDIN_ORPHANS=1, STANDIN_STATE_DIR=tmp_path)
    wait_for(lambda: list(tmp_path.glob("start-*.json")))
    kid = json.loads(next(tmp_path.glob("start-*.json")).read_text())["children"][0]
    os.kill(run.proc.pid, signal.SIGKILL)
    run.wait(5)
    # Reparented: the kernel sends a child's parent-death signal as it gives it its new
    # parent (Linux kernel/exit.c `forget_original_parent`, one loop under tasklist_lock), so
    # one set would be pending now (or have killed it); none is.
    wait_for(lambda: psutil.Process(kid).ppid() != run.proc.pid)
    try:
        assert not pending_signals(kid) & (1 << (signal.SIGKILL - 1))
        assert psutil.Process(kid).status() != psutil.STATUS_ZOMBIE
    finally:
        with contextlib.suppress(psutil.Error):
            psutil.Process(kid).kill()
