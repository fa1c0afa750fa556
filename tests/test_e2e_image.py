"""The whole boot on this machine, as in the image: `entrypoint` runs the boot steps and execs
the real supervisord with the project's own supervisor/ files; supervisord starts the launcher
(serving the SGLang stand-in) and the real Caddy, and the API is called through the edge."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import pytest
from conftest import (
    CHECKOUT,
    BootedRoot,
    Reaper,
    launcher_argv,
    run_launcher,
    wait_for_port,
)

from vast_sglang_launcher.edge.caddyfile import auth_cookie

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "sglang_standin.py"
TOKEN = 'e2e "tok" {x} *+?'
STREAM_INTERVAL = 0.4

pytestmark = pytest.mark.skipif(
    not (shutil.which("caddy") and shutil.which("supervisord")) and not os.environ.get("CI"),
    reason="needs caddy and supervisord (CI installs both and runs this test)",
)


class Container(BootedRoot):
    """A temporary container root, booted by `python -m vast_sglang_launcher entrypoint`.

    The environment is what a user and the image give: the paths of this temporary root and
    the template's variables. LAUNCHER_PYTHON and LAUNCHER_SUPERVISOR_STOPWAIT, which the
    supervisor files expand, are deliberately absent: `entrypoint` must export them.
    """

    def __init__(self, tmp: Path, reaper: Reaper, port: Callable[[], int]) -> None:
        super().__init__(tmp, reaper)
        self.run_dir = tmp / "run"
        self.logs = tmp / "logs"
        self.state = tmp / "state"
        model = tmp / "model"
        # the run and log directories are left to `entrypoint` to create
        for d in (self.state, model, tmp / "markers"):
            d.mkdir()
        (model / "config.json").write_text(
            json.dumps(
                {
                    "architectures": ["LlamaForCausalLM"],
                    "num_attention_heads": 8,
                    "num_key_value_heads": 8,
                }
            )
        )
        (tmp / "sglang-args.conf").write_text("")
        self.model = str(model)
        self.api_port = port()
        self.sglang_port = port()
        self.env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": CHECKOUT,  # the launcher of this checkout, not an installed one
            # the image (Dockerfile ENV) and the paths of this temporary root
            "LAUNCHER_RUN_DIR": str(self.run_dir),
            "LAUNCHER_LOG_DIR": str(self.logs),
            "LAUNCHER_MARKER_DIR": str(tmp / "markers"),
            "LAUNCHER_SUPERVISORD_CONFIG": str(self.config),
            "LAUNCHER_PORTAL_YAML": str(tmp / "portal.yaml"),
            "SGLANG_ARGS_FILE": str(tmp / "sglang-args.conf"),
            "WORKSPACE": str(tmp / "workspace"),
            "PORTAL_DIR": str(tmp / "no-portal"),
            # the template
            "SGLANG_MODEL": self.model,
            "SGLANG_COMMAND": shlex.join([sys.executable, str(STANDIN)]),
            "LAUNCHER_SERVER_PORT": str(self.sglang_port),
            "PORTAL_CONFIG": f"localhost:{self.api_port}:{self.sglang_port}:/:SGLang API",
            "OPEN_BUTTON_TOKEN": TOKEN,
            "GPU_COUNT": "1",
            "HF_HUB_OFFLINE": "1",
            "LAUNCHER_STARTUP_PERIOD": "0.1",
            "LAUNCHER_LIVENESS_PERIOD": "0.5",
            "LAUNCHER_STOP_TIMEOUT": "5",
            # the stand-in: a server tree of three processes, a short warm-up, slow streaming
            "STANDIN_CHILDREN": "2",
            "STANDIN_WARMUP": "0.5",
            "STANDIN_STATE_DIR": str(self.state),
            "STANDIN_STREAM_INTERVAL": str(STREAM_INTERVAL),
        }

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_launcher(*args, env=self.env)

    def ready(self) -> dict[str, Any] | None:
        done = self.cli("status", "--json")
        if done.returncode != 0:
            return None
        data = json.loads(done.stdout)
        return data if isinstance(data, dict) and data.get("state") == "ready" else None

    def starts(self) -> list[dict[str, Any]]:
        found = []
        for path in self.state.glob("start-*.json"):
            try:
                found.append((int(path.stem.split("-")[1]), json.loads(path.read_text())))
            except (OSError, ValueError):
                continue
        return [data for _, data in sorted(found, key=lambda item: item[0])]

    def server_tree(self, start: dict[str, Any]) -> set[int]:
        return {int(start["pid"]), *(int(c) for c in start["children"])}


def running(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture
def container(
    tmp_path: Path, reaper: Reaper, port_factory: Callable[[], int]
) -> Iterator[Container]:
    c = Container(tmp_path, reaper, port_factory)
    yield c
    # whatever the test left: the stand-in's server trees too (they run in their own session)
    for start in c.starts():
        for pid in c.server_tree(start):
            reaper.note(pid)


def test_boot_serve_authenticate_stream_stop(container: Container) -> None:
    c = container
    gate = c.tmp / "stream-gate"
    c.env["STANDIN_STREAM_GATE"] = str(gate)
    proc = c.boot()
    assert c.config.exists()

    # supervisord (the entrypoint's pid, after exec) starts the edge and the launcher
    c.wait(lambda: psutil.Process(proc.pid).name().startswith("supervisord"), "supervisord")
    # with the variables its files expand, exported by entrypoint from the settings
    environ = psutil.Process(proc.pid).environ()
    assert environ["LAUNCHER_PYTHON"] == sys.executable
    assert environ["LAUNCHER_SUPERVISOR_STOPWAIT"] == "35"  # LAUNCHER_STOP_TIMEOUT + 30
    assert environ["LAUNCHER_RUN_DIR"] == str(c.run_dir)
    try:
        wait_for_port(c.api_port, proc, timeout=60)
    except AssertionError as exc:
        c.fail(str(exc))
    status = c.wait(c.ready, "`status --json` to say ready")
    assert status["model"] == c.model

    c.wait(
        lambda: c.states().get("sglang") == c.states().get("caddy") == "RUNNING",
        "sglang and caddy RUNNING",
    )
    # the portal is not installed here: its wrapper exits 0 and stays EXITED
    assert c.wait(lambda: c.states().get("instance_portal") == "EXITED", "portal EXITED")

    api = f"http://127.0.0.1:{c.api_port}"
    with httpx.Client(base_url=api, follow_redirects=False, timeout=10) as client:
        # no token, wrong token
        assert client.get("/v1/models").status_code == 401
        r = client.get("/v1/models", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        # Bearer
        r = client.get("/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, r.text
        assert r.json()["data"][0]["id"] == c.model
        # Basic
        assert client.get("/v1/models", auth=("vastai", TOKEN)).status_code == 200
        assert client.get("/v1/models", auth=("vastai", "wrong")).status_code == 401
        # ?token= link: redirect with the cookie, then the cookie alone is enough
        r = client.get("/v1/models?token=" + quote(TOKEN, safe=""), headers={"Accept": "text/html"})
        assert r.status_code == 302
        assert r.headers["location"] == "/v1/models"
        name, value = auth_cookie(TOKEN)
        assert r.headers["set-cookie"].startswith(f"{name}={value};")
        assert "HttpOnly" in r.headers["set-cookie"]
        r = client.get(r.headers["location"])
        assert r.status_code == 200, r.text
        client.cookies.clear()
        assert client.get("/v1/models").status_code == 401

        # a streamed chat completion arrives in chunks, not all at the end: the first one
        # comes through the edge while the server holds the rest (STANDIN_STREAM_GATE)
        events: list[str] = []
        with client.stream(
            "POST",
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"model": c.model, "stream": True, "messages": [{"role": "user", "content": "x"}]},
        ) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    if not events:  # a proxy that buffered would never get here
                        gate.touch()
                    events.append(line)
        assert len(events) == 6 and events[-1] == "data: [DONE]", events

    # `supervisorctl restart sglang` is a working manual relaunch
    first = c.starts()[0]
    done = c.ctl("restart", "sglang")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not running(c.server_tree(first)), "restart left the old server tree running"
    c.wait(lambda: len(c.starts()) >= 2, "a second server start")
    c.wait(c.ready, "ready after the restart")

    # `supervisorctl stop sglang` leaves no process of the server tree
    second = c.starts()[1]
    done = c.ctl("stop", "sglang")
    assert done.returncode == 0, done.stdout + done.stderr
    assert c.states()["sglang"] == "STOPPED"
    assert not running(c.server_tree(first) | c.server_tree(second))
    assert c.states()["caddy"] == "RUNNING"

    # SIGTERM to supervisord shuts everything down with nothing left running
    done = c.ctl("start", "sglang")
    assert done.returncode == 0, done.stdout + done.stderr
    c.wait(lambda: len(c.starts()) >= 3, "a third server start")
    c.wait(c.ready, "ready after start")
    everything = {p.pid for p in c.descendants()}
    for start in c.starts():
        everything |= c.server_tree(start)
    caddy = [p for p in c.descendants() if p.name() == "caddy"]
    assert len(caddy) == 1
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        c.fail("supervisord still running 60 s after SIGTERM")
    assert not running(everything | {proc.pid}), c.output()
    output = c.output()
    assert "exited: sglang (exit status 0; expected)" in output or "stopped: sglang" in output


# --- docker stop: TERM to PID 1 -------------------------------------------------------------


ENTRYPOINT = launcher_argv("entrypoint")


def pid1_of(unshare: subprocess.Popen[bytes]) -> psutil.Process:
    """PID 1 of the new PID namespace: the child that `unshare --fork` started."""
    kids = psutil.Process(unshare.pid).children()
    assert len(kids) == 1, kids
    return kids[0]


def status_file_state(c: Container) -> str | None:
    """The state in status.json (the `status` command cannot tell, from outside the PID
    namespace, whether the launcher's pid is alive)."""
    try:
        data = json.loads((c.run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None
    return data.get("state") if isinstance(data, dict) else None


@pytest.mark.parametrize(
    "drain",
    [
        pytest.param(2.5, id="server-drains-quickly"),
        pytest.param(3600, id="server-drains-slowly"),
    ],
)
def test_docker_stop_ends_every_process_on_its_own_within_10_s(
    container: Container, drain: float
) -> None:
    """As `docker stop` does: TERM to PID 1 (`entrypoint`, exec'd into supervisord) in a PID
    namespace of its own, with the default LAUNCHER_STOP_TIMEOUT and SGLang's real 5 s
    watchdog period in the stand-in: every program exits by itself (supervisord kills
    nothing), the request in flight completes through the edge (SIGTERM reaches SGLang's
    main process only, which drains it), and the edge stops after the server. How long that
    takes (under Docker's 10 s) is measured by bench/bench_docker_stop.py, not asserted here:
    a loaded machine stretches every step."""
    c = container
    del c.env["LAUNCHER_STOP_TIMEOUT"]  # the defaults are what is tested
    c.env["STANDIN_DRAIN"] = str(drain)
    unshare = shutil.which("unshare")
    assert unshare is not None
    with open(c.out, "wb") as out:
        c.proc = c.reaper.add(
            subprocess.Popen(
                [unshare, "--pid", "--fork", "--mount-proc", *ENTRYPOINT],
                env=c.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=c.tmp,
                start_new_session=True,
            )
        )
    c.wait(lambda: status_file_state(c) == "ready", "status.json to say ready")
    try:
        wait_for_port(c.api_port, c.proc, timeout=60)
    except AssertionError as exc:
        c.fail(str(exc))
    pid1 = pid1_of(c.proc)
    assert pid1.name().startswith("supervisord")
    everything = {p.pid for p in pid1.children(recursive=True)}

    # a streamed answer is in flight through the edge when the container is stopped
    chunks: list[str] = []
    started = threading.Event()

    def stream() -> None:
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{c.api_port}", timeout=30) as client,
            client.stream(
                "POST",
                "/v1/chat/completions",
                headers={"Authorization": f"Bearer {TOKEN}"},
                json={"model": c.model, "stream": True, "messages": []},
            ) as r,
        ):
            for line in r.iter_lines():
                if line.startswith("data: "):
                    chunks.append(line)
                    started.set()

    reader = threading.Thread(target=stream, daemon=True)
    reader.start()
    assert started.wait(60), "the stream did not start"

    pid1.send_signal(signal.SIGTERM)
    try:
        rc = c.proc.wait(120)
    except subprocess.TimeoutExpired:
        c.fail("PID 1 still running 120 s after SIGTERM")
    output = c.output()
    assert rc == 0, output
    # supervisord never had to SIGKILL a program: each one exited by itself
    assert "with SIGKILL" not in output, output
    assert "stopped: sglang (exit status 0)" in output, output
    assert "stopped: caddy (exit status 0)" in output, output
    # the edge stopped after the server
    assert output.index("stopped: sglang") < output.index("stopped: caddy"), output
    # the answer in flight completed through the edge
    reader.join(60)
    assert len(chunks) == 6 and chunks[-1] == "data: [DONE]", chunks
    # and nothing of the container is left (checked before PID 1 exited: see supervisord)
    assert not running(everything)
