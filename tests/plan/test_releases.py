"""Every shipped SGLang table: the planned argv means, under that release's own parser, what
the user asked for. Dests differ between releases (0.5.14 renamed tensor_parallel_size to
tp_size), so each value is read back through the dest that release gives the option string."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import real_parse, run_launcher

from vast_sglang_launcher.plan.build import LaunchPlan, build_plan
from vast_sglang_launcher.plan.gpus import GpuInventory
from vast_sglang_launcher.plan.model_info import ModelInfo
from vast_sglang_launcher.plan.options import read_table
from vast_sglang_launcher.plan.user_args import read_user_args
from vast_sglang_launcher.settings import load_settings

DATA = Path(__file__).resolve().parents[2] / "vast_sglang_launcher" / "plan" / "data"
TABLES = sorted(DATA.glob("server-args-*.json"))
if not TABLES:  # a loud error, not a silently empty parametrization
    raise FileNotFoundError(f"no server-args-*.json in {DATA}: the checkout is broken")
EIGHT_KV = ModelInfo(32, 8, "LlamaForCausalLM", "test")


def plan_for(
    tmp_path: Path,
    table_path: Path,
    args: str = "",
    file_text: str | None = None,
    gpus: int = 8,
    info: ModelInfo | None = EIGHT_KV,
    **env: str,
) -> LaunchPlan:
    environ = {"SGLANG_MODEL": "org/m", "SGLANG_ARGS": args, **env}
    settings = load_settings(environ)
    args_file = tmp_path / "sglang-args.conf"
    if file_text is not None:
        args_file.write_text(file_text)
    user = read_user_args(settings.sglang_args, args_file)
    inv = GpuInventory((), "GPU_COUNT", (), assumed_count=gpus)
    return build_plan(settings, user, inv, info, read_table(table_path), environ)


class Meaning:
    """The planned argv as the release's parser reads it, asked by option string."""

    def __init__(self, table_path: Path, argv: list[str]) -> None:
        assert argv[:2] == ["sglang", "serve"]
        ns = real_parse(table_path, argv[2:])
        assert ns is not None, f"SGLang's parser rejects {argv}"
        self.ns: argparse.Namespace = ns
        self.table = json.loads(table_path.read_text())

    def __getitem__(self, option: str) -> Any:
        dest = next(o["dest"] for o in self.table["options"] if option in o["options"])
        return getattr(self.ns, dest)


def meaning(table_path: Path, plan: LaunchPlan) -> Meaning:
    return Meaning(table_path, plan.argv)


TP_SPELLINGS = [
    "--tp 2",
    "--tp-size 2",
    "--tensor-parallel-size 2",
    "--tensor-parallel-size=2",
    "--tensor-par 2",
    "--tp=2",
    "--tp-size=2",
]


@pytest.mark.parametrize("table_path", TABLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("spelling", TP_SPELLINGS)
@pytest.mark.parametrize("where", ["SGLANG_ARGS", "args file"])
def test_users_tp_is_kept(tmp_path: Path, table_path: Path, spelling: str, where: str) -> None:
    if where == "SGLANG_ARGS":
        plan = plan_for(tmp_path, table_path, spelling)
    else:
        plan = plan_for(tmp_path, table_path, file_text=f"# layout\n{spelling}\n")
    m = meaning(table_path, plan)
    assert str(m["--tp-size"]) == "2"
    for untouched in ("--dp-size", "--pp-size"):
        assert str(m[untouched]) == str(_default(table_path, untouched))
    # nothing of the layout was added after the user's words
    assert plan.argv[-4:] == ["--host", "127.0.0.1", "--port", "18000"]
    assert any("6 stay idle" in w for w in plan.warnings)


def _default(table_path: Path, option: str) -> Any:
    table = json.loads(table_path.read_text())
    return next(o["default"] for o in table["options"] if option in o["options"])


@pytest.mark.parametrize("table_path", TABLES, ids=lambda p: p.stem)
def test_last_occurrence_wins_across_sources(tmp_path: Path, table_path: Path) -> None:
    plan = plan_for(tmp_path, table_path, "--tp 4", file_text="--tensor-parallel-size=2\n")
    m = meaning(table_path, plan)
    assert str(m["--tp-size"]) == "2"
    decision = next(d for d in plan.decisions if d.what == "tensor parallel")
    assert decision.value == "2" and decision.source == str(tmp_path / "sglang-args.conf")


@pytest.mark.parametrize("table_path", TABLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("spelling", ["--dp 2", "--dp-size 2", "--data-parallel-size=2"])
def test_dp_only_fills_tp_with_the_rest(tmp_path: Path, table_path: Path, spelling: str) -> None:
    m = meaning(table_path, plan_for(tmp_path, table_path, spelling))
    assert (str(m["--dp-size"]), str(m["--tp-size"])) == ("2", "4")


@pytest.mark.parametrize("table_path", TABLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("spelling", ["--pp-size 2", "--pipeline-parallel-size=2", "--pp-s 2"])
def test_pp_only_fills_tp_with_the_rest(tmp_path: Path, table_path: Path, spelling: str) -> None:
    m = meaning(table_path, plan_for(tmp_path, table_path, spelling))
    assert (str(m["--pp-size"]), str(m["--tp-size"])) == ("2", "4")


@pytest.mark.parametrize("table_path", TABLES, ids=lambda p: p.stem)
@pytest.mark.parametrize(
    ("gpus", "info", "tp", "dp"),
    [(8, EIGHT_KV, 8, 1), (8, ModelInfo(28, 4, "Qwen2", "t"), 4, 2), (3, EIGHT_KV, 1, 3)],
)
def test_auto_layout_means_the_same(
    tmp_path: Path, table_path: Path, gpus: int, info: ModelInfo, tp: int, dp: int
) -> None:
    m = meaning(table_path, plan_for(tmp_path, table_path, gpus=gpus, info=info))
    assert (int(m["--tp-size"]), int(m["--dp-size"])) == (tp, dp)


@pytest.mark.parametrize("table_path", TABLES, ids=lambda p: p.stem)
def test_multi_node_from_the_environment(tmp_path: Path, table_path: Path) -> None:
    plan = plan_for(
        tmp_path,
        table_path,
        info=ModelInfo(64, 8, "X", "t"),
        SGLANG_NNODES="2",
        SGLANG_NODE_RANK="1",
        SGLANG_DIST_INIT_ADDR="10.1.1.1:5000",
    )
    m = meaning(table_path, plan)
    assert (str(m["--tp-size"]), str(m["--nnodes"]), str(m["--node-rank"])) == ("16", "2", "1")
    assert m["--dist-init-addr"] == "10.1.1.1:5000"


@pytest.mark.parametrize("table_path", TABLES, ids=lambda p: p.stem)
def test_multi_node_from_the_users_words_is_not_repeated(tmp_path: Path, table_path: Path) -> None:
    plan = plan_for(
        tmp_path,
        table_path,
        "--nnodes 2 --node-rank=1 --nccl-init-addr h:1 --tp 16",
        info=ModelInfo(64, 8, "X", "t"),
        SGLANG_NNODES="2",
        SGLANG_NODE_RANK="0",
        SGLANG_DIST_INIT_ADDR="10.1.1.1:5000",
    )
    m = meaning(table_path, plan)
    assert (str(m["--nnodes"]), str(m["--node-rank"]), m["--dist-init-addr"]) == ("2", "1", "h:1")
    assert str(m["--tp-size"]) == "16"
    assert plan.argv[-4:] == ["--host", "127.0.0.1", "--port", "18000"]


@pytest.mark.parametrize("table_path", TABLES, ids=lambda p: p.stem)
def test_users_host_and_port_are_kept(tmp_path: Path, table_path: Path) -> None:
    plan = plan_for(tmp_path, table_path, "--host 0.0.0.0 --port=30000", gpus=1)
    m = meaning(table_path, plan)
    assert (m["--host"], str(m["--port"])) == ("0.0.0.0", "30000")
    assert (plan.host, plan.port) == ("127.0.0.1", 30000)


@pytest.mark.parametrize("table_path", TABLES, ids=lambda p: p.stem)
def test_defaults_listen_where_the_proxy_expects(tmp_path: Path, table_path: Path) -> None:
    plan = plan_for(tmp_path, table_path, gpus=1)
    m = meaning(table_path, plan)
    assert (m["--model-path"], m["--host"], str(m["--port"])) == ("org/m", "127.0.0.1", "18000")
    assert plan.warnings == []


# --- a table that lacks an option the launcher uses ---------------------------------------


def _without(tmp_path: Path, *strings: str, version: str = "9.9.9") -> Path:
    data = json.loads((DATA / "server-args-0.5.23.json").read_text())
    data["sglang_version"] = version
    data["options"] = [o for o in data["options"] if not set(o["options"]) & set(strings)]
    path = tmp_path / f"server-args-{version}.json"
    path.write_text(json.dumps(data))
    return path


def test_missing_tp_is_never_added_and_is_named(tmp_path: Path) -> None:
    table = _without(tmp_path, "--tp-size")
    plan = plan_for(tmp_path, table)
    assert "--tp-size" not in plan.argv and "--tensor-parallel-size" not in plan.argv
    assert any(
        w.startswith("not adding --tp-size 8 (")
        and f"--tp-size / --tensor-parallel-size is not in the option table of SGLang 9.9.9 "
        f"({table})"
        in w
        for w in plan.warnings
    ), plan.warnings


def test_option_spellings_split_over_two_dests_are_ambiguous(tmp_path: Path) -> None:
    data = json.loads((DATA / "server-args-0.5.23.json").read_text())
    for o in data["options"]:
        if "--tp-size" in o["options"]:
            o["options"] = ["--tp-size"]
    data["options"].append(
        {"options": ["--tensor-parallel-size"], "dest": "legacy_tp", "kind": "value"}
    )
    table = tmp_path / "split.json"
    table.write_text(json.dumps(data))
    plan = plan_for(tmp_path, table, "--tensor-parallel-size 2")
    assert plan.argv.count("--tp-size") == 0
    assert any("--tp-size is ambiguous" in w and "legacy_tp" in w for w in plan.warnings)


# --- the drift check ----------------------------------------------------------------------


def check(*files: Path) -> subprocess.CompletedProcess[str]:
    return run_launcher("option-table", "--check", *map(str, files), env=os.environ)


def test_drift_check_passes_every_shipped_table() -> None:
    proc = check(*TABLES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [line.split(":")[0] for line in proc.stdout.splitlines()] == list(map(str, TABLES))


def test_drift_check_names_what_is_missing(tmp_path: Path) -> None:
    table = _without(tmp_path, "--dp-size", "--nccl-init-addr")
    proc = check(DATA / "server-args-0.5.23.json", table)
    assert proc.returncode == 1
    failures = [line for line in proc.stdout.splitlines() if ": FAIL: " in line]
    assert len(failures) == 2
    assert f"{table}: FAIL: --dp-size / --data-parallel-size is not in" in failures[0]
    assert "--dist-init-addr / --nccl-init-addr is not in" in failures[1]


def test_drift_check_names_an_unreadable_table(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    proc = check(bad)
    assert proc.returncode == 1 and f"{bad}: FAIL:" in proc.stdout
    assert "Traceback" not in proc.stderr


# --- what `sglang serve` itself reads, by release ------------------------------------------


@pytest.mark.parametrize(
    ("version", "command", "unknown"),
    [
        ("0.5.23", "sglang serve", False),
        ("0.5.8", "sglang serve", True),
        ("0.5.23", "python3 -m sglang.launch_server", True),
    ],
)
def test_model_type_belongs_to_sglang_serve_from_0_5_10(
    tmp_path: Path, version: str, command: str, unknown: bool
) -> None:
    table = DATA / f"server-args-{version}.json"
    plan = plan_for(tmp_path, table, "--model-type llm --tp 2", SGLANG_COMMAND=command)
    assert "--model-type" in plan.argv
    assert any("unknown option '--model-type'" in w for w in plan.warnings) is unknown
    decision = next(d for d in plan.decisions if d.what == "tensor parallel")
    assert decision.value == "2"


@pytest.mark.parametrize(("version", "warned"), [("0.5.6.post2", True), ("0.5.23", False)])
def test_model_given_as_model_alias(tmp_path: Path, version: str, warned: bool) -> None:
    environ = {"SGLANG_ARGS": "--model org/other"}
    settings = load_settings(environ)
    user = read_user_args(settings.sglang_args, tmp_path / "none.conf")
    plan = build_plan(
        settings,
        user,
        GpuInventory((), "GPU_COUNT", (), assumed_count=1),
        None,
        read_table(DATA / f"server-args-{version}.json"),
        environ,
    )
    assert plan.model == "org/other"
    assert any("finds the model only when it is written as" in w for w in plan.warnings) is warned


# --- DP attention: the groups live inside tp (plan/dp_attention.py names the source) -------


def _has(table_path: Path, option: str) -> bool:
    table = json.loads(table_path.read_text())
    return any(option in o["options"] for o in table["options"])


@pytest.mark.parametrize("table_path", TABLES, ids=lambda p: p.stem)
@pytest.mark.parametrize(("dp", "tp"), [(8, 8), (2, 8), (4, 8), (3, 6)])
def test_dp_attention_gives_tp_spanning_the_gpus(
    tmp_path: Path, table_path: Path, dp: int, tp: int
) -> None:
    """`--dp-size N --enable-dp-attention` on 8 GPUs: tp is the largest multiple of N that
    fits the 8 GPUs (SGLang asserts tp_size % dp_size == 0), never tp=1."""
    plan = plan_for(tmp_path, table_path, f"--dp-size {dp} --enable-dp-attention")
    m = meaning(table_path, plan)
    assert int(m["--tp-size"]) == tp and int(m["--tp-size"]) % int(m["--dp-size"]) == 0
    assert m["--enable-dp-attention"] is True
    decision = next(d for d in plan.decisions if d.what == "--tp-size")
    assert "DP attention" in decision.why and f"divisible by {dp}" in decision.why
    idle = [w for w in plan.warnings if "idle" in w]
    assert idle == ([] if tp == 8 else [idle[0]])
    if tp != 8:
        assert "leaves 2 of 8 GPUs idle" in idle[0]


@pytest.mark.parametrize(
    "table_path", [t for t in TABLES if _has(t, "--attn-dp-size")], ids=lambda p: p.stem
)
@pytest.mark.parametrize("spelling", ["--attn-dp-size 8", "--attention-data-parallel-size=8"])
def test_attn_dp_size_gives_tp_spanning_the_gpus(
    tmp_path: Path, table_path: Path, spelling: str
) -> None:
    plan = plan_for(tmp_path, table_path, spelling)
    m = meaning(table_path, plan)
    assert (int(m["--tp-size"]), int(m["--attn-dp-size"]), int(m["--dp-size"])) == (8, 8, 1)
    assert plan.warnings == []


def test_attn_dp_size_exists_from_0_5_22_only() -> None:
    have = [t.stem.removeprefix("server-args-") for t in TABLES if _has(t, "--attn-dp-size")]
    assert sorted(have) == ["0.5.22", "0.5.23"]


@pytest.mark.parametrize(
    "table_path", [t for t in TABLES if not _has(t, "--attn-dp-size")], ids=lambda p: p.stem
)
def test_attn_dp_size_on_a_release_without_it_is_unknown_not_a_layout(
    tmp_path: Path, table_path: Path
) -> None:
    plan = plan_for(tmp_path, table_path, "--attn-dp-size 8")
    assert any("unknown option '--attn-dp-size'" in w for w in plan.warnings), plan.warnings
    decision = next(d for d in plan.decisions if d.what == "--tp-size")
    assert decision.value == "8" and "DP attention" not in decision.why


@pytest.mark.parametrize("table_path", TABLES, ids=lambda p: p.stem)
def test_users_tp_not_divisible_by_the_attention_groups_is_named(
    tmp_path: Path, table_path: Path
) -> None:
    plan = plan_for(tmp_path, table_path, "--tp 4 --dp-size 8 --enable-dp-attention")
    assert str(meaning(table_path, plan)["--tp-size"]) == "4"
    assert any("tp=4 is not divisible by the 8 attention groups" in w for w in plan.warnings)
    # the attention groups take no GPUs of their own: 4 of 8 used, not 32 needed
    assert any("uses 4 of the 8 visible GPUs" in w for w in plan.warnings), plan.warnings


@pytest.mark.parametrize(
    "table_path", [t for t in TABLES if _has(t, "--attn-dp-size")], ids=lambda p: p.stem
)
def test_dp_replicas_beside_attn_dp_size_are_named(tmp_path: Path, table_path: Path) -> None:
    plan = plan_for(tmp_path, table_path, "--attn-dp-size 4 --dp-size 2")
    assert any("SGLang refuses data-parallel replicas" in w for w in plan.warnings)
