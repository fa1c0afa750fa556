"""The real SGLang gateway on loopback, in a private network namespace, for tests/scaleout and
bench/bench_gateway.py: smg (the Shepherd Model Gateway, the image's gateway) or its
predecessor sglang-router 0.3.2, both from PyPI.

`private_network()` moves the calling thread (and every process it starts from then on) into a
new network namespace with only `lo` up, and moves it back afterwards: the gateway's ports
and its metrics port never meet another test's, and nothing can reach past loopback. The
gateway asks the hub for a tokenizer; HF_ENDPOINT points at a closed loopback port and
HF_HUB_OFFLINE=1. Tests run as root (CAP_SYS_ADMIN for unshare/setns).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import free_port, private_network

# The suite's one port picker and network namespace, re-exported for the scale-out tests.
__all__ = ["free_port", "private_network"]

MODEL = "Qwen/Qwen2.5-7B-Instruct"
"""The model the launcher rig serves (conftest.LauncherRig: the stand-in reports it)."""


def http(
    method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 10
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw.decode(errors="replace")


GATEWAYS = {
    "smg": [sys.executable, "-m", "smg", "launch"],
    "sglang-router": [sys.executable, "-m", "sglang_router.launch_router"],
}
"""How each gateway starts (smg 1.13.0 `smg/cli.py` `main`: `launch` runs the router alone)."""


class Gateway:
    """The gateway on 127.0.0.1 (round robin, so that requests visibly reach every worker)."""

    def __init__(self, tmp: Path, port: int | None = None, kind: str = "smg") -> None:
        self.kind = kind
        self.port = port or free_port()
        self.metrics_port = free_port()
        self.log_path = tmp / f"gateway-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra: str) -> None:
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self.log_path.parent),
            "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            "HF_HUB_OFFLINE": "1",
            "NO_COLOR": "1",
        }
        argv = [
            *GATEWAYS[self.kind],
            "--host", "127.0.0.1", "--port", str(self.port),
            "--prometheus-host", "127.0.0.1", "--prometheus-port", str(self.metrics_port),
            "--policy", "round_robin", "--log-level", "warn", *extra,
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited {self.proc.returncode}: {self.log()}")
            with contextlib.suppress(OSError):
                if http("GET", self.url + "/workers", timeout=1)[0] == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"gateway did not answer within 30 s: {self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def listing(self) -> list[dict[str, Any]]:
        status, body = http("GET", self.url + "/workers", timeout=5)
        assert status == 200, body
        return list(body["workers"])

    def workers(self) -> dict[str, str]:
        """url -> id of the workers the gateway routes to: smg keeps a removed worker listed
        as "draining" for a few seconds (`drain_workers.rs`), not routed to any more."""
        return {w["url"]: w["id"] for w in self.listing() if w.get("status") != "draining"}

    def complete(self, prompt: str = "hi", model: str = MODEL) -> tuple[int, Any]:
        """smg routes by model (404 model_not_found for one no worker serves)."""
        return http(
            "POST",
            self.url + "/v1/completions",
            {"model": model, "prompt": prompt, "max_tokens": 4},
            timeout=30,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class ListingWatcher:
    """Polls GET /workers every few ms; remembers when each URL was last (and first) seen as
    routable, and when it was last listed at all (smg lists a draining worker a while)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.first_seen: dict[str, float] = {}
        self.last_seen: dict[str, float] = {}
        self.last_listed: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                listing = self.gateway.listing()
                now = time.time()
                for w in listing:
                    self.last_listed[w["url"]] = now
                    if w.get("status") != "draining":
                        self.first_seen.setdefault(w["url"], now)
                        self.last_seen[w["url"]] = now
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Load:
    """Completions through the gateway, one after another in a few threads; every answer kept."""

    def __init__(self, gateway: Gateway, threads: int = 3) -> None:
        self.gateway = gateway
        self.results: list[tuple[float, int, Any]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, body = self.gateway.complete()
            except Exception as exc:
                status, body = -1, repr(exc)
            self.results.append((time.time(), status, body))

    def stop(self) -> list[tuple[float, int, Any]]:
        self._stop.set()
        for t in self._threads:
            t.join()
        return self.results


def request_log(path: Path) -> list[dict[str, Any]]:
    """The stand-in's STANDIN_REQUEST_LOG lines."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
