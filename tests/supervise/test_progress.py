"""Progress the real server already prints: the weight-loading bar redrawn after a carriage
return (seen live, shown in `status` and status.json, kept byte for byte in sglang.log), and
phases that never go back when "Load weight end" comes after the graph capture
(`--startup-weight-load-mode overlap`, 0.5.18+)."""

from __future__ import annotations

import asyncio
import io
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import LauncherRig

from vast_sglang_launcher.coldstart.phases import PhaseTracker, shard_progress
from vast_sglang_launcher.supervise.server_output import OutputSink, ServerProtocol

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize("release", ["0.5.8", "0.5.23"])
def test_the_shard_bar_is_seen_while_it_is_drawn(rig: LauncherRig, release: str) -> None:
    # 3 shards; the second never finishes: only a redraw with no newline shows "1 of 3".
    launcher = rig.start(STANDIN_RELEASE=release, STANDIN_SHARDS="3", STANDIN_SHARD_TIME="3600")

    def shards() -> Any:
        phase = (rig.status() or {}).get("phase") or {}
        return phase.get("name") == "loading_weights" and phase.get("shards_total") == 3

    rig.wait_for(shards, "the shard progress in status.json", 60)
    assert rig.status()["phase"]["shards_loaded"] == 0
    shown = rig.cli("status")
    assert "loading weights" in shown.stdout and "0 of 3 shards" in shown.stdout, shown.stdout
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher, 60) == 0
    log = (rig.logs / "sglang.log").read_bytes()
    bar = b"\rLoading safetensors checkpoint shards:   0% Completed | 0/3"
    assert bar in log  # the bytes as they came


class _Log:
    def info(self, *args: Any, **kw: Any) -> None:
        pass


def test_a_redrawn_bar_is_split_and_kept_once_in_the_tail() -> None:
    out = io.BytesIO()

    async def run() -> tuple[list[bytes], list[str]]:
        seen: list[bytes] = []
        sink = OutputSink(out, None, 10)
        proto = ServerProtocol(sink, lambda: None, lambda: None, seen.extend)
        chunks = [b"Load weight begin\n\rbar 0/2", b"\rbar 1/2", b"\rbar 2/2\r", b"\nnext\r\n"]
        for chunk in chunks:
            proto.pipe_data_received(1, chunk)
        return seen, sink.last_lines()

    seen, tail = asyncio.run(run())
    assert out.getvalue() == b"Load weight begin\n\rbar 0/2\rbar 1/2\rbar 2/2\r\nnext\r\n"
    assert b"bar 1/2" in seen  # seen as soon as it was drawn, before the next "\r"
    assert tail == ["Load weight begin", "bar 2/2", "next"]


def test_shard_progress_reads_sglangs_bar() -> None:
    line = b"Loading safetensors checkpoint shards:  50% Completed | 1/2 [00:01<00:01,  1.00s/it]\r"
    assert shard_progress(line) == (1, 2)
    assert shard_progress(b"Load weight begin") is None


def test_load_weight_end_after_the_graphs_does_not_go_back() -> None:
    """0.5.18+ model_runner_components/startup_weight_load.py prints "Load weight end.
    Committed real weights after CUDA graph capture" once the graphs are captured."""
    published: list[dict[str, Any]] = []
    tracker = PhaseTracker(lambda **kw: published.append(kw), _Log(), 600.0)
    tracker.new_start()
    tracker.feed(
        [
            b"Load weight begin. avail mem=78.50 GB\n",
            b"KV Cache is allocated. #tokens: 1036794\n",
            b"Capture cuda graph begin. This can take up to several minutes.\n",
            b"Capture cuda graph end. Time elapsed: 1.00 s.\n",
            b"Load weight end. Committed real weights after CUDA graph capture in 2.00 s\n",
            b"INFO:     Uvicorn running on http://127.0.0.1:18000\n",
        ]
    )
    order = [h["phase"] for h in tracker.history]
    assert order == ["starting", "loading_weights", "kv_cache", "cuda_graph", "warmup"]


@pytest.mark.parametrize(("release", "ready_path"), [("0.5.8", "/health"), ("0.5.23", "/ready")])
def test_readiness_on_ready_where_the_release_has_it_liveness_on_health(
    rig: LauncherRig, release: str, ready_path: str
) -> None:
    table = ROOT / "vast_sglang_launcher" / "plan" / "data" / f"server-args-{release}.json"
    requests = rig.tmp / "requests.jsonl"
    launcher = rig.start(
        LAUNCHER_OPTION_TABLE=str(table),
        STANDIN_OPTION_TABLE=str(table),
        STANDIN_REQUEST_LOG=str(requests),
        STANDIN_WARMUP="0.5",
    )
    rig.wait_state("ready", 60)

    def probes() -> list[tuple[str, int]]:
        entries = [json.loads(line) for line in requests.read_text().splitlines()]
        return [(e["path"], e["status"]) for e in entries if "path" in e]

    # the first 200 is on the readiness path; liveness probes after it go to /health
    rig.wait_for(lambda: probes().count(("/health", 200)) >= 2, "liveness probes", 60)
    seen = probes()
    paths = [path for path, _ in seen]
    assert (ready_path, 200) in seen
    if ready_path == "/health":
        assert "/ready" not in paths
    else:
        # readiness on /ready until the first 200; a /ready probe already sent when the ready
        # line arrived may be answered after it (and is dropped): never one after a /health
        last_ready = max(i for i, path in enumerate(paths) if path == "/ready")
        assert all(path == "/ready" for path in paths[: last_ready + 1])
        assert "/ready" not in paths[last_ready + 1 :] and "/health" in paths
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher, 60) == 0
