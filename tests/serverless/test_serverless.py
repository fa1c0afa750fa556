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
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from autoscaler_standin import Autoscaler
from conftest import LauncherRig
from serverless_rig import GIVE_UP, READY, Serverless


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
        assert sv.proc is not None
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
