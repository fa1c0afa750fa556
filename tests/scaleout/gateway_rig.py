"""The real SGLang gateway (sglang-router from PyPI) on loopback, in a private network
namespace, for tests/scaleout and bench/bench_gateway.py.

`private_network()` moves the calling thread (and every process it starts from then on) into a
new network namespace with only `lo` up, and moves it back afterwards: the gateway's ports
and its metrics port never meet another test's, and nothing can reach past loopback. The
gateway asks the hub for a tokenizer; HF_ENDPOINT points at a closed loopback port and
HF_HUB_OFFLINE=1. Tests run as root (CAP_SYS_ADMIN for unshare/setns).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import free_port

__all__ = ["free_port"]  # the suite's one port picker, re-exported for the scale-out tests

CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def private_network() -> Iterator[None]:
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)} (tests run as root)")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")
    finally:
        os.close(home)


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


class Gateway:
    """`python -m sglang_router.launch_router` on 127.0.0.1 (round robin, so that requests
    visibly reach every worker)."""

    def __init__(self, tmp: Path, port: int | None = None) -> None:
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
            sys.executable, "-m", "sglang_router.launch_router",
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

    def workers(self) -> dict[str, str]:
        """url -> id of the workers the gateway lists."""
        status, body = http("GET", self.url + "/workers", timeout=5)
        assert status == 200, body
        return {w["url"]: w["id"] for w in body["workers"]}

    def complete(self, prompt: str = "hi") -> tuple[int, Any]:
        return http(
            "POST",
            self.url + "/v1/completions",
            {"model": "m", "prompt": prompt, "max_tokens": 4},
            timeout=30,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class ListingWatcher:
    """Polls GET /workers every few ms; remembers when each URL was last (and first) seen."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.first_seen: dict[str, float] = {}
        self.last_seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                urls = self.gateway.workers()
                now = time.time()
                for url in urls:
                    self.first_seen.setdefault(url, now)
                    self.last_seen[url] = now
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
