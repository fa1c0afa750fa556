"""Benchmark worker mode against the real SGLang gateway (smg, or sglang-router) on loopback.

In a private network namespace (run as root), per run: a launcher supervising the stand-in
joins a fresh gateway; measured:

- ready -> listed: from the launcher's `ready_at` (status.json) to the first GET /workers of
  a 5 ms poller that lists the worker;
- SIGTERM -> gone: from SIGTERM to the launcher until the poller no longer sees the worker
  as routable (smg: "draining"; sglang-router: not listed);
- SIGTERM -> unlisted: until the worker is not listed at all (smg drains it 5 s first);
- gone -> server SIGTERM: from the last listing to the stand-in's SIGTERM (the drain order:
  positive means the gateway had forgotten the worker first);
- gateway down at first: from the gateway's start (its port answering) to listed, with
  LAUNCHER_GATEWAY_RETRY_MAX=1 (registration retried every 0.5 s, then 1 s).

Run: python bench/bench_gateway.py [--runs 5] [--gateway smg|sglang-router]
"""

from __future__ import annotations

import argparse
import datetime
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "scaleout")]

from conftest import LauncherRig  # noqa: E402
from gateway_rig import Gateway, ListingWatcher, private_network, request_log  # noqa: E402
from report import add, print_table, require_root  # noqa: E402


def ts(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def one_run(tmp: Path, gateway_first: bool, kind: str) -> dict[str, float]:
    gw = Gateway(tmp, kind=kind)
    rig = LauncherRig(tmp)
    url = f"http://127.0.0.1:{rig.port}"
    requests = tmp / "requests.jsonl"
    out: dict[str, float] = {}
    try:
        if gateway_first:
            gw.start()
        watcher = ListingWatcher(gw)
        rig.start(
            PYTHONPATH=str(ROOT),
            LAUNCHER_GATEWAY_URL=gw.url,
            LAUNCHER_WORKER_URL=url,
            OPEN_BUTTON_TOKEN="tok",
            STANDIN_REQUEST_LOG=str(requests),
            LAUNCHER_GATEWAY_RETRY_MAX="1",
        )
        status = rig.wait_for(
            lambda: (rig.status() or {}).get("ready_at") and rig.status(), "ready", timeout=60
        )
        ready_at = ts(status["ready_at"])
        if not gateway_first:
            time.sleep(2.0)
            gw.start()
            up = time.time()
        first = rig.wait_for(lambda: watcher.first_seen.get(url), "listed", timeout=60)
        if gateway_first:
            out["ready_to_listed_ms"] = (first - ready_at) * 1000
        else:
            out["gateway_up_to_listed_ms"] = (first - up) * 1000
        time.sleep(0.5)
        sent = time.time()
        rig.launchers[-1].send_signal(signal.SIGTERM)
        rig.launchers[-1].wait(30)
        rig.wait_for(lambda: url not in {w["url"] for w in gw.listing()}, "unlisted", timeout=30)
        watcher.stop()
        sigterm = min(float(e["t"]) for e in request_log(requests) if e.get("signal") == "SIGTERM")
        last = watcher.last_seen[url]
        out["sigterm_to_gone_ms"] = (last - sent) * 1000
        out["gone_to_server_sigterm_ms"] = (sigterm - last) * 1000
        out["sigterm_to_unlisted_ms"] = (watcher.last_listed[url] - sent) * 1000
    finally:
        rig.cleanup()
        gw.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--gateway", choices=("smg", "sglang-router"), default="smg")
    args = parser.parse_args()
    require_root()
    results: dict[str, list[float]] = {}
    with private_network():
        for i in range(args.runs):
            for first in (True, False):
                with tempfile.TemporaryDirectory() as d:
                    add(results, one_run(Path(d), first, args.gateway))
            print(f"run {i + 1}/{args.runs} done", file=sys.stderr)
    print_table(results)


if __name__ == "__main__":
    main()
