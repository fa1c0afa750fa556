"""Benchmark the cold start: container start -> server start, with a provisioning script that
sleeps P seconds and a model download from the loopback hub rate-limited to take D seconds.

"Container start" is the moment `entrypoint -- python -m vast_sglang_launcher run` is
started (the image's entrypoint, with `run` in place of supervisord); "server start" is the
moment the SGLang stand-in starts with the weights complete (the mtime of its start record).

- sequential (prefetch off, LAUNCHER_PREFETCH=false): what the image did before: the server
  starts after provisioning and downloads the weights itself. Here the server command is a
  wrapper that downloads with the same huggingface_hub client, then execs the stand-in.
- prefetch (default): the entrypoint starts the download beside provisioning; the server
  starts when both are done.
- cached: a second boot: provisioning complete (it does not run again) and the weights
  complete in the cache (no request for weights): the launcher's fixed cost F.

Run: python bench/bench_coldstart.py [--runs 3] [--pairs 1:2,2:1,2:2]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import free_port  # noqa: E402
from fake_hub import FakeHub, tiny_repo  # noqa: E402

STANDIN = ROOT / "tests" / "sglang_standin.py"
WEIGHTS_MB = 8.0

WRAPPER = """\
import os, sys
from huggingface_hub import snapshot_download
from huggingface_hub.utils.tqdm import disable_progress_bars
disable_progress_bars()
snapshot_download(os.environ["SGLANG_MODEL"], cache_dir=sys.argv[1],
                  endpoint=os.environ["HF_ENDPOINT"],
                  allow_patterns=["*.safetensors", "*.json"])
os.execv(sys.argv[2], sys.argv[2:])
"""


def one_boot(tmp: Path, hub: FakeHub, p: float, mode: str) -> float:
    """Seconds from container start to the stand-in's start."""
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    for old in state.glob("start-*.json"):
        old.unlink()
    (tmp / "markers").mkdir(exist_ok=True)  # a second boot keeps .provisioning_complete
    script = tmp / "provision.sh"
    script.write_text(f"#!/bin/sh\nsleep {p}\n")
    cache = tmp / "ws" / ".cache" / "huggingface" / "hub"
    command = [sys.executable, str(STANDIN)]
    if mode == "sequential":
        wrapper = tmp / "wrapper.py"
        wrapper.write_text(WRAPPER)
        command = [sys.executable, str(wrapper), str(cache), *command]
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "SGLANG_MODEL": "org/tiny",
        "HF_ENDPOINT": hub.url,
        "SGLANG_COMMAND": shlex.join(command),
        "SGLANG_ARGS_FILE": str(tmp / "none"),
        "LAUNCHER_SERVER_PORT": str(free_port()),
        "WORKSPACE": str(tmp / "ws"),
        "LAUNCHER_RUN_DIR": str(tmp / "run"),
        "LAUNCHER_LOG_DIR": str(tmp / "logs"),
        "LAUNCHER_MARKER_DIR": str(tmp / "markers"),
        "PROVISIONING_SCRIPT": str(script),
        "GPU_COUNT": "1",
        "STANDIN_STATE_DIR": str(state),
        "STANDIN_BIND_DELAY": "60",
        "LAUNCHER_PREFETCH": "false" if mode == "sequential" else "true",
    }
    began = time.time()
    with open(tmp / "boot.log", "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vast_sglang_launcher",
                "entrypoint",
                "--",
                sys.executable,
                "-m",
                "vast_sglang_launcher",
                "run",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    try:
        deadline = time.monotonic() + 120
        while not (state / "start-1.json").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no server start ({mode}):\n{(tmp / 'boot.log').read_text()}")
            time.sleep(0.005)
        return (state / "start-1.json").stat().st_mtime - began
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pairs", default="1:2,2:1,2:2", help="P:D pairs in seconds")
    args = ap.parse_args()
    rows = []
    for pair in args.pairs.split(","):
        p, d = (float(x) for x in pair.split(":"))
        repo = tiny_repo(weights_mb=WEIGHTS_MB, shards=4, with_bin=True)
        size = sum(len(v) for k, v in repo.files.items() if not k.endswith(".bin"))
        hub = FakeHub({"org/tiny": repo}, rate=size / d)
        results: dict[str, list[float]] = {"sequential": [], "prefetch": [], "cached": []}
        for _ in range(args.runs):
            for mode in ("sequential", "prefetch"):
                with tempfile.TemporaryDirectory() as t:
                    tmp = Path(t)
                    results[mode].append(one_boot(tmp, hub, p, mode))
                    if mode == "prefetch":
                        before = len(hub.weight_requests())
                        results["cached"].append(one_boot(tmp, hub, p, mode))
                        assert len(hub.weight_requests()) == before, "cached boot asked"
        hub.close()
        for mode, values in results.items():
            rows.append((p, d, mode, statistics.median(values), min(values), max(values)))
    print("| P (s) | D (s) | mode | container start → server start (s), median | min | max |")
    print("| ---: | ---: | --- | ---: | ---: | ---: |")
    for p, d, mode, med, lo, hi in rows:
        print(f"| {p:g} | {d:g} | {mode} | {med:.2f} | {lo:.2f} | {hi:.2f} |")


if __name__ == "__main__":
    main()
