"""The real JupyterLab behind the real Caddy, both started by the real supervisord from the
project's supervisor/ files (through `entrypoint`, as in the image), in a private network
namespace: nothing reaches past loopback (JupyterLab's extension manager and news never get
out).

SGLang's Python is a virtual environment made here: SGLANG_COMMAND runs the server stand-in
with it, so the kernelspec follows it; it sees ipykernel through a .pth file (ipykernel comes
with JupyterLab in the test venv) and has a module of its own, which Jupyter's Python lacks.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import site
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import pytest
from conftest import CHECKOUT, BootedRoot, Reaper, private_network
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from vast_sglang_launcher.edge.caddyfile import auth_cookie

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "tests" / "sglang_standin.py"
JUPYTER = Path(sys.executable).parent / "jupyter"
TOKEN = "jupyter-edge-token"
PROBE = "sglang_side_probe"

pytestmark = pytest.mark.skipif(
    not (shutil.which("caddy") and shutil.which("supervisord") and JUPYTER.exists())
    and not os.environ.get("CI"),
    reason="needs caddy, supervisord and jupyterlab (CI installs them and runs this test)",
)


def sglang_python(tmp: Path) -> Path:
    """A venv standing for the Python that runs SGLang (see the module's docstring)."""
    venv = tmp / "sglang-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    found = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
        check=True,
        capture_output=True,
        text=True,
    )
    packages = Path(found.stdout.strip())
    (packages / "jupyter-test.pth").write_text(site.getsitepackages()[0] + "\n")
    (packages / f"{PROBE}.py").write_text("WHERE = 'sglang-venv'\n")
    return python


class Instance(BootedRoot):
    """A temporary container root booted by `entrypoint`: supervisord, the edge, the server
    stand-in and Jupyter (on free ports; the namespace is private)."""

    wait_timeout = 180.0

    def __init__(self, tmp: Path, reaper: Reaper, ports: Callable[[], int]) -> None:
        super().__init__(tmp, reaper)
        self.logs = tmp / "logs"
        self.workspace = tmp / "workspace"
        self.workspace.mkdir()
        (tmp / "home").mkdir()
        (tmp / "markers").mkdir()
        model = tmp / "model"
        model.mkdir()
        (model / "config.json").write_text(
            json.dumps({"num_attention_heads": 8, "num_key_value_heads": 8})
        )
        self.python = sglang_python(tmp)
        self.api, self.sglang, self.jupyter, self.jupyter_inside = (ports() for _ in range(4))
        self.env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "LANG": "C.UTF-8",
            "HOME": str(tmp / "home"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": CHECKOUT,
            "LAUNCHER_RUN_DIR": str(tmp / "run"),
            "LAUNCHER_LOG_DIR": str(self.logs),
            "LAUNCHER_MARKER_DIR": str(tmp / "markers"),
            "LAUNCHER_SUPERVISORD_CONFIG": str(self.config),
            "LAUNCHER_PORTAL_YAML": str(tmp / "portal.yaml"),
            "SGLANG_ARGS_FILE": str(tmp / "none.conf"),
            "WORKSPACE": str(self.workspace),
            "PORTAL_DIR": str(tmp / "no-portal"),
            "HF_HUB_OFFLINE": "1",
            "HF_ENDPOINT": "http://127.0.0.1:9",
            "GPU_COUNT": "1",
            "SGLANG_MODEL": str(model),
            "SGLANG_COMMAND": shlex.join([str(self.python), str(STANDIN)]),
            "SGLANG_PORT": str(self.sglang),
            "STANDIN_WARMUP": "0.2",
            "PORTAL_CONFIG": (
                f"localhost:{self.api}:{self.sglang}:/:SGLang API"
                f"|localhost:{self.jupyter}:{self.jupyter_inside}:/:Jupyter"
            ),
            "OPEN_BUTTON_TOKEN": TOKEN,
            "JUPYTER_BIN": str(JUPYTER),
        }


@pytest.fixture
def instance(tmp_path: Path, reaper: Reaper, port_factory: Callable[[], int]) -> Iterator[Instance]:
    with private_network():
        yield Instance(tmp_path, reaper, port_factory)


def jupyter_answers(client: httpx.Client) -> bool:
    try:
        return client.get("/api/status", auth=("vastai", TOKEN)).status_code == 200
    except httpx.TransportError:
        return False


def listeners(port: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.laddr and c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def message(msg_type: str, content: dict[str, Any]) -> str:
    """A Jupyter message (protocol 5.3) for the kernel's websocket, JSON with its channel."""
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": msg_type,
        "session": uuid.uuid4().hex,
        "username": "test",
        "version": "5.3",
        "date": "2026-01-01T00:00:00Z",
    }
    return json.dumps(
        {
            "header": header,
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": "shell",
            "buffers": [],
        }
    )


async def connect(url: str, headers: dict[str, str]) -> WebSocketClientConnection:
    return await websocket_connect(HTTPRequest(url, headers=headers, connect_timeout=30))


async def run_code(url: str, headers: dict[str, str], code: str) -> str:
    """Execute `code` in the kernel over its websocket; what it printed."""
    ws = await connect(url, headers)
    try:
        request = message("execute_request", {"code": code, "silent": False})
        msg_id = json.loads(request)["header"]["msg_id"]
        await ws.write_message(request)
        printed = []
        while True:
            raw = await asyncio.wait_for(ws.read_message(), 120)
            assert raw is not None, "the kernel's websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                printed.append(msg["content"]["text"])
            if msg["msg_type"] == "error":
                raise AssertionError(msg["content"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(printed)
    finally:
        ws.close()


async def kernel_info(url: str, headers: dict[str, str]) -> dict[str, Any]:
    ws = await connect(url, headers)
    try:
        await ws.write_message(message("kernel_info_request", {}))
        while True:
            raw = await asyncio.wait_for(ws.read_message(), 120)
            assert raw is not None, "the kernel's websocket closed"
            msg = json.loads(raw)
            if msg["msg_type"] == "kernel_info_reply":
                return dict(msg["content"])
    finally:
        ws.close()


async def terminal_says(url: str, headers: dict[str, str], line: str, expect: str) -> None:
    ws = await connect(url, headers)
    try:
        await ws.write_message(json.dumps(["stdin", line + "\r"]))
        seen = ""
        while expect not in seen:
            raw = await asyncio.wait_for(ws.read_message(), 60)
            assert raw is not None, f"the terminal closed; it printed {seen!r}"
            kind, *rest = json.loads(raw)
            if kind == "stdout":
                seen += rest[0]
    finally:
        ws.close()


def running(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_jupyter_behind_the_edge_kernel_terminal_and_stop(instance: Instance) -> None:
    c = instance
    proc = c.boot()
    edge = f"http://127.0.0.1:{c.jupyter}"
    with httpx.Client(base_url=edge, follow_redirects=False, timeout=30) as client:
        c.wait(lambda: jupyter_answers(client), "Jupyter through the edge")
        # Jupyter itself listens on loopback only, at the internal port of its entry
        assert listeners(c.jupyter_inside) == {"127.0.0.1"}

        # no credentials, wrong ones: the edge answers 401, Jupyter never sees the request
        assert client.get("/api/status").status_code == 401
        assert client.get("/lab").status_code == 401
        assert client.get("/api/status", auth=("vastai", "wrong")).status_code == 401

        # the login link: a cookie and a redirect to the same path without the token
        r = client.get("/?token=" + quote(TOKEN), headers={"Accept": "text/html"})
        assert r.status_code == 302, r.text
        assert r.headers["location"] == "/"
        name, value = auth_cookie(TOKEN)
        assert r.headers["set-cookie"].startswith(f"{name}={value};")
        # then the browser, with the cookie alone: Jupyter sends it on to JupyterLab
        r = client.get("/")
        assert r.status_code == 302, r.text
        # (jupyter_server `base/handlers.py` RedirectWithParams: `/lab?` + the query)
        assert r.headers["location"].split("?")[0] == "/lab"
        r = client.get("/lab")
        assert r.status_code == 200
        assert "JupyterLab" in r.text
        xsrf = client.cookies["_xsrf"]
        # Vast's "Jupyter Terminal" link
        assert client.get("/terminals/1").status_code == 200

        # the default kernel is SGLang's Python
        specs = client.get("/api/kernelspecs").json()
        assert specs["default"] == "python3"
        assert specs["kernelspecs"]["python3"]["spec"]["argv"][0] == str(c.python)
        # a kernel started as JupyterLab starts one (cookie + Jupyter's XSRF header)
        r = client.post("/api/kernels", json={"name": "python3"}, headers={"X-XSRFToken": xsrf})
        assert r.status_code == 201, r.text
        kernel = r.json()["id"]
        r = client.post("/api/terminals", headers={"X-XSRFToken": xsrf})
        assert r.status_code == 200, r.text
        terminal = r.json()["name"]
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())

    ws = f"ws://127.0.0.1:{c.jupyter}"
    channels = f"{ws}/api/kernels/{kernel}/channels?session_id={uuid.uuid4().hex}"
    # a websocket upgrade without credentials is refused by the edge
    with pytest.raises(HTTPClientError) as refused:
        asyncio.run(connect(channels, {}))
    assert refused.value.code == 401
    # with the link's cookie (what a browser sends), code runs in SGLang's Python
    printed = asyncio.run(
        run_code(
            channels,
            {"Cookie": cookie},
            f"import sys, {PROBE}; print(sys.executable, {PROBE}.WHERE)",
        )
    )
    assert printed.split() == [str(c.python), "sglang-venv"]
    # a browser also sends its page's Origin: Caddy passes Host through unchanged, so
    # Jupyter's origin check (Origin == Host) lets the instance's own page in, and refuses a
    # websocket opened by another site's page even with the login cookie
    info = asyncio.run(kernel_info(channels, {"Cookie": cookie, "Origin": edge}))
    assert info["status"] == "ok"
    with pytest.raises(HTTPClientError) as foreign:
        asyncio.run(connect(channels, {"Cookie": cookie, "Origin": "http://elsewhere.test"}))
    assert foreign.value.code == 403
    # Bearer and ?token= open the kernel's websocket too
    info = asyncio.run(kernel_info(channels, {"Authorization": f"Bearer {TOKEN}"}))
    assert info["status"] == "ok"
    info = asyncio.run(kernel_info(f"{channels}&token={quote(TOKEN)}", {}))
    assert info["status"] == "ok"
    # a terminal, over its websocket, in a shell
    asyncio.run(
        terminal_says(
            f"{ws}/terminals/websocket/{terminal}", {"Cookie": cookie}, "echo $((6*7))", "42"
        )
    )

    # Jupyter's output: in jupyter.log and in the container log
    log = c.logs / "jupyter.log"
    c.wait(lambda: "Jupyter Server" in log.read_text(), "Jupyter's lines in jupyter.log")
    c.wait(lambda: "is running at" in c.output(), "Jupyter's lines in the container log")
    assert c.states()["jupyter"] == "RUNNING"

    # docker stop: supervisord stops the server, then Jupyter and the edge together (the group
    # `services`, supervisor/supervisord.conf); nothing is left
    everything = {p.pid for p in c.descendants()}
    kernels = [p for p in c.descendants() if "ipykernel_launcher" in " ".join(p.cmdline())]
    assert len(kernels) == 1, kernels
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(90)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"supervisord still runs 90 s after SIGTERM\n{c.output()}") from None
    output = c.output()
    assert not running(everything), output
    assert "with SIGKILL" not in output, output
    assert "stopped: jupyter (exit status 0)" in output, output
    assert output.index("stopped: sglang") < output.index("stopped: jupyter"), output
    assert output.index("stopped: sglang") < output.index("stopped: caddy"), output
