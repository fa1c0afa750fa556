"""Benchmark the image (issue 18) with podman on the stand-in bases of tests/image:

- build: `podman build --format docker --network none` of docker/Dockerfile from scratch
  (`--no-cache`; the stand-in bases and the wheelhouse already made), and the wheelhouse
  step on its own;
- size: the image's size minus its SGLANG_BASE's (what the Dockerfile adds);
- boot -> ready: `podman run` until `vast-sglang-launcher status` exits 0 (the stand-in
  server binds at once, so this is the launcher, supervisord and the edge);
- stop: `podman stop --time 10` until the container has exited (exit status 0).

Run (as root, with podman, runc, debootstrap and caddy installed):
    python bench/bench_image.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "image"))

from image_rig import WHEELHOUSE, Podman, sglang_base, vast_base  # noqa: E402

TOKEN = "bench-token"


def size(podman: Podman, image: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    podman = Podman.make()
    sglang, vast = sglang_base(podman), vast_base(podman)
    started = time.monotonic()
    subprocess.run([str(ROOT / "scripts" / "image-wheelhouse.sh"), str(WHEELHOUSE)], check=True)
    wheelhouse = time.monotonic() - started
    tag = "localhost/vast-sglang-test/bench:latest"
    builds = []
    for _ in range(args.runs):
        started = time.monotonic()
        podman(
            "build", "--no-cache", "--format", "docker", "--network", "none", "--pull=never",
            "--file", "docker/Dockerfile", "--build-arg", f"SGLANG_BASE={sglang}",
            "--build-arg", f"VAST_BASE={vast}", "--tag", tag, ".",
            cwd=ROOT, timeout=1800,
        )  # fmt: skip
        builds.append(time.monotonic() - started)
    added = size(podman, tag) - size(podman, sglang)
    ready, stops = [], []
    for _ in range(args.runs):
        name = f"vast-sglang-bench-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        podman(
            "run", "--detach", "--name", name, "--network", "none",
            "--env", f"OPEN_BUTTON_TOKEN={TOKEN}",
            "--env", "SGLANG_MODEL=/opt/sglang-standin/model", tag,
        )  # fmt: skip
        while podman("exec", name, "vast-sglang-launcher", "status", check=False).returncode:
            time.sleep(0.1)
        ready.append(time.monotonic() - started)
        started = time.monotonic()
        podman("stop", "--time", "10", name)
        stops.append(time.monotonic() - started)
        code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0", code
        podman("rm", "--force", name, check=False)
    podman("rmi", "--force", tag, check=False)

    def stats(values: list[float]) -> str:
        return (
            f"median {statistics.median(values):.1f} s "
            f"(min {min(values):.1f}, max {max(values):.1f}, n={len(values)})"
        )

    print(
        json.dumps(
            {
                "wheelhouse": f"{wheelhouse:.1f} s",
                "build --no-cache": stats(builds),
                "added to the base": f"{added / 1e6:.0f} MB",
                "run -> status ready": stats(ready),
                "stop --time 10": stats(stops),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
