"""Shared test rigs: temporary container roots, loopback servers, process reapers.

Nothing here fakes the launcher: every rig runs the real CLI in a subprocess, against real
processes on loopback (the SGLang stand-in is tests/sglang_standin.py).
"""

import argparse
import contextlib
import ctypes
import fcntl
import io
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
from fake_hub import FakeHub, tiny_repo

CHECKOUT = str(Path(__file__).resolve().parent.parent)

# --- waiting on a condition -------------------------------------------------------------------


def wait_for(
    cond: Callable[[], Any],
    what: str = "the condition",
    timeout: float = 60.0,
    detail: Callable[[], str] = lambda: "",
    interval: float = 0.02,
) -> Any:
    """Poll `cond` until it returns something true, and return that; past `timeout` seconds,
    fail naming `what`, with `detail()` (what the rig saw) below. Tests wait on a condition
    like this, never on a sleep: a loaded machine only makes the wait longer."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            more = detail()
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}" + (f"\n{more}" if more else "")
            )
        time.sleep(interval)


# --- the launcher of this checkout, in a subprocess ------------------------------------------


def launcher_argv(*args: str) -> list[str]:
    """`python -m vast_sglang_launcher ARGS` with the Python running the tests."""
    return [sys.executable, "-m", "vast_sglang_launcher", *args]


def launcher_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with this checkout first on PYTHONPATH: the subprocess runs the launcher of this
    checkout, never one installed elsewhere."""
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != CHECKOUT]
    return {**env, "PYTHONPATH": os.pathsep.join([CHECKOUT, *rest])}


def run_launcher(
    *args: str, env: Mapping[str, str], timeout: float = 30, cwd: Path | str | None = None
) -> "subprocess.CompletedProcess[str]":
    """Run `vast_sglang_launcher ARGS` of this checkout to its end, output captured as text."""
    return subprocess.run(
        launcher_argv(*args),
        env=launcher_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def run_plan(
    tmp_path: Path, env: Mapping[str, str], *extra: str
) -> "subprocess.CompletedProcess[str]":
    """`plan EXTRA` in an environment of its own (no args file, the workspace under tmp_path,
    the hub offline); `env` adds to it and overrides it."""
    base = {
        "PATH": "/usr/bin:/bin",
        "SGLANG_ARGS_FILE": str(tmp_path / "sglang-args.conf"),
        "WORKSPACE": str(tmp_path / "ws"),
        "HF_HUB_OFFLINE": "1",
    }
    return run_launcher("plan", *extra, env={**base, **env})


def plan_json(tmp_path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """`plan --json` (run_plan), which must succeed, as a dict."""
    done = run_plan(tmp_path, env, "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


# --- no test reaches past loopback -------------------------------------------------------------
#
# The whole session (and every process a test starts, xdist's workers included) runs in a
# private network namespace with only `lo`: a test that forgets HF_ENDPOINT or HF_HUB_OFFLINE
# gets "no network" instead of asking the public hub, and no DNS query leaves the machine.
# The first process of the session makes it (unshare(2), CLONE_NEWNET, as root); where that is
# not possible the session stops before any test runs.

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def network_interfaces() -> set[str]:
    """The interfaces of this process's network namespace (/proc/self/net/dev is per
    namespace; /sys/class/net is the namespace of whoever mounted /sys)."""
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    return {line.split(":", 1)[0].strip() for line in lines}


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def isolate_network() -> str | None:
    """Move this process into a private network namespace with `lo` up, unless it is in one
    already; None when done, else why it cannot be done."""
    if network_interfaces() != {"lo"}:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            return f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}"
    try:
        _loopback_up()
    except OSError as exc:
        return f"cannot bring lo up: {exc}"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tests/image's mark: the image test keeps one xdist worker of its own (--dist loadgroup)
    config.addinivalue_line("markers", "xdist_group(name): run in one pytest-xdist worker")
    # before xdist starts its workers (pytest_sessionstart): they inherit the namespace
    why = isolate_network()
    if why is not None:
        raise pytest.UsageError(
            "tests/conftest.py: the tests run in a private network namespace (only loopback), "
            f"and this process cannot make one ({why}): run them as root, or inside one: "
            "unshare -rn sh -c 'ip link set lo up && python3 -m pytest ...'"
        )


# --- no test leaves a process behind ---------------------------------------------------------
#
# A process that a test started and that still runs when the test is over (a detached weight
# prefetch, a provisioning script, a server whose launcher was killed) would go on asking the
# hub, holding ports or writing into the next test's files. After each test (after every rig
# and reaper of its own has cleaned up), the processes started during the test whose command
# line or environment names the test's tmp_path are killed, and the test fails naming them.


def processes_naming(tmp: Path | str, since: float = 0.0) -> list[psutil.Process]:
    """Running processes started after `since` (time.time()) whose command line or environment
    names `tmp` (every rig puts its paths there): a test's own, detached ones included."""
    # the path itself, not a longer name it begins (pytest's test_x1 and test_x10)
    names = re.compile(re.escape(str(tmp)) + r"(?![\w.-])")
    found = []
    for p in psutil.process_iter(["create_time", "status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if p.info["create_time"] < since or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if p.pid == os.getpid():
                continue
            if any(names.search(part) for part in [*p.cmdline(), *p.environ().values()]):
                found.append(p)
    return found


@pytest.fixture(autouse=True)
def _no_process_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    # psutil's create_time counts from the boot time in whole seconds (/proc/stat btime):
    # up to a second early; two back, not to miss one (older ones cannot name this tmp_path)
    since = time.time() - 2
    yield
    tmp = request.node.funcargs.get("tmp_path")
    if tmp is None:
        return
    left = processes_naming(tmp, since)
    if not left:
        return
    # one on its way out (signalled by the test's own clean-up, not yet exited on a loaded
    # machine) is not left behind: only those still there after a bound count
    _, left = psutil.wait_procs(left, timeout=30)
    left = [p for p in left if not proc_gone(p.pid)]  # a zombie has ended (its parent reaps)
    if not left:
        return
    described = []
    for p in left:
        with contextlib.suppress(psutil.Error):
            described.append(f"{p.pid} {shlex.join(p.cmdline())[:200]}")
            p.kill()
    psutil.wait_procs(left, timeout=10)
    pytest.fail(
        "the test left processes behind (killed now):\n  " + "\n  ".join(described),
        pytrace=False,
    )


def _signal_state() -> tuple[dict[signal.Signals, Any], set[int]]:
    catchable = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
    handlers = {}
    for sig in catchable:
        with contextlib.suppress(ValueError, OSError):  # real-time signals without a name
            handlers[signal.Signals(sig)] = signal.getsignal(sig)
    return handlers, {int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])}


def _put_back(state: tuple[dict[signal.Signals, Any], set[int]]) -> None:
    handlers, mask = state
    for sig, handler in handlers.items():
        if signal.getsignal(sig) != handler and handler is not None:
            signal.signal(sig, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


@pytest.fixture
def in_process_signals() -> Iterator[None]:
    """For a test that runs a launcher command in this process: the command sets signal
    handlers (and `run` ignores SIGTERM, SIGINT and SIGHUP on its way out); they are put
    back afterwards."""
    state = _signal_state()
    yield
    _put_back(state)


@pytest.fixture(autouse=True)
def _signals_as_they_were() -> Iterator[None]:
    # An ignored signal is inherited across exec: a test that leaves SIGTERM ignored in the
    # pytest worker makes every later child of that worker deaf to it (a bash trap on an
    # ignored signal does nothing: bash(1), SIGNALS), and some later test hangs on a stop.
    state = _signal_state()
    yield
    now = _signal_state()
    if now == state:
        return
    changed = sorted(sig.name for sig in state[0] if now[0].get(sig) != state[0][sig]) + (
        ["the blocked-signal mask"] if now[1] != state[1] else []
    )
    _put_back(state)
    pytest.fail(
        "the test changed this process's signal handling (put back now): "
        + ", ".join(changed)
        + "; a test that runs a command in-process takes the in_process_signals fixture",
        pytrace=False,
    )


# --- boot steps (hotfix, packages, provisioning, entrypoint): tests/test_boot*.py,
# --- test_scripts*.py, test_packages*.py, test_entrypoint*.py


class BootRoot:
    """A temporary container root: markers, logs, run dir, workspace and a bin dir on PATH.

    `run`/`popen` start the real CLI in a subprocess with an explicit environment.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.markers = tmp / "markers"
        self.logs = tmp / "logs"
        self.run_dir = tmp / "run"
        self.workspace = tmp / "workspace"
        self.bin = tmp / "bin"
        self.scripts = tmp / "scripts"
        for d in (self.markers, self.bin, self.scripts):
            d.mkdir()
        self.env = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": CHECKOUT,  # the launcher of this checkout, not an installed one
            "LAUNCHER_MARKER_DIR": str(self.markers),
            "LAUNCHER_LOG_DIR": str(self.logs),
            "LAUNCHER_RUN_DIR": str(self.run_dir),
            "WORKSPACE": str(self.workspace),
            "LAUNCHER_SUPERVISORD_CONFIG": str(tmp / "supervisord.conf"),
            # no detached weight prefetch outliving a boot test (tests/coldstart test it)
            "LAUNCHER_PREFETCH": "false",
            "HF_HUB_OFFLINE": "1",
        }

    def marker(self, name: str) -> Path:
        return self.markers / name

    def argv(self, *args: str) -> list[str]:
        return launcher_argv(*args)

    def run(
        self, *args: str, timeout: float = 30, **env: str
    ) -> "subprocess.CompletedProcess[str]":
        return subprocess.run(
            self.argv(*args),
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.tmp,
        )

    def popen(self, *args: str, **env: str) -> "subprocess.Popen[str]":
        return subprocess.Popen(
            self.argv(*args),
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.tmp,
        )

    def script(self, name: str, body: str | bytes) -> Path:
        """A local script file (not executable: the launcher copies it)."""
        path = self.scripts / name
        path.write_bytes(body.encode() if isinstance(body, str) else body)
        return path

    def tool(self, name: str, body: str) -> Path:
        """An executable on the PATH the CLI sees (a fake apt-get, supervisord, ...)."""
        path = self.bin / name
        path.write_text(body)
        path.chmod(0o755)
        return path


@pytest.fixture
def boot_root(tmp_path: Path) -> BootRoot:
    return BootRoot(tmp_path)


class ScriptServer:
    """Loopback HTTP server; each path answers a queue of responses (the last one repeats).

    A response is (status, body) or (status, body, headers); the header `X-No-Length: 1`
    sends the body without Content-Length (closing the connection instead).
    """

    def __init__(self) -> None:
        self.routes: dict[str, list[tuple[int, bytes, dict[str, str]]]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                queue = server.routes.get(urlsplit(self.path).path)
                headers: dict[str, str]
                if not queue:
                    status, body, headers = 404, b"not found\n", {}
                else:
                    status, body, headers = queue.pop(0) if len(queue) > 1 else queue[0]
                self.send_response(status)
                no_length = headers.get("X-No-Length") == "1"
                for key, value in headers.items():
                    self.send_header(key, value)
                if not no_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def add(self, path: str, *responses: tuple[Any, ...]) -> str:
        self.routes[path] = [(r[0], r[1], r[2] if len(r) > 2 else {}) for r in responses]
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits(self, path: str) -> int:
        return sum(1 for p in self.requests if urlsplit(p).path == path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def script_server() -> Iterator[ScriptServer]:
    server = ScriptServer()
    yield server
    server.close()


# --- supervision (run, restart, status): tests/test_supervise*.py, tests/test_status*.py ---


STANDIN = Path(__file__).resolve().parent / "sglang_standin.py"


def _port_range() -> range:
    """This process's share of the ports below the kernel's ephemeral range: ports that no
    outgoing connection is given (ip_local_port_range), split between xdist's workers, so two
    workers (or a client's source port) never get the same one."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    first = 10000
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    index = int(worker) if worker.isdigit() else 0
    share = (low - first) // max(count, 1)
    return range(first + index * share, first + (index + 1) * share)


_PORTS = itertools.cycle(_port_range())


def free_port() -> int:
    """A loopback port nothing listens on, never handed out twice in a row by this process
    (it goes round its own share of the ports, _port_range)."""
    while True:
        port = next(_PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def proc_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie counts as gone)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


class LauncherRig:
    """A temporary container for `python -m vast_sglang_launcher run` with the stand-in server.

    Every path the launcher uses is under tmp; the stand-in records each start in
    state/start-N.json. Short periods and backoffs keep the tests fast; a test overrides any
    variable with `start(**env)`.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.run_dir = tmp / "run"
        self.logs = tmp / "logs"
        self.markers = tmp / "markers"
        self.workspace = tmp / "workspace"
        self.state_dir = tmp / "state"
        self.model = tmp / "model"
        self.args_file = tmp / "sglang-args.conf"
        for d in (self.markers, self.state_dir, self.model):
            d.mkdir()
        (self.model / "config.json").write_text(
            json.dumps(
                {
                    "architectures": ["LlamaForCausalLM"],
                    "num_attention_heads": 8,
                    "num_key_value_heads": 8,
                }
            )
        )
        self.args_file.write_text("")
        self.port = free_port()
        self.env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": CHECKOUT,  # the launcher of this checkout, not an installed one
            "SGLANG_MODEL": str(self.model),
            "SGLANG_COMMAND": shlex.join([sys.executable, str(STANDIN)]),
            "LAUNCHER_SERVER_PORT": str(self.port),
            "SGLANG_ARGS_FILE": str(self.args_file),
            "WORKSPACE": str(self.workspace),
            "LAUNCHER_RUN_DIR": str(self.run_dir),
            "LAUNCHER_LOG_DIR": str(self.logs),
            "LAUNCHER_MARKER_DIR": str(self.markers),
            "GPU_COUNT": "1",
            "HF_HUB_OFFLINE": "1",
            "STANDIN_STATE_DIR": str(self.state_dir),
            "LAUNCHER_STARTUP_PERIOD": "0.05",
            "LAUNCHER_STARTUP_TIMEOUT": "60",
            "LAUNCHER_LIVENESS_PERIOD": "0.2",
            "LAUNCHER_LIVENESS_TIMEOUT": "1",
            "LAUNCHER_LIVENESS_FAILURES": "2",
            "LAUNCHER_BACKOFF_INITIAL": "0.1",
            "LAUNCHER_BACKOFF_MAX": "2",
            "LAUNCHER_START_RETRIES": "2",
            "LAUNCHER_STOP_TIMEOUT": "5",
            # SGLang's SIGTERM watchdog looks every 5 s; the tests that are about the stop's
            # timing set the real period back (STANDIN_WATCHDOG_PERIOD=5).
            "STANDIN_WATCHDOG_PERIOD": "0.2",
        }
        self.launchers: list[subprocess.Popen[bytes]] = []
        self.out_path = tmp / "launcher.stdout"
        self.err_path = tmp / "launcher.stderr"

    # --- the launcher -------------------------------------------------------------------
    def argv(self, *args: str) -> list[str]:
        return launcher_argv(*args)

    def start(self, **env: str) -> "subprocess.Popen[bytes]":
        """Start `run` in the background, stdout and stderr to files."""
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            proc = subprocess.Popen(
                self.argv("run"),
                env={**self.env, **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.tmp,
            )
        self.launchers.append(proc)
        return proc

    def cli(self, *args: str, **env: str) -> "subprocess.CompletedProcess[str]":
        return subprocess.run(
            self.argv(*args),
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=30,
            cwd=self.tmp,
        )

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout()}\n--- stderr ---\n{self.stderr()}"

    # --- what happened --------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """status.json as the launcher last wrote it; {} before it is written (or unreadable)."""
        try:
            data = json.loads((self.run_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def starts(self) -> list[dict[str, Any]]:
        """The stand-in's start records, oldest first."""
        found = []
        for path in self.state_dir.glob("start-*.json"):
            try:
                found.append((int(path.stem.split("-")[1]), json.loads(path.read_text())))
            except (OSError, ValueError):
                continue
        return [data for _, data in sorted(found, key=lambda item: item[0])]

    def tree_pids(self) -> set[int]:
        """Every server and child pid the stand-in recorded."""
        pids: set[int] = set()
        for start in self.starts():
            pids.add(int(start["pid"]))
            pids.update(int(c) for c in start.get("children", []))
        return pids

    def wait_for(self, cond: "Callable[[], Any]", what: str, timeout: float = 60.0) -> Any:
        return wait_for(cond, what, timeout, lambda: f"status: {self.status()}\n{self.output()}")

    def wait_state(self, state: str, timeout: float = 60.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            data = self.status()
            return data if data.get("state") == state else None

        return dict(self.wait_for(check, f"state {state}", timeout))

    def wait_starts(self, n: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        return list(
            self.wait_for(lambda: len(self.starts()) >= n and self.starts(), f"{n} starts", timeout)
        )

    def wait_gone(self, pids: set[int], timeout: float = 60.0) -> None:
        self.wait_for(
            lambda: all(proc_gone(p) for p in pids), f"processes {sorted(pids)} to end", timeout
        )

    def wait_exit(self, proc: "subprocess.Popen[bytes]", timeout: float = 60.0) -> int:
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"launcher still running after {timeout} s\nstatus: {self.status()}\n"
                f"{self.output()}"
            ) from None

    # --- cleanup ----------------------------------------------------------------------------
    def cleanup(self) -> None:
        for proc in self.launchers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
        for pid in self.tree_pids():
            try:
                p = psutil.Process(pid)
                if any(str(STANDIN) in part or "standin" in part for part in p.cmdline()):
                    p.kill()
            except (psutil.Error, OSError):
                continue


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[LauncherRig]:
    r = LauncherRig(tmp_path)
    try:
        yield r
    finally:
        r.cleanup()


# --- auth edge, supervisor files, image: tests/test_edge*.py, test_image*.py, test_e2e*.py --


@pytest.fixture
def port_factory() -> Callable[[], int]:
    """A factory of loopback ports that were free a moment ago, never the same one twice."""
    given: set[int] = set()

    def take() -> int:
        while True:
            port = free_port()
            if port not in given:
                given.add(port)
                return port

    return take


class Reaper:
    """Kills, at teardown, every process tree it was given (and what they left behind)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[Any]] = []
        self.known: dict[int, psutil.Process] = {}

    def add(self, proc: "subprocess.Popen[Any]") -> "subprocess.Popen[Any]":
        self.procs.append(proc)
        self.note(proc.pid)
        return proc

    def note(self, pid: int) -> None:
        """Remember `pid` and its current descendants (they may be reparented later)."""
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                self.known.setdefault(p.pid, p)

    def alive(self) -> list[psutil.Process]:
        """Remembered processes still running (same pid and start time), zombies excluded."""
        alive = []
        for p in self.known.values():
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
        return alive

    def kill_all(self) -> None:
        for proc in self.procs:
            self.note(proc.pid)
        for p in self.alive():
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        psutil.wait_procs(list(self.known.values()), timeout=5)


class BootedRoot:
    """A temporary container root booted by `entrypoint` (supervisord with the image's
    supervisor/supervisord.conf, then its programs): what the image's end-to-end rigs share
    (tests/test_e2e_image.py, tests/jupyter/test_jupyter_edge.py). A rig fills `env`."""

    config = Path(CHECKOUT) / "supervisor" / "supervisord.conf"
    wait_timeout = 60.0

    def __init__(self, tmp: Path, reaper: "Reaper") -> None:
        self.tmp = tmp
        self.reaper = reaper
        self.env: dict[str, str] = {}
        self.out = tmp / "container.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def boot(self) -> "subprocess.Popen[bytes]":
        """`entrypoint` in a session of its own, its output (and supervisord's) to `out`."""
        with open(self.out, "wb") as out:
            self.proc = self.reaper.add(
                subprocess.Popen(
                    launcher_argv("entrypoint"),
                    env=launcher_env(self.env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.tmp,
                    start_new_session=True,
                )
            )
        return self.proc

    def output(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def fail(self, what: str) -> None:
        raise AssertionError(f"{what}\n--- container output ---\n{self.output()}")

    def wait(self, cond: Callable[[], Any], what: str, timeout: float | None = None) -> Any:
        """wait_for, failing at once when supervisord exits meanwhile."""

        def check() -> Any:
            if self.proc is not None and self.proc.poll() is not None:
                value = cond()  # what it did before it exited counts
                if not value:
                    self.fail(f"supervisord exited ({self.proc.returncode}) waiting for {what}")
                return value
            return cond()

        return wait_for(check, what, timeout or self.wait_timeout, self.output, interval=0.1)

    def ctl(self, *args: str) -> "subprocess.CompletedProcess[str]":
        supervisorctl = shutil.which("supervisorctl")
        assert supervisorctl is not None
        return subprocess.run(
            [supervisorctl, "-c", str(self.config), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def states(self) -> dict[str, str]:
        """`supervisorctl status`: program name -> state."""
        lines = self.ctl("status").stdout.splitlines()
        # "services:caddy" -> "caddy" (supervisor/supervisord.conf, [group:services])
        return {
            line.split()[0].rpartition(":")[2]: line.split()[1]
            for line in lines
            if len(line.split()) > 1
        }

    def descendants(self) -> list[psutil.Process]:
        assert self.proc is not None
        return psutil.Process(self.proc.pid).children(recursive=True)


@pytest.fixture
def reaper() -> Iterator[Reaper]:
    r = Reaper()
    yield r
    r.kill_all()


def wait_for_port(
    port: int, proc: "subprocess.Popen[Any] | None" = None, timeout: float = 60.0
) -> None:
    """Wait until 127.0.0.1:port accepts connections; fail early when `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def real_parse(table_path: Path, argv: list[str]) -> argparse.Namespace | None:
    """What a release's parser (argparse built from its option table, as the stand-in does)
    makes of argv; None when it exits with status 2."""
    import sglang_standin

    parser = sglang_standin.build_parser(table_path)
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            return parser.parse_args(argv)
        except SystemExit:
            return None


@contextlib.contextmanager
def private_network() -> Iterator[None]:
    """Move the calling thread (and every process it starts from then on) into a new network
    namespace with only `lo` up, and back afterwards: nothing can reach past loopback and no
    port meets another test's. Tests run as root (CAP_SYS_ADMIN for unshare/setns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)} (tests run as root)")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")
    finally:
        os.close(home)


@pytest.fixture
def net() -> Iterator[None]:
    """The test in a network namespace of its own (private_network): its ports meet no other
    test's (the gateway's metrics port, the serverless worker's fixed 3000)."""
    with private_network():
        yield


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    """The loopback hub (tests/fake_hub.py) with org/tiny (4 MiB in 3 shards) and org/gated
    (1 MiB, needs a token): the prefetch's and the partial downloads' tests."""
    gated = tiny_repo(weights_mb=1, shards=1)
    gated.gated = True
    h = FakeHub({"org/tiny": tiny_repo(weights_mb=4, shards=3), "org/gated": gated})
    yield h
    h.close()
