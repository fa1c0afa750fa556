"""Multi-node ranks from LeaderWorkerSet or SLURM when the SGLANG_* values are unset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_launcher

from vast_sglang_launcher.plan.build import LaunchPlan, build_plan
from vast_sglang_launcher.plan.gpus import GpuInventory
from vast_sglang_launcher.plan.options import OptionTable, scan, snapshot, snapshot_versions
from vast_sglang_launcher.plan.ranks import first_host
from vast_sglang_launcher.plan.user_args import read_user_args
from vast_sglang_launcher.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(params=sorted(snapshot_versions()))
def table(request: pytest.FixtureRequest) -> OptionTable:
    """Every shipped release's table: the ranks mean the same under each."""
    return snapshot(request.param)


def _plan(tmp_path: Path, table: OptionTable, args: str = "", **env: str) -> LaunchPlan:
    environ = {"SGLANG_MODEL": "org/m", "SGLANG_ARGS": args, **env}
    settings = load_settings(environ)
    user = read_user_args(settings.sglang_args, tmp_path / "none.conf")
    inv = GpuInventory((), "NVML", (), assumed_count=8)
    return build_plan(settings, user, inv, None, table, environ)


def resolved(plan: LaunchPlan, table: OptionTable, option: str) -> str | None:
    """The value SGLang reads for ``option`` (an option string) from the plan's argv."""
    occ = scan(table, plan.argv[2:]).last(table.by_string[option].dest)
    return occ.value if occ else None


def sources(plan: LaunchPlan) -> dict[str, str]:
    return {d.what: d.source for d in plan.decisions}


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [
        ("node[01-04],x", "node01"),
        ("node07", "node07"),
        ("a1,b2", "a1"),
        ("gpu-[3,5-7]", "gpu-3"),
        ("rack[2-3]-n[010-012],login", "rack2-n010"),
        ("  n[9] ", "n9"),
        ("node[01-04", None),
        ("node]01[", None),
        ("node[]", None),
        ("", None),
    ],
)
def test_first_host_of_a_slurm_nodelist(nodelist: str, host: str | None) -> None:
    assert first_host(nodelist) == host


def test_leaderworkerset_fills_the_three_options(tmp_path: Path, table: OptionTable) -> None:
    plan = _plan(
        tmp_path,
        table,
        LWS_LEADER_ADDRESS="sglang-0.sglang.default",
        LWS_GROUP_SIZE="2",
        LWS_WORKER_INDEX="1",
    )
    assert resolved(plan, table, "--nnodes") == "2"
    assert resolved(plan, table, "--node-rank") == "1"
    assert resolved(plan, table, "--dist-init-addr") == "sglang-0.sglang.default:20000"
    assert resolved(plan, table, "--tp-size") == "16"  # tp counts GPUs on both nodes
    found = sources(plan)
    assert found["--nnodes"] == "LWS_GROUP_SIZE"
    assert found["--node-rank"] == "LWS_WORKER_INDEX"
    assert found["--dist-init-addr"] == "LWS_LEADER_ADDRESS"
    assert plan.node_rank == 1 and not plan.serves_api


def test_slurm_fills_the_three_options_from_the_compressed_nodelist(
    tmp_path: Path, table: OptionTable
) -> None:
    plan = _plan(
        tmp_path,
        table,
        SLURM_NNODES="4",
        SLURM_NODEID="0",
        SLURM_JOB_NODELIST="gpu[017-020],login1",
        LAUNCHER_DIST_INIT_PORT="5000",
    )
    assert resolved(plan, table, "--nnodes") == "4"
    assert resolved(plan, table, "--node-rank") == "0"
    assert resolved(plan, table, "--dist-init-addr") == "gpu017:5000"
    assert sources(plan)["--dist-init-addr"] == "SLURM_JOB_NODELIST (first host)"
    assert plan.serves_api


def test_sglang_settings_win_value_by_value(tmp_path: Path, table: OptionTable) -> None:
    plan = _plan(
        tmp_path,
        table,
        SLURM_NNODES="4",
        SLURM_NODEID="3",
        SLURM_JOB_NODELIST="gpu[017-020]",
        SGLANG_NODE_RANK="2",
        SGLANG_DIST_INIT_ADDR="10.0.0.5:7000",
    )
    assert (resolved(plan, table, "--nnodes"), resolved(plan, table, "--node-rank")) == ("4", "2")
    assert resolved(plan, table, "--dist-init-addr") == "10.0.0.5:7000"
    assert sources(plan)["--nnodes"] == "SLURM_NNODES"
    assert sources(plan)["--node-rank"] == "SGLANG_NODE_RANK"
    assert sources(plan)["--dist-init-addr"] == "SGLANG_DIST_INIT_ADDR"


def test_users_own_options_are_kept_and_its_rank_counts(tmp_path: Path, table: OptionTable) -> None:
    plan = _plan(
        tmp_path,
        table,
        "--node-rank 3 --dist-init-addr=head:1234",
        LWS_LEADER_ADDRESS="leader",
        LWS_GROUP_SIZE="4",
        LWS_WORKER_INDEX="1",
    )
    assert resolved(plan, table, "--node-rank") == "3"
    assert resolved(plan, table, "--dist-init-addr") == "head:1234"
    assert plan.argv.count("--node-rank") == 1
    assert plan.node_rank == 3


def test_one_node_job_adds_nothing(tmp_path: Path, table: OptionTable) -> None:
    plan = _plan(tmp_path, table, SLURM_NNODES="1", SLURM_NODEID="0", SLURM_JOB_NODELIST="n1")
    assert "--nnodes" not in plan.argv and "--dist-init-addr" not in plan.argv


def test_unreadable_nodelist_warns_and_names_the_fix(tmp_path: Path, table: OptionTable) -> None:
    plan = _plan(tmp_path, table, SLURM_NNODES="2", SLURM_NODEID="1", SLURM_JOB_NODELIST="n[1-2")
    assert "--dist-init-addr" not in plan.argv
    assert any("SLURM_JOB_NODELIST" in w and "SGLANG_DIST_INIT_ADDR" in w for w in plan.warnings)


def test_plan_command_shows_each_source(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "SGLANG_MODEL": "org/m",
        "GPU_COUNT": "8",
        "HF_HUB_OFFLINE": "1",
        "WORKSPACE": str(tmp_path / "ws"),
        "SGLANG_ARGS_FILE": str(tmp_path / "none.conf"),
        "SLURM_NNODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_JOB_NODELIST": "node[01-04],x",
    }
    text = run_launcher("plan", env=env)
    assert text.returncode == 0, text.stderr
    lines = {line.split()[0]: line for line in text.stdout.splitlines() if line.startswith("--")}
    assert "SLURM_NNODES" in lines["--nnodes"]
    assert "SLURM_NODEID" in lines["--node-rank"]
    assert "node01:20000" in lines["--dist-init-addr"]
    assert "SLURM_JOB_NODELIST (first host)" in lines["--dist-init-addr"]
    as_json = run_launcher("plan", "--json", env=env)
    data: dict[str, Any] = json.loads(as_json.stdout)
    assert data["node_rank"] == 1


def test_bad_orchestrator_value_is_one_line_and_exit_78(tmp_path: Path) -> None:
    done = run_launcher(
        "plan", env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "LWS_GROUP_SIZE": "two"}
    )
    assert done.returncode == 78
    assert "LWS_GROUP_SIZE='two' is not valid" in done.stderr
