"""Worker mode: leaving the gateway gets a bounded share of the stop budget, then the
server drains regardless (issue 19, item 4).

The gateway here is a fault: a loopback HTTP server that speaks the gateway's worker API
(sglang-router 0.3.2, as `scaleout/gateway_api.py` reads it: `POST /workers` 202, `GET
/workers` -> `{"workers": [{"id", "url"}]}`, `DELETE /workers/{id}` 202) until the test
turns it bad: it then hangs every request, or accepts the DELETE and keeps listing the
worker. The real gateway does neither on purpose; a hung or overloaded one does.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import LauncherRig, free_port

from vast_sglang_launcher.supervise.stop_budget import deregister_limit


class FaultyGateway(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.port = free_port()
        self.workers: dict[str, str] = {}
        self.mode = "ok"  # "hang": no answer ever; "sticky": DELETE accepted, still listed
        super().__init__(("127.0.0.1", self.port), _Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultyGateway

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _hang(self) -> None:
        while self.server.mode == "hang":
            time.sleep(0.1)
        self.close_connection = True

    def do_GET(self) -> None:
        if self.server.mode == "hang":
            return self._hang()
        workers = [{"id": i, "url": u} for i, u in self.server.workers.items()]
        self._answer(200, {"workers": workers})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.server.mode == "hang":
            return self._hang()
        self.server.workers[str(uuid.uuid4())] = str(body.get("url"))
        self._answer(202, {"status": "accepted"})

    def do_DELETE(self) -> None:
        if self.server.mode == "hang":
            return self._hang()
        worker_id = self.path.rsplit("/", 1)[-1]
        if self.server.mode != "sticky":
            self.server.workers.pop(worker_id, None)
        self._answer(202, {"status": "accepted"})


@pytest.fixture
def gateway() -> Iterator[FaultyGateway]:
    gw = FaultyGateway()
    try:
        yield gw
    finally:
        gw.mode = "ok"
        gw.shutdown()
        gw.server_close()


@pytest.mark.parametrize("fault", ["hang", "sticky"])
def test_a_bad_gateway_delays_the_drain_by_its_share_only(
    gateway: FaultyGateway, tmp_path: Path, fault: str
) -> None:
    rig = LauncherRig(tmp_path)
    stop_timeout, drain_timeout = 8.0, 10.0
    requests = tmp_path / "requests.jsonl"
    try:
        launcher = rig.start(
            LAUNCHER_GATEWAY_URL=gateway.url,
            LAUNCHER_WORKER_URL=f"http://127.0.0.1:{rig.port}",
            LAUNCHER_GATEWAY_RETRY_MAX="0.5",
            LAUNCHER_STOP_TIMEOUT=str(stop_timeout),
            LAUNCHER_GATEWAY_DRAIN_TIMEOUT=str(drain_timeout),
            STANDIN_REQUEST_LOG=str(requests),
            STANDIN_CHILDREN="1",
        )
        rig.wait_for(
            lambda: ((rig.status() or {}).get("gateway") or {}).get("state") == "registered",
            "registered",
            60,
        )
        gateway.mode = fault
        launcher.send_signal(signal.SIGTERM)
        assert rig.wait_exit(launcher, 120) == 0
        limit = deregister_limit(stop_timeout, drain_timeout)
        assert limit < drain_timeout  # the stop budget, not the gateway setting, decides
        final = rig.status() or {}
        assert final["gateway"]["state"] == "deregister_failed", final
        assert f"not confirmed within {limit:g} s" in final["gateway"]["message"], final
        # the server still got its SIGTERM, and drained and ended on its own
        events = [json.loads(line) for line in requests.read_text().splitlines()]
        assert [e["signal"] for e in events if "signal" in e] == ["SIGTERM"]
        assert "killing the server's processes" not in rig.stderr(), rig.output()
        assert final["state"] == "stopped"
    finally:
        rig.cleanup()
