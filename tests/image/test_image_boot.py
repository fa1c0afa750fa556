"""The image booted as a user boots it (issue 18): `podman run --network none`, then, from
inside the container as `docker exec` would, PID 1, the programs, `status` and the
HEALTHCHECK, auth on the published ports, a chat completion streamed through the edge, a
stop within Docker's 10 s with every process exiting on its own, and a second start. Once
with the image's default PORTAL_CONFIG and once with Vast's SGLang template value.

The bases are stand-ins (tests/image/image_rig.py says what they do not prove)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator

import psutil
import pytest
from image_rig import Image, image

__all__ = ["image"]  # the fixture: built once per session (image_rig)

pytestmark = pytest.mark.xdist_group("image")

TOKEN = "image-test-token-5c1d"
MODEL = "/opt/sglang-standin/model"
WHEELS = "/opt/sglang-standin/wheels"
# Vast's own SGLang template (issue 18; tests/edge/test_edge.py VAST_SGLANG_TEMPLATE)
VAST_SGLANG_TEMPLATE = (
    "localhost:1111:11111:/:Instance Portal|localhost:7860:17860:/:Model UI"
    "|localhost:8000:18000:/docs:SGLang API|localhost:8080:18080:/:Jupyter"
    "|localhost:8080:8080:/terminals/1:Jupyter Terminal"
)
READY_WITHIN = 300.0
"""Generous: a loaded 2-core machine; the measured time is in BENCHMARKS.md."""

# Run with the launcher venv's Python inside the container: what a client on the published
# ports sees (the container has no network: the edge is reached on its loopback).
CLIENT = r"""
import json, sys
import httpx

token, model, ports = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]
auth = {"Authorization": f"Bearer {token}"}
out = {}
with httpx.Client(timeout=60) as c:
    out["anonymous"] = c.get("http://127.0.0.1:8000/v1/models").status_code
    out["wrong"] = c.get(
        "http://127.0.0.1:8000/v1/models", headers={"Authorization": "Bearer x"}
    ).status_code
    r = c.get("http://127.0.0.1:8000/v1/models", headers=auth)
    out["models"] = [r.status_code, r.json() if r.status_code == 200 else r.text]
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    events = []
    with c.stream(
        "POST", "http://127.0.0.1:8000/v1/chat/completions", headers=auth, json=body
    ) as r:
        out["chat"] = r.status_code
        out["chat_type"] = r.headers.get("content-type", "")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(line[len("data: "):])
    out["events"] = events
    for port in ports:
        r = c.get(f"http://127.0.0.1:{port}/", headers=auth)
        out[str(port)] = [r.status_code, r.text[:400]]
        out[f"{port}-anonymous"] = c.get(f"http://127.0.0.1:{port}/").status_code
print(json.dumps(out))
"""
PYTHON = "/opt/vast-sglang-launcher/venv/bin/python"
JUPYTER = """
import sys, urllib.request
req = urllib.request.Request(
    "http://127.0.0.1:8080/api/status", headers={"Authorization": "Bearer " + sys.argv[1]}
)
sys.exit(0 if urllib.request.urlopen(req, timeout=10).status == 200 else 1)
"""
"""Exit 0 when Jupyter's API answers through the edge (jupyter_server `/api/status`)."""


class Container:
    def __init__(self, image: Image, env: dict[str, str]) -> None:
        self.image = image
        self.podman = image.podman
        self.name = f"vast-sglang-test-{uuid.uuid4().hex[:10]}"
        args = ["run", "--detach", "--name", self.name, "--network", "none"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        self.podman(*args, image.tag)

    def exec(self, *argv: str, check: bool = False, timeout: float = 120) -> tuple[int, str]:
        done = self.podman("exec", self.name, *argv, check=check, timeout=timeout)
        return done.returncode, done.stdout + done.stderr

    def logs(self) -> str:
        done = self.podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def state(self, field: str) -> str:
        return self.podman(
            "inspect", "--format", "{{.State." + field + "}}", self.name
        ).stdout.strip()

    def wait_for(self, what: str, ok: Callable[[], bool], timeout: float = READY_WITHIN) -> float:
        """Seconds until `ok()`; fails with the container's log after `timeout`."""
        started = time.monotonic()
        while not ok():
            if self.state("Status") != "running":
                raise AssertionError(f"the container stopped before {what}:\n{self.logs()}")
            if time.monotonic() - started > timeout:
                raise AssertionError(f"no {what} after {timeout:.0f} s:\n{self.logs()[-6000:]}")
            time.sleep(0.5)
        return time.monotonic() - started

    def ready(self) -> bool:
        return self.exec("vast-sglang-launcher", "status")[0] == 0

    def processes(self) -> list[psutil.Process]:
        """Every process of the container, seen from the host."""
        init = psutil.Process(int(self.state("Pid")))
        return [init, *init.children(recursive=True)]

    def remove(self) -> None:
        self.podman("rm", "--force", "--time", "0", self.name, check=False)


@pytest.fixture
def boot(image: Image) -> Iterator[Callable[..., Container]]:
    made: list[Container] = []

    def start(**env: str) -> Container:
        c = Container(image, {"OPEN_BUTTON_TOKEN": TOKEN, "SGLANG_MODEL": MODEL, **env})
        made.append(c)
        return c

    yield start
    for c in made:
        c.remove()


def check_running(c: Container, edge_ports: list[int]) -> dict[str, object]:
    facts: dict[str, object] = {}
    facts["ready_s"] = round(c.wait_for("ready status", c.ready), 1)
    # PID 1 is supervisord
    _, cmdline = c.exec("cat", "/proc/1/cmdline")
    assert "supervisord" in cmdline, cmdline
    # Jupyter (both PORTAL_CONFIGs name it) answers behind the edge on 8080, with the token
    c.wait_for("Jupyter behind the edge", lambda: c.exec(PYTHON, "-c", JUPYTER, TOKEN)[0] == 0)
    # the programs: those a healthy container runs, those that end at once by design
    code, status = c.exec("supervisorctl", "status")
    # "services:caddy" -> "caddy" (supervisor/supervisord.conf, [group:services])
    states = {
        line.split()[0].rpartition(":")[2]: line.split()[1]
        for line in status.splitlines()
        if line.strip()
    }
    expected = {
        "caddy": "RUNNING",
        "gateway": "EXITED",
        "instance_portal": "EXITED",
        "jupyter": "RUNNING",
        "loading_page": "RUNNING",
        "serverless": "EXITED",
        "sglang": "RUNNING",
    }
    assert {k: states.get(k) for k in expected} == expected, status
    # any other program (one added later) runs, or ended on purpose
    assert set(states.values()) <= {"RUNNING", "EXITED"}, status
    assert code == 3  # supervisorctl: not every program is RUNNING (README says so)
    code, status = c.exec("supervisorctl", "status", "sglang", "services:caddy")
    assert code == 0, status
    # the HEALTHCHECK the image declares, run as the engine runs it
    health = c.podman("healthcheck", "run", c.name, check=False)
    assert health.returncode == 0, health.stdout + health.stderr
    code, status = c.exec("vast-sglang-launcher", "status")
    assert code == 0 and "ready" in status, status
    # a client on the published ports
    code, out = c.exec(PYTHON, "-c", CLIENT, TOKEN, MODEL, *map(str, edge_ports))
    assert code == 0, out
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["anonymous"] == 401 and seen["wrong"] == 401
    assert seen["models"][0] == 200, seen["models"]
    assert seen["chat"] == 200 and seen["chat_type"].startswith("text/event-stream")
    events = seen["events"]
    assert events[-1] == "[DONE]" and len(events) >= 3, events
    assert all("choices" in json.loads(e) for e in events[:-1])
    for port in edge_ports:
        status_code, text = seen[str(port)]
        assert seen[f"{port}-anonymous"] == 401
        assert status_code == 502 and f"nothing answers behind port {port}" in text, (port, text)
    return facts


def check_stop(c: Container) -> float:
    """`docker stop` (10 s): supervisord stops every program, each exits on its own."""
    processes = c.processes()
    assert len(processes) >= 4
    started = time.monotonic()
    c.podman("stop", "--time", "10", c.name, timeout=60)
    took = time.monotonic() - started
    logs = c.logs()
    assert c.state("ExitCode") == "0", logs[-4000:]
    assert took < 10, f"stop took {took:.1f} s"
    # Nobody that stops it killed anything: not supervisord ("killing 'x' (pid n) with
    # SIGKILL", "terminated by SIGKILL"), not the launcher ("killing the server's
    # processes"). The server's own exit may read "killed by SIGKILL": SGLang up to 0.5.18
    # ends its tree and itself so once drained (0.5.6.post2 managers/tokenizer_manager.py
    # sigterm_watchdog, kill_process_tree(include_parent=True)), and the stand-in does too.
    for killed in ("with SIGKILL", "terminated by SIGKILL", "killing the server's processes"):
        assert killed not in logs, logs[-4000:]
    left = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], left
    return took


@pytest.mark.parametrize(
    ("portal_config", "down_ports"),
    [(None, [1111]), (VAST_SGLANG_TEMPLATE, [1111, 7860])],
    ids=["default-portal-config", "vast-sglang-template"],
)
def test_the_image_boots_serves_stops_and_starts_again(
    boot: Callable[..., Container], portal_config: str | None, down_ports: list[int]
) -> None:
    env = {"PORTAL_CONFIG": portal_config} if portal_config else {}
    c = boot(**env)
    check_running(c, down_ports)
    check_stop(c)
    assert "first boot: skipped" not in c.logs()
    # a second start: first boot is not run again (its marker is in the container), and
    # it serves again
    c.podman("start", c.name)
    check_running(c, down_ports)
    assert "boot: first boot: skipped" in c.logs()
    check_stop(c)


def test_pip_packages_install_into_an_externally_managed_python(
    boot: Callable[..., Container],
) -> None:
    """First boot installs PIP_PACKAGES into the Python that runs sglang, here Debian's
    python3, which carries the PEP 668 marker (EXTERNALLY-MANAGED): a local wheel (the
    container has no network) must be installed and importable, and the server start."""
    c = boot(PIP_PACKAGES=f"{WHEELS}/standin_extra-1.0-py3-none-any.whl")
    code, marker = c.exec("sh", "-c", "ls /usr/lib/python3*/EXTERNALLY-MANAGED")
    assert code == 0, marker
    c.wait_for("ready status", c.ready)
    code, out = c.exec("python3", "-c", "import standin_extra; print(standin_extra.VALUE)")
    assert (code, out.strip()) == (0, "installed on first boot"), c.logs()[-4000:]
