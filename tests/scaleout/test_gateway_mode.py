"""Gateway mode: `gateway` runs the real smg (`smg launch`) behind the real auth edge (Caddy), on
loopback in a private network namespace; a worker launcher joins it with the token."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import STANDIN, LauncherRig, launcher_argv, run_launcher, wait_for_port
from gateway_rig import free_port, http

GATEWAY_TOKEN = "gateway-token"


def base_env(tmp: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(STANDIN.parent.parent),
        "HOME": str(tmp),
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "LAUNCHER_RUN_GATEWAY": "true",
        "OPEN_BUTTON_TOKEN": GATEWAY_TOKEN,
        "LAUNCHER_GATEWAY_COMMAND": shlex.join([sys.executable, "-m", "smg", "launch"]),
        "LAUNCHER_RUN_DIR": str(tmp / "gw-run"),
        "LAUNCHER_PORTAL_YAML": str(tmp / "portal.yaml"),
    }


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        return proc

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    yield p
    p.kill()


def test_gateway_off_exits_zero_at_once(tmp_path: Path) -> None:
    env = {**base_env(tmp_path), "LAUNCHER_RUN_GATEWAY": "false"}
    done = run_launcher("gateway", env=env)
    assert done.returncode == 0
    assert "gateway mode is off (LAUNCHER_RUN_GATEWAY)" in done.stderr


def test_gateway_refusing_its_options_is_final(net: None, tmp_path: Path) -> None:
    env = {**base_env(tmp_path), "LAUNCHER_GATEWAY_ARGS": "--no-such-option 1"}
    done = run_launcher("gateway", env=env, timeout=60)
    assert done.returncode == 78
    assert "LAUNCHER_GATEWAY_ARGS" in done.stderr
    bad = {**base_env(tmp_path), "LAUNCHER_GATEWAY_WORKERS": "http://ok:1 worker2:30000"}
    done = run_launcher("gateway", env=bad)
    assert done.returncode == 78
    assert "LAUNCHER_GATEWAY_WORKERS='worker2:30000' is not valid" in done.stderr


def test_gateway_behind_the_edge_takes_static_and_registering_workers(
    net: None, tmp_path: Path, procs: Procs
) -> None:
    # A static worker: an SGLang server the gateway reaches directly (private network).
    static_port = free_port()
    static = procs.start(
        [sys.executable, str(STANDIN), "--model-path", "m", "--port", str(static_port)],
        {"PATH": "/usr/bin:/bin", "STANDIN_REQUEST_LOG": str(tmp_path / "static.jsonl")},
        tmp_path / "static.log",
    )
    wait_for_port(static_port, static)
    gw_port, metrics = free_port(), free_port()
    env = {
        **base_env(tmp_path),
        "LAUNCHER_GATEWAY_PORT": str(gw_port),
        "LAUNCHER_GATEWAY_WORKERS": f"http://127.0.0.1:{static_port}",
        "LAUNCHER_GATEWAY_ARGS": (
            f"--policy round_robin --log-level warn --prometheus-host 127.0.0.1 "
            f"--prometheus-port {metrics}"
        ),
    }
    gateway = procs.start(launcher_argv("gateway"), env, tmp_path / "gateway.log")
    edge = procs.start(launcher_argv("edge"), env, tmp_path / "edge.log")
    wait_for_port(8010, edge)
    wait_for_port(gw_port, gateway, timeout=30)
    portal = (tmp_path / "portal.yaml").read_text()
    assert '"SGLang Gateway"' in portal and f'"internal_port": {gw_port}' in portal

    edge_url = "http://127.0.0.1:8010"
    assert http("GET", edge_url + "/workers")[0] == 401  # the edge guards the gateway

    def listed() -> set[str]:
        status, body = http("GET", edge_url + "/workers", token=GATEWAY_TOKEN)
        assert status == 200, body
        return {w["url"] for w in body["workers"]}

    deadline = time.monotonic() + 30
    while f"http://127.0.0.1:{static_port}" not in listed():
        assert time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()[-3000:]
        time.sleep(0.1)

    # A worker joins through the edge with the gateway's token; one with a wrong token cannot.
    (tmp_path / "w").mkdir()
    rig = LauncherRig(tmp_path / "w")
    worker_url = f"http://127.0.0.1:{rig.port}"
    try:
        rig.start(
            LAUNCHER_GATEWAY_URL=edge_url,
            LAUNCHER_GATEWAY_TOKEN="wrong",
            LAUNCHER_WORKER_URL=worker_url,
            LAUNCHER_GATEWAY_RETRY_MAX="0.5",
            OPEN_BUTTON_TOKEN="worker-token",
            STANDIN_API_KEY="worker-token",
        )
        rig.wait_for(
            lambda: (
                "HTTP 401 (LAUNCHER_GATEWAY_TOKEN)"
                in (((rig.status() or {}).get("gateway") or {}).get("message") or "")
            ),
            "a refused registration",
        )
        rig.launchers[-1].send_signal(signal.SIGTERM)
        assert rig.wait_exit(rig.launchers[-1]) == 0
        rig.start(
            LAUNCHER_GATEWAY_URL=edge_url,
            LAUNCHER_GATEWAY_TOKEN=GATEWAY_TOKEN,
            LAUNCHER_WORKER_URL=worker_url,
            OPEN_BUTTON_TOKEN="worker-token",
            STANDIN_API_KEY="worker-token",
        )
        rig.wait_for(
            lambda: ((rig.status() or {}).get("gateway") or {}).get("state") == "registered",
            "registered through the gateway's edge",
            timeout=30,
        )
        assert listed() == {f"http://127.0.0.1:{static_port}", worker_url}
        # Clients call the gateway through the edge with its token; it reaches both workers.
        for i in range(4):
            status, body = http(
                "POST", edge_url + "/v1/completions", {"model": "m", "prompt": f"p{i}"},
                token=GATEWAY_TOKEN,
            )  # fmt: skip
            assert status == 200, body
        assert http("POST", edge_url + "/v1/completions", {"prompt": "x"})[0] == 401
        static_log = (tmp_path / "static.jsonl").read_text()
        assert '"/v1/completions"' in static_log
    finally:
        rig.cleanup()

    # SIGTERM stops the gateway (no request is open).
    gateway.send_signal(signal.SIGTERM)
    rc = gateway.wait(20)
    assert rc == 0, rc
