"""The `serverless` program beside a launcher rig, for tests/serverless and
bench/bench_serverless.py: Vast's environment pointing at a loopback autoscaler stand-in, and
requests signed as the autoscaler signs them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from autoscaler_standin import Autoscaler
from conftest import LauncherRig, wait_for

GIVE_UP = "[vast-sglang-launcher] giving up: "
READY = "The server is fired up and ready to roll!"


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

    def wait_for(self, cond: Callable[[], Any], what: str, timeout: float = 60) -> Any:
        return wait_for(
            cond,
            what,
            timeout,
            lambda: (
                f"reports: {self.scaler.seen()[-3:]}\n"
                f"--- serverless ---\n{self.output()[-4000:]}\n{self.rig.output()}"
            ),
            interval=0.05,
        )

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
