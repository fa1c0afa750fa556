"""What the API port says while SGLang is not ready, computed from status.json documents that
the real writers (StatusFile, PhaseTracker) wrote; and from documents nobody should write."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from vast_sglang_launcher.coldstart.phases import PhaseTracker
from vast_sglang_launcher.edge.loading_html import embedded_json, page
from vast_sglang_launcher.edge.loading_view import loading_view
from vast_sglang_launcher.supervise.status import read_status
from vast_sglang_launcher.supervise.status_writer import StatusFile
from vast_sglang_launcher.timestamps import iso

GiB = 1 << 30


class Quiet:
    def info(self, *a: object, **k: object) -> None:
        pass


def write_phase(path: Path, state: str, phases: list[tuple[str, dict[str, Any]]], **fields: Any):
    """status.json as the launcher writes it: the tracker enters each phase in turn."""
    status = StatusFile(path, argv=["sglang", "serve", "--api-key", "sk-secret-key"])
    clock = [time.time() - 30 * len(phases) - 1.5]  # each phase took 30 s
    tracker = PhaseTracker(status.update, Quiet(), 600, lambda: clock[0])
    status.update(state=state, **fields)
    for name, detail in phases:
        if name == "starting":
            tracker.new_start()
        else:
            tracker.enter(name, **detail)
        clock[0] += 30
    data = read_status(path)
    assert data is not None
    return data


DOWNLOAD = {
    "bytes_done": int(4.2 * GiB),
    "bytes_total": int(15.2 * GiB),
    "rate_bytes_s": 180 << 20,
    "eta_s": 62.0,
}


def test_downloading_says_bytes_rate_and_eta(tmp_path: Path) -> None:
    data = write_phase(
        tmp_path / "status.json",
        "starting",
        [("waiting_provisioning", {}), ("downloading", DOWNLOAD)],
    )
    view = loading_view(data)
    e = view["error"]
    assert e["type"] == "server_not_ready" and e["code"] == "loading"
    assert e["phase"] == "downloading"
    assert e["message"] == (
        "SGLang is loading: downloading the weights, 4.2 GiB of 15.2 GiB, 180.0 MiB/s, "
        "about 1 min left"
    )
    assert e["progress"]["unit"] == "bytes" and e["progress"]["fraction"] == pytest.approx(
        4.2 / 15.2, abs=1e-3
    )
    assert view["retry_after"] == 60  # the ETA, at most a minute
    assert [p["phase"] for p in e["phases"]] == ["waiting_provisioning", "downloading"]
    assert e["phases"][0] == {
        "phase": "waiting_provisioning",
        "title": "waiting for provisioning",
        "state": "done",
        "duration_s": 30.0,
        "duration": "30.0 s",
    }
    assert e["phases"][1]["state"] == "running"


@pytest.mark.parametrize(
    "shards",
    [
        {"shards_done": 3, "shards_total": 8},
        {"shards": {"done": 3, "total": 8}},
        {"shards": "3/8"},
    ],
)
def test_weight_load_shows_shard_progress_however_it_is_named(
    tmp_path: Path, shards: dict[str, Any]
) -> None:
    data = write_phase(
        tmp_path / "status.json", "starting", [("starting", {}), ("loading_weights", shards)]
    )
    e = loading_view(data)["error"]
    assert e["phase"] == "loading_weights"
    assert e["progress"]["text"] == "shard 3 of 8" and e["progress"]["fraction"] == 0.375
    assert e["message"] == "SGLang is loading: loading weights, shard 3 of 8"


@pytest.mark.parametrize(
    "phase, words",
    [
        ("kv_cache", "allocating the KV cache"),
        ("cuda_graph", "capturing CUDA graphs"),
        ("warmup", "warming up"),
    ],
)
def test_each_server_phase_is_named(tmp_path: Path, phase: str, words: str) -> None:
    data = write_phase(tmp_path / "status.json", "starting", [("starting", {}), (phase, {})])
    view = loading_view(data, now=time.time())
    assert view["error"]["phase"] == phase
    assert view["error"]["message"].startswith(f"SGLang is loading: {words} for ")
    assert view["retry_after"] == 5


def test_waiting_for_provisioning(tmp_path: Path) -> None:
    data = write_phase(
        tmp_path / "status.json", "waiting_provisioning", [("waiting_provisioning", {})]
    )
    e = loading_view(data)["error"]
    assert e["phase"] == "waiting_provisioning"
    assert e["message"].startswith("SGLang is loading: waiting for provisioning")


def test_backoff_says_when_the_next_start_is(tmp_path: Path) -> None:
    now = time.time()
    data = write_phase(
        tmp_path / "status.json",
        "backoff",
        [("starting", {})],
        next_start_at=iso(now + 7.2),
        last_reason="the server was killed by SIGKILL after it was ready",
        last_error=["RuntimeError: boom"],
    )
    view = loading_view(data, now=now)
    e = view["error"]
    assert e["phase"] == "backoff" and e["code"] == "loading"
    assert e["message"] == (
        "SGLang is restarting after a crash, next start in 7 s (the server was killed by "
        "SIGKILL after it was ready)"
    )
    assert view["retry_after"] == 8
    assert e["last_lines"] == ["RuntimeError: boom"]


def test_a_give_up_has_the_hint_and_the_cause_and_no_retry(tmp_path: Path) -> None:
    data = write_phase(
        tmp_path / "status.json",
        "failed",
        [("starting", {})],
        last_reason="the server exited with status 1 before it was ready",
        hint="no GPU is visible: run the container with --gpus all",
        last_error=[
            "Traceback (most recent call last):",
            "RuntimeError: No accelerator (CUDA, XPU, HPU, NPU) is available.",
            "[2026-01-01] shutting down",
        ],
    )
    view = loading_view(data)
    e = view["error"]
    assert view["retry_after"] is None
    assert e["code"] == "failed" and e["phase"] == "failed"
    assert e["hint"] == "no GPU is visible: run the container with --gpus all"
    assert e["message"] == (
        "SGLang failed to start and the launcher gave up: the server exited with status 1 "
        "before it was ready. Hint: no GPU is visible: run the container with --gpus all. "
        "Cause: RuntimeError: No accelerator (CUDA, XPU, HPU, NPU) is available."
    )


GARBAGE: list[Any] = [
    None,
    {},
    [],
    {"state": 7, "phase": "downloading", "phases": "x", "last_error": {"a": 1}},
    {"state": "starting", "phase": {"name": "downloading", "bytes_total": "big"}},
    {"state": "starting", "phase": {"name": "nonsense", "since": 12}},
    {"state": "starting", "phase": {"name": "downloading", "bytes_total": float("nan")}},
    {"state": "backoff", "next_start_at": "tomorrow"},
    {"state": "starting", "phases": [None, 1, {"phase": "loading_weights", "duration_s": "x"}]},
    {"state": "starting", "phase": {"name": "loading_weights", "shards": "a/b"}},
]


@pytest.mark.parametrize("doc", GARBAGE, ids=range(len(GARBAGE)))
def test_what_nobody_should_write_reads_as_starting(doc: Any) -> None:
    view = loading_view(doc)
    e = view["error"]
    assert e["type"] == "server_not_ready"
    assert e["phase"] in ("starting", "downloading", "loading_weights", "backoff")
    json.dumps(view, allow_nan=False)  # valid JSON for any client
    assert "<!doctype html>" in page({"error": e})


def test_a_missing_or_broken_file_is_starting(tmp_path: Path) -> None:
    assert read_status(tmp_path / "none.json") is None
    (tmp_path / "partial.json").write_text('{"state": "star')
    assert read_status(tmp_path / "partial.json") is None
    e = loading_view(None)["error"]
    assert e["phase"] == "starting" and e["message"] == "SGLang is loading: starting the server"


def test_the_embedded_json_cannot_close_the_script() -> None:
    view = {"error": {"last_lines": ["</script><script>alert(1)</script> & <!--"]}}
    text = page(view)
    data = text.split('id="data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and ">" not in data and "&" not in data
    assert json.loads(data) == view
    assert json.loads(embedded_json("</x>")) == "</x>"
