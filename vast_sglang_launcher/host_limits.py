"""The host's limits on this container: its CPU quota and its pids budget (cgroup v2 and v1),
and the decision to cap the thread pools that the launcher starts and hands to the server.

Some hosts show a container far more CPUs than its quota (384 visible, about 46 allowed) with
a small `pids.max` (1024): every pool sized to the visible CPUs (OpenMP, OpenBLAS, MKL,
torch's inductor compile workers, hf-xet's tokio runtime) in every server process then
exhausts the pid budget and `pthread_create` fails with EAGAIN. `thread_caps` is pure;
`read_host_limits` reads /proc and /sys.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

POOL_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TORCHINDUCTOR_COMPILE_THREADS",
    "TOKIO_WORKER_THREADS",
)
"""The thread pools capped: OpenMP (torch's intra-op pool reads it too), OpenBLAS, MKL,
torch inductor's compile workers, and tokio's worker threads, which hf-xet's runtime uses
when it sets none (xet-core xet_threadpool/src/threadpool.rs: the compute runtime is
`new_multi_thread()` without `worker_threads`; tokio's Builder then reads
TOKIO_WORKER_THREADS, a name the hf_xet 1.8.0 binary holds)."""

THREADS_PER_PID_BUDGET = 64
"""Pids per thread of one pool: a server on 8 GPUs runs about a dozen processes (a scheduler
per GPU, the tokenizer, the detokenizer, ...) with a few pools each, plus the threads they
start themselves; a pool of pids.max / 64 threads keeps them all within the budget."""
DANGEROUS_PIDS_PER_CPU = 16
"""A pids budget below 16 per visible CPU is dangerously low for pools sized to the CPUs."""


@dataclass(frozen=True)
class HostLimits:
    visible_cpus: int
    """CPUs the container sees (what a pool sized to the machine takes)."""
    affinity_cpus: int
    """CPUs this process may run on (sched_getaffinity)."""
    cpu_quota: float | None = None
    """CPUs' worth of time the cgroup allows (cpu.max / cfs_quota_us over the period)."""
    pids_max: int | None = None
    """Tasks (processes and threads) the cgroup allows; None: no limit found."""
    source: str = ""
    """Where the values were read (cgroup v2 or v1 files)."""


@dataclass(frozen=True)
class ThreadCaps:
    env: dict[str, str] = field(default_factory=dict)
    """Pool variables to set in the server's (and the prefetch's) environment."""
    kept: tuple[str, ...] = ()
    """Pool variables the user set, left alone."""
    why: str = ""
    """One line for the plan; empty when nothing is capped."""

    @property
    def capped(self) -> bool:
        return bool(self.env or self.kept)


def entitlement(limits: HostLimits) -> int:
    """CPUs this container is entitled to: the affinity, bounded by the quota (at least 1)."""
    cpus = max(1, min(limits.visible_cpus, limits.affinity_cpus))
    if limits.cpu_quota is not None:
        cpus = min(cpus, max(1, math.ceil(limits.cpu_quota)))
    return cpus


def thread_caps(limits: HostLimits, environ: Mapping[str, str]) -> ThreadCaps:
    """The pool sizes to hand out. Pure.

    Capped when the pids budget is dangerously low for pools sized to the visible CPUs
    (below DANGEROUS_PIDS_PER_CPU per CPU), or when the entitlement is less than half of the
    visible CPUs; each pool then gets the entitlement, and at most pids.max /
    THREADS_PER_PID_BUDGET threads. A pool variable already set is never overridden."""
    allowed = entitlement(limits)
    low_pids = (
        limits.pids_max is not None
        and limits.pids_max < limits.visible_cpus * DANGEROUS_PIDS_PER_CPU
    )
    oversubscribed = allowed * 2 <= limits.visible_cpus
    if not (low_pids or oversubscribed):
        return ThreadCaps()
    size = allowed
    if limits.pids_max is not None:
        size = max(1, min(size, limits.pids_max // THREADS_PER_PID_BUDGET))
    reasons = [f"{limits.visible_cpus} CPUs visible"]
    if allowed < limits.visible_cpus:
        reasons.append(f"{allowed} allowed")
    if limits.pids_max is not None:
        reasons.append(f"pids.max {limits.pids_max}")
    kept = tuple(v for v in POOL_VARIABLES if environ.get(v, "").strip())
    env = {v: str(size) for v in POOL_VARIABLES if v not in kept}
    why = f"{', '.join(reasons)} ({limits.source or 'cgroup'}): thread pools capped at {size}"
    if kept:
        why += f"; kept your {', '.join(kept)}"
    return ThreadCaps(env, kept, why)


# --- reading the limits ------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _int(text: str | None) -> int | None:
    if text is None or not text.isdigit():
        return None  # "max" (v2) or "-1" (v1): no limit
    return int(text)


def cgroup_paths(proc_self_cgroup: str) -> dict[str, str]:
    """controller -> cgroup path from /proc/self/cgroup ("" is the v2 unified hierarchy)."""
    found = {}
    for line in proc_self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            found[""] = path
        for c in controllers.split(","):
            if c:
                found[c] = path
    return found


def read_cgroup(root: Path, proc_self_cgroup: str) -> tuple[float | None, int | None, str]:
    """(CPU quota in CPUs, pids.max, where) from the cgroup files under `root` (/sys/fs/cgroup):
    cgroup v2 `cpu.max` ("max 100000" or "QUOTA PERIOD") and `pids.max`; v1
    `cpu/cpu.cfs_quota_us` over `cpu.cfs_period_us` (-1: none) and `pids/pids.max`."""
    paths = cgroup_paths(proc_self_cgroup)
    quota: float | None = None
    pids: int | None = None
    where = ""
    unified = paths.get("")
    if unified is not None and (root / "cgroup.controllers").exists():
        base = root / unified.lstrip("/")
        cpu_max = (_read(base / "cpu.max") or "").split()
        if len(cpu_max) == 2 and cpu_max[0].isdigit() and cpu_max[1].isdigit():
            quota = int(cpu_max[0]) / max(1, int(cpu_max[1]))
        pids = _int(_read(base / "pids.max"))
        where = "cgroup v2"
    else:
        cpu = root / "cpu" / paths.get("cpu", "/").lstrip("/")
        q, period = _read(cpu / "cpu.cfs_quota_us"), _read(cpu / "cpu.cfs_period_us")
        if q is not None and q.isdigit() and period is not None and period.isdigit():
            quota = int(q) / max(1, int(period))
        pids = _int(_read(root / "pids" / paths.get("pids", "/").lstrip("/") / "pids.max"))
        where = "cgroup v1"
    return quota, pids, where


def read_host_limits(root: Path = Path("/sys/fs/cgroup")) -> HostLimits:
    """This process's limits, read from /proc/self/cgroup and the cgroup files."""
    visible = os.cpu_count() or 1
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = visible
    quota, pids, where = read_cgroup(root, _read(Path("/proc/self/cgroup")) or "")
    return HostLimits(visible, affinity, quota, pids, where)
