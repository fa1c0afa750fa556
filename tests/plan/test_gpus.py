"""GPU discovery: NVML faked at the pynvml boundary, visibility variables like CUDA's."""

from __future__ import annotations

import pytest
from fake_nvml import FakeDevice, h100s, make_nvml

from vast_sglang_launcher.plan.gpus import discover

DEVICES = h100s(8)
MIG = FakeDevice("NVIDIA H100 MIG 3g.40gb", "MIG-11111111-2222-3333-4444-555555555555", 40192)


@pytest.mark.parametrize(
    ("cuda", "nvidia", "expected"),
    [
        (None, None, [0, 1, 2, 3, 4, 5, 6, 7]),
        ("0,1", None, [0, 1]),
        (" 3 , 5 ", None, [3, 5]),
        ("", None, []),
        ("-1", None, []),
        ("0,1,-1,2", None, [0, 1]),  # CUDA stops at the first invalid entry
        ("0,9,1", None, [0]),  # out of range also ends the list
        ("0,0", None, [0]),  # a duplicate is invalid
        (DEVICES[4].uuid, None, [4]),
        (DEVICES[6].uuid[:12], None, [6]),  # a unique UUID prefix is enough, as in CUDA
        (f"{DEVICES[2].uuid},{DEVICES[7].uuid}", None, [2, 7]),
        ("GPU-ffffffff", None, []),
        (None, "all", [0, 1, 2, 3, 4, 5, 6, 7]),
        (None, "none", []),
        (None, "void", []),
        (None, "", [0, 1, 2, 3, 4, 5, 6, 7]),  # runtime default: NVML shows what was given
        (None, "0,1", [0, 1, 2, 3, 4, 5, 6, 7]),  # indices were applied by the runtime already
        (None, f"{DEVICES[1].uuid},{DEVICES[3].uuid}", [1, 3]),
        ("1", f"{DEVICES[1].uuid},{DEVICES[3].uuid}", [3]),  # CUDA indexes what is left
        ("all", None, [0, 1, 2, 3, 4, 5, 6, 7]),
    ],
)
def test_visibility_forms(cuda: str | None, nvidia: str | None, expected: list[int]) -> None:
    inv = discover(cuda, nvidia, None, make_nvml(DEVICES))
    assert [g.index for g in inv.gpus] == expected
    assert inv.count == len(expected)
    assert inv.source == "NVML"


def test_invalid_entry_is_explained() -> None:
    inv = discover("0,1,-1,2", None, None, make_nvml(DEVICES))
    assert any("'-1' matches no visible GPU" in w for w in inv.warnings)


def test_details_are_reported() -> None:
    inv = discover("0", None, None, make_nvml(DEVICES))
    gpu = inv.gpus[0]
    assert (gpu.name, gpu.memory_mib, gpu.compute_capability) == (
        "NVIDIA H100 80GB HBM3",
        81559,
        "9.0",
    )
    assert inv.as_dict()["devices"][0]["uuid"] == DEVICES[0].uuid


def test_mig_uuid_is_one_device_of_its_own() -> None:
    nvml = make_nvml(DEVICES, migs={MIG.uuid: MIG})
    inv = discover(MIG.uuid, None, None, nvml)
    assert inv.count == 1
    assert inv.gpus[0].memory_mib == 40192
    assert discover(None, MIG.uuid, None, nvml).count == 1


def test_nvml_is_shut_down_after_use() -> None:
    nvml = make_nvml(DEVICES)
    discover(None, None, None, nvml)
    assert nvml.calls == ["init", "shutdown"]


def test_no_driver_and_no_gpu_count_means_zero_with_a_warning() -> None:
    inv = discover(None, None, None, make_nvml([], init_error="Driver Not Loaded"))
    assert inv.count == 0
    assert inv.source == "none"
    assert "GPU_COUNT is not set" in inv.warnings[0]


def test_no_driver_uses_gpu_count() -> None:
    inv = discover(None, None, 4, make_nvml([], init_error="Driver Not Loaded"))
    assert (inv.count, inv.source, inv.warnings) == (4, "GPU_COUNT", ())


def test_gpu_count_is_narrowed_by_a_shorter_cuda_list() -> None:
    inv = discover("0,1", None, 4, make_nvml([], init_error="x"))
    assert inv.count == 2


def test_gpu_count_is_ignored_when_nvml_answers() -> None:
    assert discover(None, None, 2, make_nvml(h100s(4))).count == 4
