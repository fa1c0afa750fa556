"""Vast Serverless: the real worker of the `vastai` package (1.9.1), run by `serverless`, in
front of the launcher and its stand-in server, reporting to a loopback stand-in of Vast's
autoscaler; all in a private network namespace (the worker binds every interface).

What a user (and Vast's autoscaler) sees: the reports (not loaded, loaded after the server's
ready line, load, an error only when the launcher gives up), answers through the worker
(completions and chat, also streamed), the program's exit statuses and its log file.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from autoscaler_standin import Autoscaler
from conftest import LauncherRig, private_network

GIVE_UP = "[vast-sglang-launcher] giving up: "
READY = "The server is fired up and ready to roll!"


@pytest.fixture
def net() -> Iterator[None]:
    with private_network():
        yield


class Serverless:
    """The `serverless` program beside a launcher rig."""

    def __init__(self, rig: LauncherRig, scaler: Autoscaler, port: int = 3000) -> None:
        self.rig = rig
        self.scaler = scaler
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.out = rig.tmp / "serverless.out"
        self.env = {
            "SERVERLESS": "true",
            "REPORT_ADDR": scaler.url,
            "CONTAINER_ID": "4242",
            "WORKER_PORT": str(port),
            "PUBLIC_IPADDR": "127.0.0.1",
            f"VAST_TCP_PORT_{port}": str(port),
            "MASTER_TOKEN": "master-token-123456",
            "LAUNCHER_SERVERLESS_PYTHON": sys.executable,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.reqnum = 0

    def start(self) -> None:
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                self.rig.argv("serverless"),
                env={**self.rig.env, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.rig.tmp,
            )

    def output(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def wait_for(self, cond: Any, what: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}\nreports: {self.scaler.seen()[-3:]}\n"
                    f"--- serverless ---\n{self.output()[-4000:]}\n{self.rig.output()}"
                )
            time.sleep(0.05)

    def post(self, route: str, payload: dict[str, Any], signed: bool = True) -> tuple[int, bytes]:
        self.reqnum += 1
        auth = self.scaler.sign(self.url, route, self.reqnum)
        if not signed:
            auth["signature"] = auth["signature"][::-1]
        data = json.dumps({"auth_data": auth, "payload": payload}).encode()
        req = urllib.request.Request(self.url + route, data=data, method="POST")
        req.add_header("Content-Type", "application/json")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def scaler() -> Iterator[Autoscaler]:
    a = Autoscaler()
    yield a
    a.stop()


def _events(data: bytes) -> list[Any]:
    lines = [x[len(b"data: ") :] for x in data.split(b"\n\n") if x.startswith(b"data: ")]
    assert lines[-1] == b"[DONE]", data[-200:]
    return [json.loads(x) for x in lines[:-1]]


def test_worker_reports_loaded_after_ready_serves_and_reports_an_error_only_on_give_up(
    net: None, scaler: Autoscaler, tmp_path: Path
) -> None:
    rig = LauncherRig(tmp_path)
    sv = Serverless(rig, scaler)
    # sglang.log of an earlier boot: its ready and give-up lines are not this boot's.
    rig.logs.mkdir(parents=True)
    (rig.logs / "sglang.log").write_text(f"{READY}\n{GIVE_UP}an earlier boot\n")
    requests = tmp_path / "requests.jsonl"
    try:
        sv.start()
        # Not loaded before the server is: the first reports say so, with no error.
        sv.wait_for(scaler.seen, "a first report")
        first = scaler.seen()[0]
        assert first["id"] == 4242 and first["mtoken"] == "master-token-123456"
        assert first["url"] == sv.url
        assert first["error_msg"] == "" and first["loadtime"] == 0.0
        assert scaler.pubkey_fetches >= 1

        launcher = rig.start(STANDIN_REQUEST_LOG=str(requests), STANDIN_WARMUP="0.3")
        ready = rig.wait_state("ready")
        ready_at = time.time()
        loaded = sv.wait_for(
            lambda: [r for r in scaler.seen() if r["loadtime"] > 0], "loaded reported"
        )[0]
        assert loaded["_t"] >= ready_at - 0.5
        assert loaded["error_msg"] == "" and loaded["max_perf"] > 0  # the benchmark ran
        served = [json.loads(line) for line in requests.read_text().splitlines() if line]
        assert sum(e.get("path") == "/v1/completions" for e in served) >= 8
        assert ready["state"] == "ready"

        # Requests through the worker reach the server: completions and chat, also streamed.
        status, body = sv.post("/v1/completions", {"prompt": "hi", "max_tokens": 7})
        assert status == 200, body
        assert json.loads(body)["object"] == "text_completion"
        status, body = sv.post("/v1/completions", {"prompt": "hi", "max_tokens": 7, "stream": True})
        assert status == 200, body
        chunks = _events(body)
        assert {c["object"] for c in chunks} == {"text_completion"}
        assert "".join(c["choices"][0]["text"] for c in chunks) == "This is a stand-in reply."
        chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 7}
        status, body = sv.post("/v1/chat/completions", chat)
        assert status == 200, body
        assert json.loads(body)["choices"][0]["message"]["role"] == "assistant"
        status, body = sv.post("/v1/chat/completions", {**chat, "stream": True})
        assert status == 200, body
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in _events(body)) == (
            "This is a stand-in reply."
        )
        assert sv.post("/v1/completions", {"prompt": "x"}, signed=False)[0] == 401

        # Load is reported: the requests' workload (their max_tokens) as served.
        sv.wait_for(
            lambda: sum(r["cur_perf"] for r in scaler.seen() if r["_t"] > ready_at) >= 28,
            "the served load reported",
        )
        sv.wait_for(lambda: scaler.deleted, "finished requests reported")

        # A crash the launcher recovers from is no error: the server is ready again and the
        # worker has read that ready line, and nothing reported an error.
        pid = rig.status()["server_pid"]
        psutil.Process(pid).kill()
        rig.wait_for(
            lambda: len(rig.starts()) == 2 and (rig.status() or {}).get("state") == "ready",
            "ready after the restart",
        )
        sv.wait_for(
            lambda: sv.output().count("Got log line indicating model is loaded") >= 2,
            "the worker to read the second ready line",
        )
        reports_before = len(scaler.seen())
        sv.wait_for(lambda: len(scaler.seen()) > reports_before, "one more report")
        assert all(r["error_msg"] == "" for r in scaler.seen())

        # The launcher gives up: its one give-up line is reported as the error at once.
        launcher.send_signal(signal.SIGTERM)
        assert rig.wait_exit(launcher) == 0
        gave_up = rig.start(
            STANDIN_BIND_DELAY="30", STANDIN_CRASH_AFTER="0.3", LAUNCHER_START_RETRIES="0"
        )
        assert rig.wait_exit(gave_up, timeout=30) == 78
        assert (rig.logs / "sglang.log").read_text().count(GIVE_UP) == 2  # the old one too
        errored = sv.wait_for(
            lambda: [r for r in scaler.seen() if r["error_msg"]], "the error reported"
        )[0]
        # In the worker's next report (vastai sends one at least every 10 s: `metrics.py`
        # `_send_metrics_loop`), not after the autoscaler's own timeout.
        assert errored["error_msg"] == GIVE_UP

        # SIGTERM stops the worker; nothing is left behind, its output is in its log file.
        children = [c.pid for c in psutil.Process(sv.proc.pid).children(recursive=True)]
        assert children
        assert sv.stop() == 0
        rig.wait_gone(set(children))
        log = (rig.logs / "serverless.log").read_text()
        assert "Got log line indicating model is loaded" in log
        assert "master-token-123456" not in log  # the worker shows it obfuscated
    finally:
        sv.stop()
        rig.cleanup()


def test_serverless_off_bad_settings_and_no_vastai(tmp_path: Path) -> None:
    rig = LauncherRig(tmp_path)
    off = rig.cli("serverless")
    assert off.returncode == 0
    assert "Vast Serverless is off (SERVERLESS)" in off.stderr
    base = {
        "SERVERLESS": "true",
        "REPORT_ADDR": "http://127.0.0.1:9",
        "CONTAINER_ID": "1",
        "PUBLIC_IPADDR": "127.0.0.1",
        "VAST_TCP_PORT_3000": "40000",
        "LAUNCHER_SERVERLESS_PYTHON": sys.executable,
    }
    cases = {
        "REPORT_ADDR": {"REPORT_ADDR": ""},
        "CONTAINER_ID='abc'": {"CONTAINER_ID": "abc"},
        "VAST_TCP_PORT_3000 is not set": {"VAST_TCP_PORT_3000": ""},
        "VAST_TCP_PORT_3001 is not set": {"WORKER_PORT": "3001"},
        "PUBLIC_IPADDR": {"PUBLIC_IPADDR": ""},
    }
    for needle, change in cases.items():
        done = rig.cli("serverless", **{**base, **change})
        assert done.returncode == 78, (needle, done.stderr)
        assert needle in done.stderr, (needle, done.stderr)
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    # As in Vast's image, the auth edge does not run in serverless mode (exit 0, EXITED).
    edge = rig.cli("edge", SERVERLESS="true", LAUNCHER_CADDY_BIN="/nonexistent/caddy")
    assert edge.returncode == 0, edge.stderr
    assert "serverless mode (SERVERLESS): not starting the auth proxy" in edge.stderr
    # A Python without vastai: one line from the worker, then 78 (final for supervisord).
    bare = rig.cli("serverless", **{**base, "LAUNCHER_SERVERLESS_PYTHON": "/usr/bin/python3 -I"})
    assert bare.returncode == 78, bare.stderr
    assert "cannot import Vast's worker" in bare.stdout + bare.stderr
    assert "Traceback" not in bare.stdout + bare.stderr
