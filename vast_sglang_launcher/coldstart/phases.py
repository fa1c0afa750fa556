"""Where a start is: phases read from SGLang's own log milestones, their durations, and the
stall watchdog.

Phases, in order: waiting_provisioning, downloading, starting (the server process runs but
has not begun loading), loading_weights, kv_cache, cuda_graph, warmup, ready. A phase only
moves forward within one start (every tensor-parallel rank prints the same milestones).

Milestones, as SGLang's logger prints them (`ModelRunner.load_model`, the memory pool,
the CUDA-graph runners, `http_server._wait_and_warmup`; uvicorn's own start-up lines mark the
HTTP server). Releases differ: 0.5.6.post2 and 0.5.8 print "Capture cuda graph begin" /
"end. Time elapsed: ...", later ones name the graph ("Capture target decode CUDA graph
begin", "... end. elapsed=...") and add "elapsed=" to "Load weight end". Both are matched,
case-insensitively:

- "Load weight begin" -> loading_weights
- "Load weight end", "KV Cache is allocated", "Memory pool end" -> kv_cache
- "Capture ... graph begin" -> cuda_graph (every graph: target, draft, piecewise)
- "Uvicorn running on", "Application startup complete" -> warmup (the HTTP server is up and
  SGLang sends its warm-up request; every graph is captured by then)
- "The server is fired up and ready to roll!" -> ready
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from ..timestamps import iso

ORDER = (
    "waiting_provisioning",
    "downloading",
    "starting",
    "loading_weights",
    "kv_cache",
    "cuda_graph",
    "warmup",
    "ready",
)
SERVER_PHASES = ORDER[ORDER.index("starting") :]
"""The phases of one start of the server (the ones before it belong to the boot)."""
TITLES = {
    "waiting_provisioning": "waiting for provisioning",
    "downloading": "downloading the weights",
    "starting": "starting the server",
    "loading_weights": "loading weights",
    "kv_cache": "allocating the KV cache",
    "cuda_graph": "capturing CUDA graphs",
    "warmup": "warming up",
    "ready": "ready",
}
MILESTONES: tuple[tuple[re.Pattern[bytes], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), phase)
    for pattern, phase in (
        (rb"Load weight begin", "loading_weights"),
        (rb"Load weight end", "kv_cache"),
        (rb"KV Cache is allocated", "kv_cache"),
        (rb"Memory pool end", "kv_cache"),
        (rb"Capture [\w .-]*graph begin", "cuda_graph"),
        (rb"Uvicorn running on", "warmup"),
        (rb"Application startup complete", "warmup"),
        (rb"The server is fired up and ready to roll", "ready"),
    )
)


SHARDS = re.compile(rb"Loading safetensors checkpoint shards:\s*(\d+)% Completed \| (\d+)/(\d+)")
"""SGLang's weight-loading bar (model_loader/weight_utils.py, tqdm with BAR_FORMAT): printed
by rank 0 only, once per shard file (a carriage-return redraw from 0.5.10)."""


def shard_progress(line: bytes) -> tuple[int, int] | None:
    """(shards loaded, shards in all) from a drawing of SGLang's progress bar, or None."""
    found = SHARDS.search(line)
    if found is None:
        return None
    return int(found.group(2)), int(found.group(3))


def milestone(line: bytes) -> str | None:
    """The phase a server line announces, or None."""
    for pattern, phase in MILESTONES:
        if pattern.search(line):
            return phase
    return None


def fmt_duration(seconds: float) -> str:
    s = round(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class PhaseTracker:
    """The current phase and the phases of this start; `publish(phase=..., phases=...)` puts
    them into status.json, `log` gets one line per change."""

    def __init__(
        self,
        publish: Callable[..., None],
        log: Any,
        stall_timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.publish = publish
        self.log = log
        self.clock = clock
        self.stall_timeout = stall_timeout
        self.current: str | None = None
        self.since = 0.0
        self.detail: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.previous: list[dict[str, Any]] = []
        self.last_activity = clock()
        self._stall_warned = False

    # --- phases ---------------------------------------------------------------------------
    def new_start(self) -> None:
        """A server start begins: the phases so far (the boot's waits, or the last start)
        stay; a restart keeps the previous start's list under `previous_phases`."""
        if self.current in SERVER_PHASES:
            self._close(self.clock())
            self.previous, self.history = self.history, []
            self.current = None
        self.enter("starting")

    def enter(self, phase: str, **detail: Any) -> None:
        """Enter `phase` (a no-op when already there, or when it would go back within a
        server start)."""
        if phase == self.current:
            return
        if self.current in ORDER and ORDER.index(phase) < ORDER.index(self.current):
            return
        now = self.clock()
        took = self._close(now)
        came_from = self.current
        self.current, self.since, self.detail = phase, now, dict(detail)
        self.history.append({"phase": phase, "started_at": now, "duration_s": None})
        self.activity()
        extra = f" ({TITLES[came_from]} took {fmt_duration(took)})" if came_from else ""
        self.log.info(f"phase: {TITLES[phase]}{extra}")
        self._publish()

    def update(self, **detail: Any) -> None:
        """New detail for the current phase (download progress)."""
        self.detail.update(detail)
        self._publish()

    def _close(self, now: float) -> float:
        if not self.history or self.history[-1]["duration_s"] is not None:
            return 0.0
        took = now - float(self.history[-1]["started_at"])
        self.history[-1]["duration_s"] = round(took, 3)
        return took

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        phase = None
        if self.current is not None:
            phase = {
                "name": self.current,
                "title": TITLES[self.current],
                "since": iso(self.since),
                "elapsed_s": round(now - self.since, 3),
                **self.detail,
            }
        return {
            "phase": phase,
            "phases": [{**h, "started_at": iso(h["started_at"])} for h in self.history],
            "previous_phases": [{**h, "started_at": iso(h["started_at"])} for h in self.previous],
        }

    def _publish(self) -> None:
        self.publish(**self.snapshot())

    # --- the server's lines -----------------------------------------------------------------
    def feed(self, lines: list[bytes]) -> None:
        """Server output (the line callback of server_output): activity, and milestones."""
        self.activity()
        for line in lines:
            phase = milestone(line)
            if phase is not None:
                self.enter(phase)
            elif self.current == "loading_weights" and (shards := shard_progress(line)):
                self.update(shards_loaded=shards[0], shards_total=shards[1])

    # --- stall watchdog ---------------------------------------------------------------------
    def activity(self) -> None:
        """Output or download bytes moved."""
        self.last_activity = self.clock()
        self._stall_warned = False

    def stalled(self) -> str | None:
        """One warning line when nothing moved for the stall timeout (once per stall)."""
        if self._stall_warned or self.current in (None, "ready", "waiting_provisioning"):
            return None
        quiet = self.clock() - self.last_activity
        if quiet < self.stall_timeout:
            return None
        self._stall_warned = True
        what = "no download progress" if self.current == "downloading" else "no server output"
        return (
            f"startup looks stalled: {what} for {fmt_duration(quiet)} while "
            f"{TITLES[self.current]} (LAUNCHER_STALL_TIMEOUT)"
        )
