"""Benchmark: what the loading page's routing costs a ready server's requests through the edge.

Two real Caddies in front of one stand-in SGLang server (ready, serving marker present):
"with" is the Caddyfile `edge` writes (the `file` matcher on the serving marker, then the
proxy; `handle_errors` to the loading page), "without" the same Caddyfile with the SGLang
API's proxy as it was before (`_sglang_lines` without a run dir, no `handle_errors`).
Requests alternate between the two, one keep-alive client each, so both see the same load:

- GET /v1/models with the token, to a minimal upstream that answers in one write (so the
  edge's own time is what varies);
- POST /v1/chat/completions with "stream": true: time to the first streamed chunk.

Run: python bench/bench_loading_edge.py [--requests 2000] [--streams 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from conftest import STANDIN, free_port, wait_for_port  # noqa: E402

from vast_sglang_launcher.edge import caddyfile  # noqa: E402
from vast_sglang_launcher.edge.portal import PortalEntry, portal_entries  # noqa: E402
from vast_sglang_launcher.settings import load_settings  # noqa: E402

TOKEN = "bench-token-0123456789"
FAST_UPSTREAM = r"""
import socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
BODY = b'{"object": "list", "data": [{"id": "m", "object": "model"}]}'
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def do_GET(self):
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def render(run_dir: Path, port: int, upstream: int, loading: bool) -> str:
    settings = load_settings(
        {
            "OPEN_BUTTON_TOKEN": TOKEN,
            "LAUNCHER_RUN_DIR": str(run_dir),
            "LAUNCHER_SERVER_PORT": str(upstream),
            "PORTAL_CONFIG": f"localhost:{port}:{upstream}:/docs:SGLang API",
        }
    )
    if loading:
        return caddyfile.render_caddyfile(settings, portal_entries(settings))
    with_lines, with_errors = caddyfile._sglang_lines, caddyfile._loading_error_lines

    def no_marker(
        entry: PortalEntry,
        run_dir: Path | None,
        indent: str,
        caddy_version: tuple[int, int, int] | None,
    ) -> list[str]:
        return with_lines(entry, None, indent, caddy_version)

    def no_errors(run_dir: Path) -> list[str]:
        return []

    try:
        caddyfile._sglang_lines = no_marker
        caddyfile._loading_error_lines = no_errors
        return caddyfile.render_caddyfile(settings, portal_entries(settings))
    finally:
        caddyfile._sglang_lines, caddyfile._loading_error_lines = with_lines, with_errors


def pct(values: list[float], q: int) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--streams", type=int, default=200)
    args = ap.parse_args()
    caddy = shutil.which("caddy")
    assert caddy, "caddy is not installed"
    tmp = Path(tempfile.mkdtemp(prefix="bench-loading-"))
    run_dir = tmp / "run"
    run_dir.mkdir()
    (run_dir / "serving").touch()
    upstream = free_port()
    procs = []
    try:
        env = {**os.environ, "STANDIN_STREAM_INTERVAL": "0.001"}
        standin_argv = [sys.executable, str(STANDIN), "--model-path", "m"]
        standin_argv += ["--host", "127.0.0.1", "--port", str(upstream)]
        procs.append(
            subprocess.Popen(
                standin_argv,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for_port(upstream, procs[0])
        fast = free_port()
        procs.append(subprocess.Popen([sys.executable, "-c", FAST_UPSTREAM, str(fast)]))
        wait_for_port(fast, procs[-1])
        ports, fast_ports = {}, {}
        for name in ("with", "without"):
            port = free_port()
            config = tmp / f"Caddyfile.{name}"
            config.write_text(render(run_dir, port, upstream, name == "with"))
            cenv = {"PATH": os.environ["PATH"], "HOME": str(tmp / name)}
            procs.append(
                subprocess.Popen(
                    [caddy, "run", "--config", str(config), "--adapter", "caddyfile"],
                    env=cenv,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_for_port(port, procs[-1])
            ports[name] = port
            # the same edge in front of a minimal upstream: the edge's own share shows
            fport = free_port()
            fconfig = tmp / f"Caddyfile.{name}.fast"
            fconfig.write_text(render(run_dir, fport, fast, name == "with"))
            procs.append(
                subprocess.Popen(
                    [caddy, "run", "--config", str(fconfig), "--adapter", "caddyfile"],
                    env={**cenv, "HOME": str(tmp / f"{name}.fast")},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_for_port(fport, procs[-1])
            fast_ports[name] = fport
        clients = {n: httpx.Client(timeout=30) for n in ports}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        health = f"http://127.0.0.1:{ports['with']}/health"
        deadline = time.monotonic() + 60
        while clients["with"].get(health, headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "the stand-in never became ready"
            time.sleep(0.1)
        got: dict[str, list[float]] = {n: [] for n in ports}
        first: dict[str, list[float]] = {n: [] for n in ports}
        for n in ports:  # warm up connections
            for _ in range(50):
                clients[n].get(f"http://127.0.0.1:{fast_ports[n]}/v1/models", headers=headers)
        for i in range(args.requests):
            for n in ports if i % 2 else reversed(list(ports)):
                t0 = time.perf_counter()
                r = clients[n].get(f"http://127.0.0.1:{fast_ports[n]}/v1/models", headers=headers)
                got[n].append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        for i in range(args.streams):
            for n in ports if i % 2 else reversed(list(ports)):
                url = f"http://127.0.0.1:{ports[n]}/v1/chat/completions"
                t0 = time.perf_counter()
                with clients[n].stream("POST", url, headers=headers, json=body) as r:
                    assert r.status_code == 200
                    seen = False
                    for line in r.iter_lines():
                        if not seen and line.startswith("data: "):
                            first[n].append((time.perf_counter() - t0) * 1000)
                            seen = True
        print(f"{'edge':<10} {'GET p50':>9} {'GET p99':>9} {'stream 1st p50':>15} {'p99':>8}")
        for n in ports:
            print(
                f"{n:<10} {pct(got[n], 50):8.2f}ms {pct(got[n], 99):8.2f}ms "
                f"{pct(first[n], 50):14.2f}ms {pct(first[n], 99):7.2f}ms"
            )
        print(f"({args.requests} GETs and {args.streams} streams per edge, interleaved)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
