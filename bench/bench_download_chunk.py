"""Benchmark the hub client's read step (issue 19 item 10): `hub.download` makes
huggingface_hub write every 64 KiB (hub.DOWNLOAD_CHUNK) instead of its default 10 MiB, so that
progress and the stall watchdog see the bytes as they land. This measures what that costs:
the same download from the loopback hub (no rate limit: as fast as loopback and the client
go) with each step, alternately.

Run: python bench/bench_download_chunk.py [--runs 5] [--mb 256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from fake_hub import FakeHub, tiny_repo  # noqa: E402

from vast_sglang_launcher import hub as hubmod  # noqa: E402


def one(hub: FakeHub, chunk: int) -> float:
    hubmod.DOWNLOAD_CHUNK = chunk
    access = hubmod.HubAccess(hub.url, None, 30.0)
    listing = hubmod.list_files("org/big", None, access)
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        hubmod.download(listing, [f.path for f in listing.files], Path(tmp), access, 8)
        return time.perf_counter() - began


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mb", type=float, default=256.0)
    args = ap.parse_args()
    hub = FakeHub({"org/big": tiny_repo(weights_mb=args.mb, shards=4, with_bin=False)})
    times: dict[int, list[float]] = {10 * 1024 * 1024: [], 64 * 1024: []}
    try:
        for _ in range(args.runs):
            for chunk, got in times.items():
                got.append(one(hub, chunk))
    finally:
        hub.close()
    for chunk, got in times.items():
        med = statistics.median(got)
        print(
            f"read step {chunk // 1024:>6} KiB: median {med:.2f} s for {args.mb:g} MiB "
            f"({args.mb / med:.0f} MiB/s), min {min(got):.2f} s, max {max(got):.2f} s"
        )


if __name__ == "__main__":
    main()
