"""An in-process stand-in for the pynvml module: the only place NVML is faked."""

from __future__ import annotations

import types
from dataclasses import dataclass


class NVMLError(Exception):
    pass


@dataclass
class FakeDevice:
    name: str
    uuid: str
    memory_mib: int = 81559
    capability: tuple[int, int] = (9, 0)


@dataclass
class _Memory:
    total: int


def make_nvml(
    devices: list[FakeDevice],
    migs: dict[str, FakeDevice] | None = None,
    init_error: str | None = None,
) -> types.ModuleType:
    """A module with pynvml's functions, answering for ``devices`` (and MIG UUIDs in ``migs``)."""
    mod = types.ModuleType("pynvml")
    calls: list[str] = []
    by_uuid = {d.uuid: d for d in devices} | dict(migs or {})

    def nvmlInit() -> None:
        calls.append("init")
        if init_error:
            raise NVMLError(init_error)

    def nvmlShutdown() -> None:
        calls.append("shutdown")

    def nvmlDeviceGetCount() -> int:
        return len(devices)

    def nvmlDeviceGetHandleByIndex(i: int) -> FakeDevice:
        return devices[i]

    def nvmlDeviceGetHandleByUUID(uuid: bytes) -> FakeDevice:
        try:
            return by_uuid[uuid.decode()]
        except KeyError:
            raise NVMLError("Not Found") from None

    mod.__dict__.update(
        NVMLError=NVMLError,
        nvmlInit=nvmlInit,
        nvmlShutdown=nvmlShutdown,
        nvmlDeviceGetCount=nvmlDeviceGetCount,
        nvmlDeviceGetHandleByIndex=nvmlDeviceGetHandleByIndex,
        nvmlDeviceGetHandleByUUID=nvmlDeviceGetHandleByUUID,
        nvmlDeviceGetName=lambda h: h.name,
        nvmlDeviceGetUUID=lambda h: h.uuid,
        nvmlDeviceGetMemoryInfo=lambda h: _Memory(h.memory_mib * 1024 * 1024),
        nvmlDeviceGetCudaComputeCapability=lambda h: h.capability,
        calls=calls,
    )
    return mod


def h100s(n: int) -> list[FakeDevice]:
    return [
        FakeDevice("NVIDIA H100 80GB HBM3", f"GPU-{i:08x}-aaaa-bbbb-cccc-{i:012x}")
        for i in range(n)
    ]
