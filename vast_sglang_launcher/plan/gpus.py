"""The GPUs the server will see: NVML's inventory filtered like the CUDA runtime would.

The container runtime hands over the devices named by NVIDIA_VISIBLE_DEVICES; inside the
process CUDA_VISIBLE_DEVICES narrows them further. Both take indices or (GPU or MIG) UUIDs.
Without NVML (no driver, as on a CPU machine) GPU_COUNT stands in, else there are none.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    uuid: str
    memory_mib: int | None
    compute_capability: str | None


@dataclass(frozen=True)
class GpuInventory:
    """The visible GPUs, where the answer came from, and what was odd on the way."""

    gpus: tuple[Gpu, ...]
    source: str
    warnings: tuple[str, ...] = ()
    assumed_count: int | None = None
    """GPU_COUNT when NVML is unavailable: the count without details."""

    @property
    def count(self) -> int:
        return len(self.gpus) if self.assumed_count is None else self.assumed_count

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "source": self.source,
            "devices": [asdict(g) for g in self.gpus],
            "warnings": list(self.warnings),
        }


@dataclass
class _Filter:
    warnings: list[str] = field(default_factory=list)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _query(nvml: Any, handle: Any, index: int) -> Gpu:
    name = _text(nvml.nvmlDeviceGetName(handle))
    uuid = _text(nvml.nvmlDeviceGetUUID(handle))
    memory: int | None
    try:
        memory = int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024)
    except nvml.NVMLError:
        memory = None
    try:
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        capability: str | None = f"{major}.{minor}"
    except nvml.NVMLError:
        capability = None
    return Gpu(index, name, uuid, memory, capability)


def _select(devices: list[Gpu], spec: str, variable: str, nvml: Any, notes: _Filter) -> list[Gpu]:
    """Apply one visibility variable (indices or UUIDs, comma-separated) to a device list."""
    value = spec.strip()
    if value.lower() == "all":
        return devices
    if value.lower() in ("none", "void") or value == "":
        return []
    chosen: list[Gpu] = []
    for raw in value.split(","):
        entry = raw.strip()
        gpu = _find(devices, entry, nvml)
        if gpu is None:
            # The CUDA runtime stops reading the list at the first entry it cannot use.
            notes.warnings.append(
                f"{variable}={spec!r}: entry {entry!r} matches no visible GPU; "
                "devices after it are ignored, as CUDA does"
            )
            break
        if gpu in chosen:
            notes.warnings.append(f"{variable}={spec!r}: {entry!r} is listed twice")
            break
        chosen.append(gpu)
    return chosen


def _find(devices: list[Gpu], entry: str, nvml: Any) -> Gpu | None:
    if entry.isdigit():
        idx = int(entry)
        return devices[idx] if idx < len(devices) else None
    if entry.startswith("MIG-"):
        return _mig(entry, nvml)
    matches = [
        g
        for g in devices
        if g.uuid.startswith(entry if entry.startswith("GPU-") else f"GPU-{entry}")
    ]
    return matches[0] if len(matches) == 1 else None


def _mig(uuid: str, nvml: Any) -> Gpu | None:
    """A MIG instance named by UUID: a device of its own with a slice of the memory."""
    try:
        handle = nvml.nvmlDeviceGetHandleByUUID(uuid.encode())
    except nvml.NVMLError:
        return None
    gpu = _query(nvml, handle, -1)
    return Gpu(-1, gpu.name, uuid, gpu.memory_mib, gpu.compute_capability)


def discover(
    cuda_visible: str | None,
    nvidia_visible: str | None,
    gpu_count: int | None,
    nvml_module: ModuleType | None = None,
) -> GpuInventory:
    """Count the GPUs the server will see. ``nvml_module`` is pynvml (tests pass a fake)."""
    nvml: Any = nvml_module or importlib.import_module("pynvml")
    notes = _Filter()
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return _without_nvml(cuda_visible, gpu_count, f"{type(exc).__name__}: {exc}")
    try:
        devices = [
            _query(nvml, nvml.nvmlDeviceGetHandleByIndex(i), i)
            for i in range(int(nvml.nvmlDeviceGetCount()))
        ]
        if nvidia_visible is not None and _is_uuid_list(nvidia_visible):
            devices = _select(devices, nvidia_visible, "NVIDIA_VISIBLE_DEVICES", nvml, notes)
        elif nvidia_visible is not None and nvidia_visible.strip().lower() in ("none", "void"):
            devices = []
        # Indices in NVIDIA_VISIBLE_DEVICES were applied by the container runtime already:
        # inside the container NVML numbers the devices it was given from 0.
        if cuda_visible is not None:
            devices = _select(devices, cuda_visible, "CUDA_VISIBLE_DEVICES", nvml, notes)
        return GpuInventory(tuple(devices), "NVML", tuple(notes.warnings))
    finally:
        with contextlib.suppress(Exception):  # shutting down is best effort
            nvml.nvmlShutdown()


def _is_uuid_list(value: str) -> bool:
    entries = [e.strip() for e in value.split(",") if e.strip()]
    return bool(entries) and all(e.startswith(("GPU-", "MIG-")) for e in entries)


def _without_nvml(cuda_visible: str | None, gpu_count: int | None, why: str) -> GpuInventory:
    if gpu_count is None:
        return GpuInventory(
            (),
            "none",
            (f"NVML is unavailable ({why}) and GPU_COUNT is not set: assuming no GPU",),
        )
    warnings: list[str] = []
    count = gpu_count
    if cuda_visible is not None:
        listed = [e for e in cuda_visible.split(",") if e.strip()]
        if len(listed) < count:
            warnings.append(
                f"GPU_COUNT={gpu_count} but CUDA_VISIBLE_DEVICES={cuda_visible!r} lists "
                f"{len(listed)}: using {len(listed)}"
            )
            count = len(listed)
    return GpuInventory((), "GPU_COUNT", tuple(warnings), assumed_count=count)
