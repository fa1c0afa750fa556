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
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import pytest
from conftest import CHECKOUT, Reaper, wait_for_port

from vast_sglang_launcher.edge.caddyfile import auth_cookie

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "sglang_standin.py"
TOKEN = 'e2e "tok" {x} *+?'
STREAM_INTERVAL = 0.4

pytestmark = pytest.mark.skipif(
    not (shutil.which("caddy") and shutil.which("supervisord")) and not os.environ.get("CI"),
    reason="needs caddy and supervisord (CI installs both and runs this test)",
)


class Container:
    """A temporary container root, booted by `python -m vast_sglang_launcher entrypoint`.

    The environment is what a user and the image give: the paths of this temporary root and
    the template's variables. LAUNCHER_PYTHON and LAUNCHER_SUPERVISOR_STOPWAIT, which the
    supervisor files expand, are deliberately absent: `entrypoint` must export them.
    """

    def __init__(self, tmp: Path, reaper: Reaper, port: Callable[[], int]) -> None:
        self.tmp = tmp
        self.reaper = reaper
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
        self.config = ROOT / "supervisor" / "supervisord.conf"
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
            "SGLANG_PORT": str(self.sglang_port),
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
        self.out = tmp / "container.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def boot(self) -> subprocess.Popen[bytes]:
        with open(self.out, "wb") as out:
            self.proc = self.reaper.add(
                subprocess.Popen(
                    [sys.executable, "-m", "vast_sglang_launcher", "entrypoint"],
                    env=self.env,
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

    def wait(self, cond: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if self.proc is not None and self.proc.poll() is not None:
                self.fail(f"supervisord exited ({self.proc.returncode}) waiting for {what}")
            if time.monotonic() > deadline:
                self.fail(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.1)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vast_sglang_launcher", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
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
        return {line.split()[0]: line.split()[1] for line in lines if len(line.split()) > 1}

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

    def descendants(self) -> list[psutil.Process]:
        assert self.proc is not None
        return psutil.Process(self.proc.pid).children(recursive=True)


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

        # a streamed chat completion arrives in chunks, not all at the end
        arrivals = []
        start = time.monotonic()
        with client.stream(
            "POST",
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"model": c.model, "stream": True, "messages": [{"role": "user", "content": "x"}]},
        ) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    arrivals.append(time.monotonic() - start)
        assert len(arrivals) >= 5, arrivals
        assert arrivals[0] < STREAM_INTERVAL * 2, arrivals
        assert arrivals[-1] - arrivals[0] > STREAM_INTERVAL * 3, arrivals

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
