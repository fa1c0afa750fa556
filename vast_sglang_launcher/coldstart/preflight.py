"""Checks made from a repo's file list, before anything is downloaded or loaded.

- disk: the files still missing must fit in the free space of the cache's file system;
- GPU memory: the weights divided by the tensor- (and pipeline-) parallel size must fit in
  one GPU;
- shared memory: with tp > 1, NCCL needs more `/dev/shm` than Docker's default 64 MB.

The checks themselves are pure; `free_bytes` and `shm_bytes` read the file systems.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..units import fmt_bytes
from .hub import HubAccess, HubProblem, is_repo_id, list_files
from .progress import complete_in_cache
from .select import weight_bytes

SHM_NEEDED = 1024**3
"""Below this, tp > 1 gets a warning (NCCL's buffers per rank pair; Docker gives 64 MB)."""


def free_bytes(path: Path) -> int | None:
    """Free bytes of the file system that `path` (or its nearest existing parent) is on."""
    for p in (path, *path.parents):
        if p.exists():
            try:
                return shutil.disk_usage(p).free
            except OSError:
                return None
    return None


def shm_bytes(path: Path = Path("/dev/shm")) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_blocks * st.f_frsize


def disk_problem(repo: str, needed: int, total: int, free: int | None, cache: Path) -> str | None:
    """One line when the missing bytes do not fit, else None."""
    if free is None or needed <= free:
        return None
    return (
        f"not enough disk for {repo}: {fmt_bytes(needed)} still to download "
        f"(of {fmt_bytes(total)}) into {cache}, but only {fmt_bytes(free)} free: "
        "free some space or give the instance a larger disk"
    )


def gpu_memory_warning(
    weights: int, tp: int, gpu_mib: int | None, gpu_name: str, pp: int = 1
) -> str | None:
    """A warning when weights / (tp x pp) exceed one GPU's memory."""
    if gpu_mib is None or tp < 1 or pp < 1 or weights <= 0:
        return None
    per_gpu = weights / (tp * pp)
    if per_gpu <= gpu_mib * 1024 * 1024:
        return None
    split = f"tp={tp}" + (f" x pp={pp}" if pp > 1 else "")
    return (
        f"the weights are {fmt_bytes(weights)}: {fmt_bytes(per_gpu)} per GPU with {split}, "
        f"more than one {gpu_name}'s {fmt_bytes(gpu_mib * 1024 * 1024)}: loading will run "
        "out of memory; use more GPUs (a larger tp) or a quantized model"
    )


def shm_warning(tp: int, shm: int | None) -> str | None:
    """A warning when tp > 1 and /dev/shm is smaller than NCCL needs."""
    if tp <= 1 or shm is None or shm >= SHM_NEEDED:
        return None
    return (
        f"/dev/shm is {fmt_bytes(shm)} and tp={tp}: NCCL needs more shared memory "
        "between the GPUs' processes; start the container with --shm-size 16g (or --ipc=host)"
    )


def _local_weight_bytes(directory: Path) -> int:
    sizes = {}
    for p in directory.rglob("*"):
        if p.is_file():
            sizes[str(p.relative_to(directory))] = p.stat().st_size
    return weight_bytes(sizes)


def known_weight_bytes(
    model: str, revision: str | None, hub_cache: Path, access: HubAccess
) -> int | None:
    """The weights' size: from a local directory, a complete prefetch in the cache, or the
    hub's file list (not in offline mode); None when unknown."""
    local = Path(model).expanduser()
    if local.is_dir():
        return _local_weight_bytes(local)
    if not is_repo_id(model):
        return None
    done = complete_in_cache(hub_cache, model, revision or "main")
    if done is not None:
        return weight_bytes(done.files)
    if access.offline:
        return None
    try:
        listing = list_files(model, revision, access, waits=())  # a plan does not wait
    except HubProblem:
        return None
    return weight_bytes({f.path: f.size for f in listing.files})


def plan_warnings(
    model: str,
    revision: str | None,
    tp: int,
    pp: int,
    gpus: list[tuple[str, int | None]],
    hub_cache: Path,
    access: HubAccess,
    shm: int | None,
) -> list[str]:
    """The plan's preflight warnings: weights / (tp x pp) larger than one GPU (`gpus`: name
    and memory in MiB of each visible GPU), and a /dev/shm too small for tp > 1."""
    warnings = []
    if gpus and gpus[0][1] is not None:
        weights = known_weight_bytes(model, revision, hub_cache, access)
        if weights:
            smallest = min(gpus, key=lambda g: g[1] or 0)
            line = gpu_memory_warning(weights, tp, smallest[1], smallest[0], pp)
            if line:
                warnings.append(line)
    line = shm_warning(tp, shm)
    if line:
        warnings.append(line)
    return warnings
