"""Worker mode against the real SGLang gateway (smg from PyPI, and sglang-router 0.3.2 for
users who point at one), on loopback in a private network namespace: two launchers run the
stand-in server and join the gateway.

What a user sees: GET /workers of the gateway, answers through the gateway, the order of
"gone from the gateway" and "server got SIGTERM", status.json and `status`.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LauncherRig, launcher_argv, launcher_env, wait_for
from gateway_rig import MODEL, Gateway, ListingWatcher, Load, request_log


@pytest.fixture
def gateway(net: None, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    gw = Gateway(tmp_path, kind=getattr(request, "param", "smg"))
    try:
        yield gw
    finally:
        gw.stop()


class Worker:
    """One launcher (`run`) with the stand-in, in worker mode. The stand-in asks for the
    instance token on everything but /health, as the auth edge in front of it does."""

    def __init__(self, tmp: Path, name: str, gateway_url: str) -> None:
        (tmp / name).mkdir()
        self.rig = LauncherRig(tmp / name)
        self.token = f"token-{name}"
        self.url = f"http://127.0.0.1:{self.rig.port}"
        self.requests = tmp / name / "requests.jsonl"
        self.env = {
            "LAUNCHER_GATEWAY_URL": gateway_url,
            "LAUNCHER_WORKER_URL": self.url,
            "OPEN_BUTTON_TOKEN": self.token,
            "STANDIN_API_KEY": self.token,
            "STANDIN_REQUEST_LOG": str(self.requests),
            "STANDIN_DRAIN": "1.0",
            "LAUNCHER_LIVENESS_PERIOD": "1",
            "LAUNCHER_GATEWAY_RETRY_MAX": "0.5",
            # smg routes by model: both workers serve the same one.
            "SGLANG_ARGS": f"--served-model-name {MODEL}",
        }

    def start(self, **env: str) -> None:
        self.launcher = self.rig.start(**{**self.env, **env})

    def gateway_state(self) -> str | None:
        data = self.rig.status() or {}
        gw = data.get("gateway") or {}
        return gw.get("state")

    def wait_registered(self, timeout: float = 30) -> None:
        self.rig.wait_for(lambda: self.gateway_state() == "registered", "registered", timeout)

    def log(self) -> list[dict[str, object]]:
        return request_log(self.requests)

    def sigterms(self) -> list[float]:
        return [float(e["t"]) for e in self.log() if e.get("signal") == "SIGTERM"]  # type: ignore[arg-type]

    def completions(self) -> list[dict[str, object]]:
        return [e for e in self.log() if e.get("path") == "/v1/completions"]


@pytest.fixture
def workers(gateway: Gateway, tmp_path: Path) -> Iterator[tuple[Worker, Worker]]:
    a, b = Worker(tmp_path, "a", gateway.url), Worker(tmp_path, "b", gateway.url)
    try:
        yield a, b
    finally:
        a.rig.cleanup()
        b.rig.cleanup()


@pytest.mark.parametrize("gateway", ["smg", "sglang-router"], indirect=True)
def test_two_workers_join_serve_leave_before_sigterm_and_rejoin(
    gateway: Gateway, workers: tuple[Worker, Worker]
) -> None:
    gateway.start()
    a, b = workers
    a.start(STANDIN_WARMUP="0.5")
    b.start()
    a.rig.wait_state("ready")
    b.rig.wait_state("ready")
    a.wait_registered()
    b.wait_registered()
    assert set(gateway.workers()) == {a.url, b.url}
    if gateway.kind == "smg":  # the worker record the launcher sent (join.worker_record)
        record = {w["url"]: w for w in gateway.listing()}[a.url]
        assert record["runtime_type"] == "sglang" and record["worker_type"] == "regular"
        assert record["health"]["timeout_secs"] == 25
        assert record["labels"]["launcher"] == "vast-sglang-launcher"
        assert record["labels"]["served_model_name"] == MODEL  # read from the server

    # Requests through the gateway reach both, with the worker's token.
    for i in range(8):
        status, body = gateway.complete(f"prompt {i}")
        assert status == 200, body
    assert a.completions() and b.completions()
    assert all(e["auth"] and e["status"] == 200 for e in a.completions() + b.completions())

    # `status` shows the registration.
    shown = a.rig.cli("status")
    assert shown.returncode == 0
    assert f"gateway    registered: listed by {gateway.url} as {a.url}" in shown.stdout

    # SIGTERM to A's launcher under load: A leaves the gateway before its server gets SIGTERM,
    # and no request through the gateway fails.
    watcher = ListingWatcher(gateway)
    load = Load(gateway)
    # under way: answers come back and the watcher has seen A listed
    wait_for(lambda: len(load.results) >= 5 and a.url in watcher.last_seen, "the load")
    a.launcher.send_signal(signal.SIGTERM)
    assert a.rig.wait_exit(a.launcher) == 0
    # and goes on after A is gone: more answers, each from B
    after = len(load.results)
    wait_for(lambda: len(load.results) >= after + 6, "answers after A stopped")
    results = load.stop()
    watcher.stop()
    sigterm = min(a.sigterms())  # the first SIGTERM the server got
    assert a.url in watcher.last_seen, "A was never seen listed"
    assert watcher.last_seen[a.url] < sigterm, (watcher.last_seen[a.url], sigterm)
    assert a.url not in gateway.workers()
    failed = [r for r in results if r[1] != 200]
    assert not failed, failed[:3]
    assert len(results) > 10
    final = a.rig.status() or {}
    assert final["state"] == "stopped"
    assert final["gateway"]["state"] == "deregistered"
    assert "deregistered from the gateway" in a.rig.stderr()

    # A restart on request (SIGHUP) takes B out of the gateway first, then registers it again.
    watcher = ListingWatcher(gateway)
    b.launcher.send_signal(signal.SIGHUP)
    b.rig.wait_starts(2)
    b.rig.wait_for(
        lambda: b.gateway_state() == "registered" and bool(b.sigterms()),
        "B registered again after the restart",
    )
    b_sigterm = min(b.sigterms())
    # listed again after the restart: the launcher says "registered" once the gateway took
    # it, which can be before the watcher's next look at the listing on a loaded machine
    wait_for(
        lambda: watcher.last_seen.get(b.url, 0) > b_sigterm,
        "the gateway listing B again after the restart",
    )
    watcher.stop()
    assert gateway.workers() == {b.url: gateway.workers()[b.url]}
    new_pid = b.rig.starts()[-1]["pid"]
    for i in range(3):
        status, body = gateway.complete(f"after restart {i}")
        assert status == 200, body
    assert any(e["pid"] == new_pid for e in b.completions())


def test_worker_registers_once_the_gateway_comes_up(
    gateway: Gateway, workers: tuple[Worker, Worker]
) -> None:
    a, _ = workers
    a.start()
    ready = a.rig.wait_state("ready")
    assert ready["state"] == "ready"  # the missing gateway does not hold the server back
    a.rig.wait_for(lambda: a.gateway_state() == "retrying", "retrying")
    data = a.rig.status() or {}
    assert f"cannot connect to the gateway at {gateway.url}" in data["gateway"]["message"]
    assert a.rig.cli("status").returncode == 0  # serving, even with the gateway down

    gateway.start()
    a.wait_registered(timeout=30)
    assert a.url in gateway.workers()
    status, body = gateway.complete()
    assert status == 200, body

    # Stopping never waits on a gateway that went away again.
    gateway.stop()
    started = time.monotonic()
    a.launcher.send_signal(signal.SIGTERM)
    assert a.rig.wait_exit(a.launcher) == 0
    assert time.monotonic() - started < 15
    assert (a.rig.status() or {})["gateway"]["state"] == "deregister_failed"


def test_worker_mode_needs_a_reachable_address(tmp_path: Path) -> None:
    rig = LauncherRig(tmp_path)
    done = rig.cli("run", LAUNCHER_GATEWAY_URL="http://127.0.0.1:9")
    assert done.returncode == 78
    assert "LAUNCHER_WORKER_URL" in done.stderr
    assert "Traceback" not in done.stderr
    bad = rig.cli("run", LAUNCHER_GATEWAY_URL="gateway:30000", LAUNCHER_WORKER_URL="http://x:1")
    assert bad.returncode == 78
    assert "LAUNCHER_GATEWAY_URL='gateway:30000' is not valid" in bad.stderr


def test_only_rank_zero_joins_the_gateway(gateway: Gateway, workers: tuple[Worker, Worker]) -> None:
    gateway.start()
    head, other = workers
    multi = {"SGLANG_NNODES": "2", "SGLANG_DIST_INIT_ADDR": "127.0.0.1:5000"}
    head.start(SGLANG_NODE_RANK="0", **multi)
    other.start(SGLANG_NODE_RANK="1", **multi)
    head.wait_registered()
    ready = other.rig.wait_state("ready")
    assert "rank > 0" in ready["message"]  # decided at ready: it never registers
    assert other.gateway_state() == "waiting"
    assert set(gateway.workers()) == {head.url}
    other.launcher.send_signal(signal.SIGTERM)
    assert other.rig.wait_exit(other.launcher) == 0
    assert other.gateway_state() == "waiting"


def test_worker_behind_the_auth_edge(gateway: Gateway, tmp_path: Path) -> None:
    """The real Caddy edge in front of the worker: the gateway's token-less /health probe gets
    through (worker mode only), everything else needs the token the worker gave as api_key."""
    import os
    import subprocess

    from conftest import wait_for_port
    from gateway_rig import free_port, http

    gateway.start()
    (tmp_path / "w").mkdir()
    rig = LauncherRig(tmp_path / "w")
    edge_port = free_port()
    common = {
        "OPEN_BUTTON_TOKEN": "edge-token",
        "LAUNCHER_GATEWAY_URL": gateway.url,
        "LAUNCHER_WORKER_URL": f"http://127.0.0.1:{edge_port}",
        "PORTAL_CONFIG": f"localhost:{edge_port}:{rig.port}:/:SGLang API",
        "SGLANG_ARGS": f"--served-model-name {MODEL}",
    }
    edge_env = {
        **rig.env,
        **common,
        # the launcher's run dir, as in the image: the edge routes to SGLang once the status
        # writer's serving marker is there (issue 22), else to the loading page
        "LAUNCHER_PORTAL_YAML": str(tmp_path / "portal.yaml"),
    }
    with open(tmp_path / "edge.log", "wb") as log:
        edge = subprocess.Popen(
            launcher_argv("edge"),
            env=launcher_env(edge_env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(edge_port, edge)
        rig.start(**common)
        rig.wait_for(
            lambda: ((rig.status() or {}).get("gateway") or {}).get("state") == "registered",
            "registered through the edge",
            timeout=30,
        )
        assert f"http://127.0.0.1:{edge_port}" in gateway.workers()
        for _ in range(3):
            status, body = gateway.complete()
            assert status == 200, body
        edge_url = f"http://127.0.0.1:{edge_port}"
        assert http("GET", edge_url + "/health")[0] == 200
        assert http("GET", edge_url + "/v1/models")[0] == 401
        assert http("GET", edge_url + "/v1/models", token="edge-token")[0] == 200
        assert http("POST", edge_url + "/v1/completions", {"prompt": "x"})[0] == 401
    finally:
        rig.cleanup()
        edge.terminate()
        try:
            edge.wait(10)
        except subprocess.TimeoutExpired:
            edge.kill()
            edge.wait(5)
        assert os.path.exists(tmp_path / "edge.log")
