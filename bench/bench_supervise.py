"""Benchmark the supervisor (`python -m vast_sglang_launcher run`) on the stand-in server.

Measures, as medians over a few runs:

- first 200 -> ready: from the first 200 on /health (seen by a 1 ms poller here) to the
  launcher's `ready_at` in status.json (the launcher reacts to the "ready to roll" line and
  confirms with /health);
- crash -> new process: from the server's death (SIGKILL of its tree, after ready) to the
  create time of the next server process, minus the configured backoff delay;
- SIGTERM -> empty tree: from SIGTERM to the launcher until the launcher and every process of
  the server tree (leader + 2 children) are gone;
- the launcher's resident memory (RSS and USS) while serving;
- the launcher's CPU use while probing: during startup (port closed, probe every 0.25 s) and
  while serving (liveness probe every LIVENESS_PERIOD s).

Run: python bench/bench_supervise.py [--runs 5] [--idle 10] [--liveness-period 1]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import http.client
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "sglang_standin.py"
sys.path.insert(0, str(ROOT / "tests"))

from conftest import free_port, launcher_argv  # noqa: E402
from conftest import proc_gone as gone  # noqa: E402
from conftest import wait_for as wait_on  # noqa: E402

# a millisecond between looks: the times measured here are no coarser than that
wait_for = functools.partial(wait_on, interval=0.001)


def iso_ts(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


class Launcher:
    def __init__(self, tmp: Path, **extra: str) -> None:
        self.tmp = tmp
        model = tmp / "model"
        model.mkdir()
        (model / "config.json").write_text(
            json.dumps({"num_attention_heads": 8, "num_key_value_heads": 8})
        )
        self.port = free_port()
        self.run_dir = tmp / "run"
        self.state_dir = tmp / "state"
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "LANG": "C.UTF-8",
            "SGLANG_MODEL": str(model),
            "SGLANG_COMMAND": shlex.join([sys.executable, str(STANDIN)]),
            "LAUNCHER_SERVER_PORT": str(self.port),
            "SGLANG_ARGS_FILE": str(tmp / "args.conf"),
            "WORKSPACE": str(tmp / "ws"),
            "LAUNCHER_RUN_DIR": str(self.run_dir),
            "LAUNCHER_LOG_DIR": str(tmp / "logs"),
            "LAUNCHER_MARKER_DIR": str(tmp),
            "GPU_COUNT": "1",
            "HF_HUB_OFFLINE": "1",
            "STANDIN_STATE_DIR": str(self.state_dir),
            "STANDIN_CHILDREN": "2",
            **extra,
        }
        self.proc = subprocess.Popen(
            launcher_argv("run"),
            env=env,
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "launcher.err", "wb"),  # noqa: SIM115
        )
        self.ps = psutil.Process(self.proc.pid)

    def status(self) -> dict[str, Any]:
        try:
            data = json.loads((self.run_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def tree(self) -> set[int]:
        pids: set[int] = set()
        for path in self.state_dir.glob("start-*.json"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            pids.add(int(data["pid"]))
            pids.update(int(c) for c in data["children"])
        return pids

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def first_200(port: int, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
            conn.request("GET", "/health")
            code = conn.getresponse().status
            conn.close()
            if code == 200:
                out.append(time.time())
                return
        except OSError:
            pass
        time.sleep(0.001)


def cpu_percent(ps: psutil.Process, seconds: float) -> float:
    t0 = ps.cpu_times()
    time.sleep(seconds)
    t1 = ps.cpu_times()
    used = (t1.user - t0.user) + (t1.system - t0.system)
    return 100.0 * used / seconds


def run_serving(tmp: Path, idle: float, liveness_period: float) -> dict[str, float]:
    """Start (port closed 6 s, warm-up 0.5 s), idle, then SIGTERM."""
    launcher = Launcher(
        tmp,
        STANDIN_BIND_DELAY="6",
        STANDIN_WARMUP="0.5",
        LAUNCHER_LIVENESS_PERIOD=str(liveness_period),
    )
    try:
        wait_for(lambda: launcher.status().get("state") == "starting", "starting", interval=0.01)
        stop = threading.Event()
        seen: list[float] = []
        poller = threading.Thread(target=first_200, args=(launcher.port, stop, seen))
        time.sleep(0.5)  # let the launcher's own imports and the spawn settle
        startup_cpu = cpu_percent(launcher.ps, 4.0)  # the port is still closed
        poller.start()
        data = wait_for(
            lambda: (s := launcher.status()).get("state") == "ready" and s, "ready", interval=0.002
        )
        poller.join(5)
        stop.set()
        ready_lag = iso_ts(data["ready_at"]) - seen[0] if seen else float("nan")
        time.sleep(0.5)
        mem = launcher.ps.memory_full_info()
        idle_cpu = cpu_percent(launcher.ps, idle)
        tree = launcher.tree() | {launcher.proc.pid}
        t0 = time.monotonic()
        launcher.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: all(gone(p) for p in tree), "empty tree", timeout=30)
        stop_s = time.monotonic() - t0
        launcher.proc.wait(10)
        return {
            "ready_lag_ms": ready_lag * 1000,
            "sigterm_to_empty_ms": stop_s * 1000,
            "rss_mib": mem.rss / 2**20,
            "uss_mib": getattr(mem, "uss", float("nan")) / 2**20,
            "cpu_startup_pct": startup_cpu,
            "cpu_idle_pct": idle_cpu,
        }
    finally:
        launcher.kill()


def run_crash(tmp: Path) -> dict[str, float]:
    """The server crashes (SIGKILL of its tree) 1.5 s after its start, after being ready."""
    delay = 0.01
    launcher = Launcher(
        tmp,
        STANDIN_CRASH_AFTER="1.5",
        LAUNCHER_BACKOFF_INITIAL=str(delay),
        LAUNCHER_STARTUP_PERIOD="0.25",
    )
    try:
        data = wait_for(
            lambda: (s := launcher.status()).get("state") == "ready" and s, "ready", interval=0.01
        )
        pid = int(data["server_pid"])
        wait_for(lambda: gone(pid), "crash", timeout=10)
        crashed = time.monotonic()

        def new_child() -> bool:
            try:
                kids = launcher.ps.children()
            except psutil.Error:
                return False
            return any(k.pid != pid and not gone(k.pid) for k in kids)

        wait_for(new_child, "new server", timeout=10)
        return {"crash_to_new_ms": (time.monotonic() - crashed - delay) * 1000}
    finally:
        launcher.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    ap.add_argument("--liveness-period", type=float, default=1.0)
    args = ap.parse_args()
    results: dict[str, list[float]] = {}
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-supervise-") as tmp:
            one = run_serving(Path(tmp), args.idle, args.liveness_period)
        with tempfile.TemporaryDirectory(prefix="bench-supervise-") as tmp:
            one.update(run_crash(Path(tmp)))
        for key, value in one.items():
            results.setdefault(key, []).append(value)
        print(f"run {i + 1}: " + ", ".join(f"{k}={v:.2f}" for k, v in one.items()), flush=True)
    labels = {
        "ready_lag_ms": "first 200 on /health -> state ready (ms)",
        "crash_to_new_ms": "crash -> new server process, minus the backoff delay (ms)",
        "sigterm_to_empty_ms": "SIGTERM -> launcher and server tree gone (ms)",
        "rss_mib": "launcher RSS while serving (MiB)",
        "uss_mib": "launcher USS while serving (MiB)",
        "cpu_startup_pct": "launcher CPU while the port is closed, probe every 0.25 s (%)",
        "cpu_idle_pct": f"launcher CPU while serving, probe every {args.liveness_period:g} s (%)",
    }
    print()
    print(f"| measure (median of {args.runs}) | median | min | max |")
    print("| --- | ---: | ---: | ---: |")
    for key, label in labels.items():
        vals = results[key]
        print(f"| {label} | {statistics.median(vals):.2f} | {min(vals):.2f} | {max(vals):.2f} |")
    print()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, stand-in server with 2 children"
    )


if __name__ == "__main__":
    main()
