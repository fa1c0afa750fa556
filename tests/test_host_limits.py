"""Host limits (issue 19 item 11): the cgroup CPU quota and pids budget (v2 and v1) are read,
and where the budget is dangerously low the thread pools handed to the server and the
prefetch are capped to the entitlement, never over a user's value, and the plan says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from vast_sglang_launcher.host_limits import (
    POOL_VARIABLES,
    HostLimits,
    read_cgroup,
    thread_caps,
)

REPO = str(Path(__file__).resolve().parents[1])


def test_a_vast_host_with_384_cpus_46_allowed_and_1024_pids_is_capped() -> None:
    caps = thread_caps(HostLimits(384, 384, 46.0, 1024, "cgroup v2"), {})
    assert caps.env == {v: "16" for v in POOL_VARIABLES}  # 1024 / 64, below the 46 allowed
    assert caps.why.startswith("384 CPUs visible, 46 allowed, pids.max 1024 (cgroup v2)")


def test_a_quota_far_below_the_visible_cpus_caps_to_the_entitlement() -> None:
    caps = thread_caps(HostLimits(384, 384, 45.5, None, "cgroup v1"), {})
    assert set(caps.env.values()) == {"46"}


def test_an_affinity_mask_counts_as_the_entitlement() -> None:
    caps = thread_caps(HostLimits(64, 8, None, None), {})
    assert set(caps.env.values()) == {"8"}


@pytest.mark.parametrize(
    "limits",
    [
        HostLimits(16, 16, None, None),
        HostLimits(16, 16, 16.0, 4096),
        HostLimits(8, 8, 6.0, 1_000_000),
        HostLimits(384, 384, None, 1 << 22),
    ],
)
def test_a_roomy_host_is_left_alone(limits: HostLimits) -> None:
    assert not thread_caps(limits, {}).capped


def test_a_users_value_is_never_overridden() -> None:
    caps = thread_caps(HostLimits(384, 384, 46.0, 1024), {"OMP_NUM_THREADS": "4"})
    assert "OMP_NUM_THREADS" not in caps.env and caps.kept == ("OMP_NUM_THREADS",)
    assert caps.env["MKL_NUM_THREADS"] == "16" and "kept your OMP_NUM_THREADS" in caps.why


def test_a_tiny_budget_still_gives_one_thread() -> None:
    assert set(thread_caps(HostLimits(96, 96, 0.5, 40), {}).env.values()) == {"1"}


def test_cgroup_v2_files_are_read(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu pids\n")
    group = tmp_path / "box"
    group.mkdir()
    (group / "cpu.max").write_text("4600000 100000\n")
    (group / "pids.max").write_text("1024\n")
    assert read_cgroup(tmp_path, "0::/box\n") == (46.0, 1024, "cgroup v2")
    (group / "cpu.max").write_text("max 100000\n")
    (group / "pids.max").write_text("max\n")
    assert read_cgroup(tmp_path, "0::/box\n") == (None, None, "cgroup v2")


def test_cgroup_v1_files_are_read(tmp_path: Path) -> None:
    for d in ("cpu/box", "pids/box"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "cpu/box/cpu.cfs_quota_us").write_text("2300000\n")
    (tmp_path / "cpu/box/cpu.cfs_period_us").write_text("50000\n")
    (tmp_path / "pids/box/pids.max").write_text("512\n")
    text = "12:pids:/box\n4:cpu,cpuacct:/box\n0::/\n"
    assert read_cgroup(tmp_path, text) == (46.0, 512, "cgroup v1")
    (tmp_path / "cpu/box/cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "pids/box/pids.max").write_text("max\n")
    assert read_cgroup(tmp_path, text) == (None, None, "cgroup v1")


def _pids_cgroup() -> Path | None:
    """A fresh pids cgroup this test may use (cgroup v2 or the v1 pids hierarchy), or None."""
    root = Path("/sys/fs/cgroup")
    for parent in (root, root / "pids"):
        if (parent / "cgroup.procs").exists() and os.access(parent, os.W_OK):
            if parent == root and not (root / "cgroup.controllers").exists():
                continue  # v1 root is a tmpfs of hierarchies, not a cgroup
            group = parent / f"vast-sglang-test-{uuid.uuid4().hex[:8]}"
            try:
                group.mkdir()
            except OSError:
                continue
            if (group / "pids.max").exists():
                return group
            group.rmdir()
    return None


def test_plan_in_a_real_small_pids_cgroup_caps_the_pools(tmp_path: Path) -> None:
    group = _pids_cgroup()
    if group is None:
        pytest.skip("no writable pids cgroup here (needs root and a pids controller)")
    cpus = os.cpu_count() or 1
    budget = max(24, cpus * 16 - 1)  # dangerously low for this machine, enough for `plan`
    try:
        (group / "pids.max").write_text(f"{budget}\n")
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "PYTHONPATH": REPO,
            "SGLANG_MODEL": "org/model",
            "GPU_COUNT": "1",
            "HF_HUB_OFFLINE": "1",
            "MKL_NUM_THREADS": "3",
        }
        # The child joins the cgroup before it execs the launcher: `plan` runs inside it.
        code = (
            f"import os; open({str(group / 'cgroup.procs')!r}, 'w').write(str(os.getpid()));"
            f"os.execv({sys.executable!r}, [{sys.executable!r}, '-m', 'vast_sglang_launcher',"
            " 'plan', '--json'])"
        )
        got = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        group.rmdir()
    assert got.returncode == 0, got.stderr
    plan = json.loads(got.stdout)
    assert plan["env"]["OMP_NUM_THREADS"] == str(max(1, min(cpus, budget // 64)))
    assert "MKL_NUM_THREADS" not in plan["env"]  # the user's value stays
    row = next(d for d in plan["decisions"] if d["what"] == "thread pools")
    assert f"pids.max {budget}" in row["why"] and "kept your MKL_NUM_THREADS" in row["why"]
