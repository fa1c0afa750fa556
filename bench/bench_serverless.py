"""Benchmark Vast Serverless: the real worker (vastai 1.9.1) run by `serverless` in front of
a launcher supervising the stand-in, reporting to a loopback autoscaler stand-in, in a private
network namespace (run as root). Per run, measured:

- ready -> loaded reported: from the launcher's `ready_at` (status.json) to the first report
  with a load time (the worker's benchmark, 8 rounds of 10 completions against the stand-in,
  plus the framework's fixed 10 s wait);
- give-up -> error reported: from the launcher's exit 78 to the first report with the error;
- request through the worker: the median of 20 signed completions (`max_tokens` 8), against
  the same request to the stand-in directly.

Run: python bench/bench_serverless.py [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "serverless")]

from autoscaler_standin import Autoscaler  # noqa: E402
from conftest import LauncherRig, private_network  # noqa: E402
from report import add, print_table, require_root  # noqa: E402
from serverless_rig import Serverless  # noqa: E402


def direct(port: int) -> float:
    body = json.dumps({"prompt": "hi", "max_tokens": 8}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/completions", data=body, method="POST"
    )
    req.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    start = time.perf_counter()
    with opener.open(req, timeout=30) as resp:
        resp.read()
    return (time.perf_counter() - start) * 1000


def one_run(tmp: Path) -> dict[str, float]:
    scaler = Autoscaler()
    rig = LauncherRig(tmp)
    sv = Serverless(rig, scaler)
    out: dict[str, float] = {}
    try:
        sv.start()
        sv.wait_for(scaler.seen, "a first report")
        launcher = rig.start(PYTHONPATH=str(ROOT), STANDIN_WARMUP="0.3")
        status = rig.wait_for(
            lambda: (rig.status() or {}).get("ready_at") and rig.status(), "ready", timeout=60
        )
        ready_at = datetime.datetime.fromisoformat(status["ready_at"]).timestamp()
        loaded = sv.wait_for(
            lambda: [r for r in scaler.seen() if r["loadtime"] > 0], "loaded", timeout=120
        )[0]
        out["ready_to_loaded_reported_ms"] = (loaded["_t"] - ready_at) * 1000
        through, plain = [], []
        for _ in range(20):
            start = time.perf_counter()
            code, _body = sv.post("/v1/completions", {"prompt": "hi", "max_tokens": 8})
            assert code == 200
            through.append((time.perf_counter() - start) * 1000)
            plain.append(direct(rig.port))
        out["request_through_worker_ms"] = statistics.median(through)
        out["request_direct_ms"] = statistics.median(plain)
        launcher.terminate()
        launcher.wait(30)
        gave_up = rig.start(
            PYTHONPATH=str(ROOT),
            STANDIN_BIND_DELAY="30",
            STANDIN_CRASH_AFTER="0.3",
            LAUNCHER_START_RETRIES="0",
        )
        gave_up.wait(60)
        ended = time.time()
        errored = sv.wait_for(
            lambda: [r for r in scaler.seen() if r["error_msg"]], "error", timeout=60
        )[0]
        out["give_up_to_error_reported_ms"] = (errored["_t"] - ended) * 1000
    finally:
        sv.stop()
        rig.cleanup()
        scaler.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    require_root()
    results: dict[str, list[float]] = {}
    with private_network():
        for i in range(args.runs):
            with tempfile.TemporaryDirectory() as d:
                add(results, one_run(Path(d)))
            print(f"run {i + 1}/{args.runs} done", file=sys.stderr)
    print_table(results)


if __name__ == "__main__":
    main()
