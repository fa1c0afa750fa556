"""The phase tracker as status.json and the log see it: phases, durations, detail (download
progress, shards), restarts, the stall watchdog, and the formats of its lines. The
milestones are SGLang's own lines (coldstart/phases.py names where each is printed). The
mutation run (scripts/mutation.py) uses these for coldstart/phases.py."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from vast_sglang_launcher.coldstart.phases import (
    ORDER,
    SERVER_PHASES,
    PhaseTracker,
    fmt_duration,
    milestone,
    shard_progress,
)
from vast_sglang_launcher.timestamps import iso
from vast_sglang_launcher.units import fmt_bytes


class Rig:
    """A tracker with a hand-moved clock, what it published and what it logged."""

    def __init__(self, stall: float = 600.0) -> None:
        self.now = 1000.0
        self.published: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.tracker = PhaseTracker(self._publish, self, stall, lambda: self.now)

    def _publish(self, **kw: Any) -> None:
        self.published.append(kw)

    def info(self, msg: str, **kw: Any) -> None:
        self.lines.append(msg)

    @property
    def phase(self) -> dict[str, Any]:
        phase = self.published[-1]["phase"]
        assert isinstance(phase, dict)
        return phase


def test_the_server_phases_are_the_ones_from_starting_on() -> None:
    assert ORDER[2:] == SERVER_PHASES
    assert SERVER_PHASES[0] == "starting" and SERVER_PHASES[-1] == "ready"


def test_download_progress_advances_in_the_published_phase() -> None:
    rig = Rig()
    rig.tracker.enter("downloading", bytes_total=100)
    assert rig.phase["name"] == "downloading" and rig.phase["bytes_total"] == 100
    rig.now += 1
    rig.tracker.update(bytes_done=10)
    assert (rig.phase["bytes_done"], rig.phase["bytes_total"]) == (10, 100)
    rig.tracker.update(bytes_done=60)
    assert rig.phase["bytes_done"] == 60
    assert rig.phase["elapsed_s"] == 1.0
    assert rig.phase["title"] == "downloading the weights"


def test_a_new_phase_starts_with_its_own_detail() -> None:
    rig = Rig()
    rig.tracker.enter("downloading", bytes_done=5)
    rig.tracker.new_start()
    assert "bytes_done" not in rig.phase
    assert [h["phase"] for h in rig.published[-1]["phases"]] == ["downloading", "starting"]
    assert rig.published[-1]["previous_phases"] == []


def test_entering_logs_the_phase_and_how_long_the_last_took() -> None:
    rig = Rig()
    rig.tracker.enter("waiting_provisioning")
    assert rig.lines == ["phase: waiting for provisioning"]
    rig.now += 75
    rig.tracker.enter("downloading")
    assert (
        rig.lines[-1] == "phase: downloading the weights (waiting for provisioning took 1 min 15 s)"
    )
    rig.tracker.enter("downloading")  # already there: nothing
    assert len(rig.lines) == 2
    phases = rig.published[-1]["phases"]
    assert phases[0]["duration_s"] == 75.0 and phases[1]["duration_s"] is None
    assert phases[0]["started_at"] == iso(1000.0)
    assert rig.phase["since"] == iso(1075.0)


def test_the_phase_never_goes_back_within_a_start() -> None:
    rig = Rig()
    rig.tracker.new_start()
    rig.tracker.feed([b"[TP0] Capture cuda graph begin.\n"])
    rig.tracker.feed([b"[TP1] Load weight begin\n", b"KV Cache is allocated\n"])
    assert rig.tracker.current == "cuda_graph"
    rig.tracker.feed([b"The server is fired up and ready to roll!\n"])
    assert rig.tracker.current == "ready"


def test_shards_count_only_while_loading_weights() -> None:
    rig = Rig()
    rig.tracker.new_start()
    bar = b"Loading safetensors checkpoint shards:  50% Completed | 2/4 [00:01<00:01]"
    rig.tracker.feed([bar])
    assert "shards_loaded" not in rig.phase
    rig.tracker.feed([b"Load weight begin\n", bar])
    assert (rig.phase["shards_loaded"], rig.phase["shards_total"]) == (2, 4)
    rig.tracker.feed([b"Loading safetensors checkpoint shards: 100% Completed | 4/4 [00:02]"])
    assert rig.phase["shards_loaded"] == 4
    assert shard_progress(b"no bar") is None
    assert shard_progress(bar) == (2, 4)


def test_a_restart_moves_this_starts_phases_to_previous() -> None:
    rig = Rig()
    rig.tracker.new_start()
    rig.now += 2
    rig.tracker.feed([b"Load weight begin\n"])
    rig.now += 3
    rig.tracker.new_start()
    last = rig.published[-1]
    assert [h["phase"] for h in last["previous_phases"]] == ["starting", "loading_weights"]
    assert [h["duration_s"] for h in last["previous_phases"]] == [2.0, 3.0]
    assert [h["phase"] for h in last["phases"]] == ["starting"]
    assert rig.lines[-1] == "phase: starting the server"


def test_before_any_phase_the_snapshot_is_empty() -> None:
    rig = Rig()
    assert rig.tracker.snapshot() == {"phase": None, "phases": [], "previous_phases": []}
    assert rig.tracker.stalled() is None
    rig.tracker.update(bytes_done=1)  # progress before any phase: published, shown nowhere
    assert rig.published == [{"phase": None, "phases": [], "previous_phases": []}]


@pytest.mark.parametrize(
    ("phase", "what"),
    [("downloading", "no download progress"), ("loading_weights", "no server output")],
)
def test_a_stall_is_named_once_and_clears_on_activity(phase: str, what: str) -> None:
    rig = Rig(stall=60)
    rig.tracker.enter(phase)
    rig.now += 59.9
    assert rig.tracker.stalled() is None
    rig.now += 0.1
    assert rig.tracker.stalled() == (
        f"startup looks stalled: {what} for 1 min 0 s while "
        f"{rig.phase['title']} (LAUNCHER_STALL_TIMEOUT)"
    )
    assert rig.tracker.stalled() is None
    rig.tracker.activity()
    rig.now += 60
    assert rig.tracker.stalled() is not None


@pytest.mark.parametrize("phase", ["ready", "waiting_provisioning"])
def test_no_stall_while_ready_or_waiting_for_provisioning(phase: str) -> None:
    rig = Rig(stall=1)
    rig.tracker.enter(phase)
    rig.now += 100
    assert rig.tracker.stalled() is None


def test_milestones() -> None:
    assert milestone(b"INFO:     Application startup complete.") == "warmup"
    assert milestone(b"load weight BEGIN") == "loading_weights"
    assert milestone(b"[TP0] Memory pool end. avail mem=7.46 GB") == "kv_cache"


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536 * 1024, "1.5 MiB"),
        (3 * 1024**3, "3.0 GiB"),
        (5 * 1024**4, "5120.0 GiB"),
    ],
)
def test_byte_sizes(n: int, text: str) -> None:
    assert fmt_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.04, "0.0 s"),
        (59.94, "59.9 s"),
        (60, "1 min 0 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h 0 min"),
        (3660, "1 h 1 min"),
        (7325, "2 h 2 min"),
    ],
)
def test_durations(seconds: float, text: str) -> None:
    assert fmt_duration(seconds) == text


def test_iso_is_local_time_to_the_millisecond() -> None:
    text = iso(1_700_000_000.1234)
    assert datetime.datetime.fromisoformat(text).timestamp() == pytest.approx(1_700_000_000.123)
    assert text.split("T")[1][8:12] == ".123"


def test_a_long_wait_for_provisioning_is_no_stall_of_the_download_after_it() -> None:
    rig = Rig(stall=60)
    rig.tracker.enter("waiting_provisioning")
    rig.now += 100
    rig.tracker.enter("downloading")
    assert rig.tracker.stalled() is None


def test_durations_and_elapsed_times_to_the_millisecond() -> None:
    rig = Rig()
    rig.tracker.new_start()
    rig.now += 1.23456
    assert rig.tracker.snapshot()["phase"]["elapsed_s"] == 1.235
    rig.tracker.feed([b"Load weight begin\n"])
    assert rig.published[-1]["phases"][0]["duration_s"] == 1.235
    rig.tracker.new_start()
    previous = rig.published[-1]["previous_phases"]
    assert [set(h) for h in previous] == [{"phase", "started_at", "duration_s"}] * 2
    assert previous[0]["started_at"] == iso(1000.0)
