"""The launch plan: argv, decisions and warnings, through the CLI and the pure function."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import conftest
import pytest

from vast_sglang_launcher.plan.build import LaunchPlan, build_plan
from vast_sglang_launcher.plan.gpus import GpuInventory
from vast_sglang_launcher.plan.model_info import ModelInfo
from vast_sglang_launcher.plan.options import scan, snapshot
from vast_sglang_launcher.plan.user_args import read_user_args
from vast_sglang_launcher.settings import load_settings

DATA = Path(__file__).resolve().parents[2] / "vast_sglang_launcher" / "plan" / "data"


# The release these tests are written against (a test may name another table).
TABLE = {"LAUNCHER_OPTION_TABLE": str(DATA / "server-args-0.5.6.post2.json")}


def run_plan(tmp_path: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return conftest.run_plan(tmp_path, TABLE | env, *extra)


def plan_json(tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    return conftest.plan_json(tmp_path, TABLE | env)


def resolved(argv: list[str], option: str) -> str | None:
    """What SGLang's own parsing makes of the planned argv (the launcher's command stripped)."""
    table = snapshot("0.5.6.post2")
    occ = scan(table, argv[2:]).last(table.by_string[option].dest)
    return occ.value if occ else None


@pytest.mark.parametrize(
    "spelling", ["--tp 2", "--tp-size 2", "--tensor-parallel-size=2", "--tensor-par 2"]
)
@pytest.mark.parametrize("where", ["env", "file"])
def test_users_tp_is_never_overridden(tmp_path: Path, spelling: str, where: str) -> None:
    env = {"SGLANG_MODEL": "org/m", "GPU_COUNT": "8"}
    if where == "env":
        env["SGLANG_ARGS"] = spelling
    else:
        (tmp_path / "sglang-args.conf").write_text(f"# my layout\n{spelling}\n")
    plan = plan_json(tmp_path, env)
    assert resolved(plan["argv"], "--tp-size") == "2"
    assert "--dp-size" not in plan["argv"]
    assert plan["argv"][:4] == ["sglang", "serve", "--model-path", "org/m"]
    assert plan["argv"][-4:] == ["--host", "127.0.0.1", "--port", "18000"]
    decision = next(d for d in plan["decisions"] if d["what"] == "tensor parallel")
    assert decision["source"] == (
        "SGLANG_ARGS" if where == "env" else str(tmp_path / "sglang-args.conf")
    )


def test_shell_metacharacters_stay_literal(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    env = {
        "SGLANG_MODEL": "org/m",
        "GPU_COUNT": "1",
        "SGLANG_ARGS": f"--served-model-name 'a; touch {marker}' $(touch {marker}) `id`",
    }
    plan = plan_json(tmp_path, env)
    assert f"a; touch {marker}" in plan["argv"]
    assert "$(touch" in plan["argv"] and f"{marker})" in plan["argv"]
    assert "`id`" in plan["argv"]
    assert not marker.exists()


def test_args_file_holds_comments_lines_and_json(tmp_path: Path) -> None:
    (tmp_path / "sglang-args.conf").write_text(
        "# speculative decoding\n--mem-fraction-static 0.85   # leave room\n"
        '--json-model-override-args \'{"rope_scaling": {"factor": 2.0}}\'\n'
    )
    plan = plan_json(
        tmp_path, {"SGLANG_MODEL": "org/m", "GPU_COUNT": "1", "SGLANG_ARGS": "--trust-remote-code"}
    )
    i = plan["argv"].index("--trust-remote-code")
    assert plan["argv"][i : i + 5] == [
        "--trust-remote-code",
        "--mem-fraction-static",
        "0.85",
        "--json-model-override-args",
        '{"rope_scaling": {"factor": 2.0}}',
    ]


@pytest.mark.parametrize(
    ("var", "value", "source"),
    [
        ("SGLANG_ARGS", "--tp '2", "SGLANG_ARGS"),
        ("file", '--served-model-name "x', "sglang-args.conf"),
    ],
)
def test_unbalanced_quotes_name_the_source(
    tmp_path: Path, var: str, value: str, source: str
) -> None:
    env = {"SGLANG_MODEL": "org/m"}
    if var == "file":
        (tmp_path / "sglang-args.conf").write_text(value)
    else:
        env[var] = value
    proc = run_plan(tmp_path, env)
    assert proc.returncode == 78
    assert source in proc.stderr and "quotes" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unreadable_args_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "sglang-args.conf").mkdir()
    proc = run_plan(tmp_path, {"SGLANG_MODEL": "org/m"})
    assert proc.returncode == 78
    assert "SGLANG_ARGS_FILE=" in proc.stderr and "Traceback" not in proc.stderr


def test_no_model_says_so_and_exits_zero(tmp_path: Path) -> None:
    proc = run_plan(tmp_path, {})
    assert (proc.returncode, proc.stdout.strip()) == (0, "not starting: SGLANG_MODEL is not set")
    data = plan_json(tmp_path, {})
    assert data["argv"] == [] and data["warnings"][0] == "not starting: SGLANG_MODEL is not set"


def test_model_name_is_the_fallback_and_sglang_model_wins(tmp_path: Path) -> None:
    assert plan_json(tmp_path, {"MODEL_NAME": "a/b"})["argv"][3] == "a/b"
    plan = plan_json(tmp_path, {"MODEL_NAME": "a/b", "SGLANG_MODEL": "c/d"})
    assert plan["argv"][3] == "c/d"
    assert plan["env"] == {"SGLANG_MODEL": "c/d", "MODEL_NAME": "c/d", "HOME": str(tmp_path / "ws")}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUTO_PARALLEL": "maybe"}, "AUTO_PARALLEL='maybe' is not valid"),
        ({"GPU_COUNT": "-1"}, "GPU_COUNT='-1' is not valid"),
        ({"SGLANG_PORT": "99999"}, "SGLANG_PORT='99999' is not valid"),
        ({"USE_ALL_GPUS": "perhaps"}, "USE_ALL_GPUS='perhaps' is not valid"),
    ],
)
def test_bad_values_exit_78_with_one_line(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    proc = run_plan(tmp_path, {"SGLANG_MODEL": "org/m", **env})
    assert proc.returncode == 78
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_a_model_directory_forces_tp_and_dp(tmp_path: Path) -> None:
    model = tmp_path / "qwen"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["Qwen2ForCausalLM"],
                "num_attention_heads": 28,
                "num_key_value_heads": 4,
            }
        )
    )
    plan = plan_json(tmp_path, {"SGLANG_MODEL": str(model), "GPU_COUNT": "8"})
    assert resolved(plan["argv"], "--tp-size") == "4"
    assert resolved(plan["argv"], "--dp-size") == "2"
    assert plan["model"]["heads"] == 28 and plan["model"]["kv_heads"] == 4
    tp = next(d for d in plan["decisions"] if d["what"] == "--tp-size")
    assert tp["source"] == "GPU_COUNT" and "28 attention heads" in tp["why"]


def test_plan_text_shows_command_and_decisions(tmp_path: Path) -> None:
    proc = run_plan(
        tmp_path,
        {"SGLANG_MODEL": "org/m", "GPU_COUNT": "4", "SGLANG_ARGS": "--context-length 8192"},
    )
    assert proc.returncode == 0
    first, *rest = proc.stdout.splitlines()
    assert first == (
        "sglang serve --model-path org/m --context-length 8192 --host 127.0.0.1 "
        "--port 18000 --tp-size 4"
    )
    assert any(line.startswith("--tp-size") and "GPU_COUNT" in line for line in rest)


# --- the pure function --------------------------------------------------------------------


def _plan(
    tmp_path: Path, args: str = "", gpus: int = 8, info: ModelInfo | None = None, **env: str
) -> LaunchPlan:
    environ = {"SGLANG_MODEL": "org/m", "SGLANG_ARGS": args, **env}
    settings = load_settings(environ)
    user = read_user_args(settings.sglang_args, tmp_path / "none.conf")
    inv = GpuInventory((), "NVML", (), assumed_count=gpus)
    return build_plan(settings, user, inv, info, snapshot("0.5.6.post2"), environ)


def heads(h: int, kv: int | None = None) -> ModelInfo:
    return ModelInfo(h, kv if kv is not None else h, "X", "test")


@pytest.mark.parametrize(
    ("gpus", "info", "tp", "dp"),
    [
        (8, heads(32, 8), "8", None),
        (8, heads(28, 4), "4", "2"),
        (6, heads(32, 8), "2", "3"),
        (8, heads(64, 1), "8", None),  # kv heads replicate when tp is a multiple of them
        (8, heads(7, 7), None, "8"),  # nothing above 1 divides: all data parallel
        (4, None, "4", None),  # heads unknown: all GPUs, with a warning
        (1, heads(32, 8), None, None),
        (0, heads(32, 8), None, None),
    ],
)
def test_auto_layout(
    tmp_path: Path, gpus: int, info: ModelInfo | None, tp: str | None, dp: str | None
) -> None:
    plan = _plan(tmp_path, gpus=gpus, info=info)
    assert resolved(plan.argv, "--tp-size") == tp
    assert resolved(plan.argv, "--dp-size") == dp


def test_user_dp_is_kept_and_tp_fills_the_rest(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "--dp 2", gpus=8, info=heads(32, 8))
    assert resolved(plan.argv, "--dp-size") == "2"
    assert resolved(plan.argv, "--tp-size") == "4"


def test_user_pp_is_kept_and_tp_fills_the_rest(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "--pp-size 2", gpus=8, info=heads(32, 8))
    assert resolved(plan.argv, "--pp-size") == "2"
    assert resolved(plan.argv, "--tp-size") == "4"


def test_impossible_user_tp_is_kept_with_warnings(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "--tp 16", gpus=8, info=heads(28, 4))
    assert resolved(plan.argv, "--tp-size") == "16"
    assert "tp=16 x pp=1 x dp=1 needs 16 GPUs but 8 are visible" in plan.warnings
    assert any("tp=16 does not divide the model's 28 attention heads" in w for w in plan.warnings)


def test_auto_parallel_off_adds_nothing(tmp_path: Path) -> None:
    plan = _plan(tmp_path, gpus=8, info=heads(32), AUTO_PARALLEL="FALSE")
    assert "--tp-size" not in plan.argv and "--dp-size" not in plan.argv
    assert any(d.source == "AUTO_PARALLEL" for d in plan.decisions)


def test_base_gpu_id_reduces_the_usable_gpus(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "--base-gpu-id 4", gpus=8, info=heads(32))
    assert resolved(plan.argv, "--tp-size") == "4"
    plan = _plan(tmp_path, "--base-gpu-id 0 --gpu-id-step 2", gpus=8, info=heads(32))
    assert resolved(plan.argv, "--tp-size") == "4"


def test_multi_node_counts_tp_across_nodes(tmp_path: Path) -> None:
    plan = _plan(
        tmp_path,
        gpus=8,
        info=heads(64, 8),
        SGLANG_NNODES="2",
        SGLANG_NODE_RANK="1",
        SGLANG_DIST_INIT_ADDR="10.1.1.1:5000",
    )
    assert resolved(plan.argv, "--tp-size") == "16"
    assert resolved(plan.argv, "--nnodes") == "2"
    assert resolved(plan.argv, "--node-rank") == "1"
    assert resolved(plan.argv, "--dist-init-addr") == "10.1.1.1:5000"


def test_multi_node_without_init_address_warns(tmp_path: Path) -> None:
    plan = _plan(tmp_path, gpus=8, info=heads(64, 8), SGLANG_NNODES="2")
    assert any("SGLANG_DIST_INIT_ADDR is not set" in w for w in plan.warnings)


def test_users_host_and_port_are_kept_probed_and_warned(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "--host 0.0.0.0 --port=30000", gpus=1)
    assert plan.argv.count("--host") == 1 and "--port" not in plan.argv
    assert (plan.host, plan.port) == ("127.0.0.1", 30000)
    assert any("--host 0.0.0.0" in w for w in plan.warnings)
    assert any("--port 30000" in w for w in plan.warnings)


def test_model_path_in_args_overrides_with_a_warning(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "--model-path other/m", gpus=1)
    assert plan.model == "other/m"
    assert any("overrides SGLANG_MODEL=org/m" in w for w in plan.warnings)


def test_environment_exports_model_and_home(tmp_path: Path) -> None:
    plan = _plan(tmp_path, gpus=1, WORKSPACE=str(tmp_path))
    assert plan.env["SGLANG_MODEL"] == plan.env["MODEL_NAME"] == "org/m"
    assert plan.env["HOME"] == str(tmp_path) and plan.cwd == tmp_path


def test_sglang_command_is_split_without_a_shell(tmp_path: Path) -> None:
    plan = _plan(tmp_path, gpus=1, SGLANG_COMMAND="python3 -m sglang.launch_server")
    assert plan.argv[:5] == ["python3", "-m", "sglang.launch_server", "--model-path", "org/m"]


# --- issue 11: secrets never reach `plan`'s output ------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_secret_options_are_masked_in_plan(tmp_path: Path, as_json: bool) -> None:
    repo = str(Path(__file__).resolve().parents[2])
    (tmp_path / "sglang-args.conf").write_text("--admin-api-key=adm-plan-secret-2\n")
    env = {
        "PYTHONPATH": repo,
        "SGLANG_MODEL": "org/m",
        "GPU_COUNT": "1",
        "SGLANG_ARGS": "--api-key sk-plan-secret-1",
        "HF_TOKEN": "hf_plan_secret_3",
    }
    proc = run_plan(tmp_path, env, *(["--json"] if as_json else []))
    assert proc.returncode == 0, proc.stderr
    assert "plan-secret" not in proc.stdout + proc.stderr
    if as_json:
        argv = json.loads(proc.stdout)["argv"]
        assert argv[argv.index("--api-key") + 1] == "***"
        assert "--admin-api-key=***" in argv
    else:
        command = proc.stdout.splitlines()[0]
        assert "--api-key '***'" in command and "'--admin-api-key=***'" in command


# --- saying why (issue 14) -----------------------------------------------------------------


def test_dp_only_layout_says_why_tp_stays_one(tmp_path: Path) -> None:
    plan = _plan(tmp_path, gpus=3, info=heads(32, 8))
    assert resolved(plan.argv, "--dp-size") == "3" and "--tp-size" not in plan.argv
    why = next(d for d in plan.decisions if d.what == "tensor parallel")
    assert why.value == "1"
    assert "32 attention heads, 8 kv heads do not divide by 3 GPUs" in why.why


def test_users_tp_leaving_gpus_idle_is_a_warning(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "--tp 2", gpus=8, info=heads(32, 8))
    assert resolved(plan.argv, "--tp-size") == "2"
    assert (
        "tp=2 x pp=1 x dp=1 uses 2 of the 8 visible GPUs: 6 stay idle; add --dp-size 4 to "
        "serve with all of them"
    ) in plan.warnings
    plan = _plan(tmp_path, "--tp 2 --dp 4", gpus=8, info=heads(32, 8))
    assert not any("idle" in w for w in plan.warnings)


def test_plan_says_whether_the_args_file_was_read(tmp_path: Path) -> None:
    env = {"SGLANG_MODEL": "org/m", "GPU_COUNT": "1"}
    conf = tmp_path / "sglang-args.conf"
    assert (
        plan_json(tmp_path, env)["args_file"] == f"{conf}: not found, nothing added (that is fine)"
    )
    conf.write_text("# nothing yet\n")
    assert plan_json(tmp_path, env)["args_file"] == f"{conf}: read, no options in it"
    conf.write_text("--context-length 8192\n")
    proc = run_plan(tmp_path, env)
    assert f"Args file: {conf}: read, 2 words appended after SGLANG_ARGS" in proc.stdout


def test_args_file_that_is_a_directory_says_so(tmp_path: Path) -> None:
    (tmp_path / "sglang-args.conf").mkdir()
    proc = run_plan(tmp_path, {"SGLANG_MODEL": "org/m"})
    assert proc.returncode == 78
    assert "is a directory" in proc.stderr and "permissions" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unbalanced_quotes_in_sglang_command_are_one_line(tmp_path: Path) -> None:
    proc = run_plan(tmp_path, {"SGLANG_MODEL": "org/m", "SGLANG_COMMAND": "sglang 'serve"})
    assert proc.returncode == 78
    assert proc.stderr.strip().splitlines() == [
        'vast-sglang-launcher: SGLANG_COMMAND="sglang \'serve" is not valid: it cannot be '
        "split into words (No closing quotation): balance its quotes or escape them; fix or "
        "unset SGLANG_COMMAND"
    ]


@pytest.mark.parametrize(
    ("args", "gpus", "info", "tp", "pp"),
    [
        ("", 8, None, 8, 1),  # the launcher's --tp-size
        ("--tp 2 --pp-size 2", 8, None, 2, 2),  # the user's, through an abbreviation
        ("--dp 2", 8, heads(32, 8), 4, 1),  # the launcher fills tp beside the user's dp
        ("", 8, heads(28, 4), 4, 1),  # lowered for the heads, dp over the rest
        ("--tp-size abc", 8, None, 8, 1),  # not a number: the launcher's comes last
        ("--pp-size 2 -- x", 8, None, 1, 2),  # after a bare --, no option counts
        ("", 1, None, 1, 1),
    ],
)
def test_the_plan_carries_the_sizes_the_server_reads(
    tmp_path: Path, args: str, gpus: int, info: ModelInfo | None, tp: int, pp: int
) -> None:
    plan = _plan(tmp_path, args, gpus=gpus, info=info)
    assert (plan.tp, plan.pp) == (tp, pp)
    if "--" not in args.split():
        assert (resolved(plan.argv, "--tp-size") or "1") == str(tp)
        assert (resolved(plan.argv, "--pp-size") or "1") == str(pp)


def test_the_plan_carries_the_users_revision(tmp_path: Path) -> None:
    assert _plan(tmp_path, "--revision v2 --revision=v3").revision == "v3"
    assert _plan(tmp_path).revision is None
    settings = load_settings({"SGLANG_ARGS": "--revision v2"})
    user = read_user_args(settings.sglang_args, tmp_path / "none.conf")
    inv = GpuInventory((), "NVML", (), assumed_count=1)
    no_model = build_plan(settings, user, inv, None, snapshot("0.5.6.post2"), {})
    assert (no_model.model, no_model.revision) == (None, None)


def test_sglang_command_is_split_once_by_the_settings() -> None:
    from vast_sglang_launcher.errors import ConfigError

    words = load_settings({"SGLANG_COMMAND": "python3 -m 'sglang.launch_server'"})
    assert words.sglang_command_words == ("python3", "-m", "sglang.launch_server")
    with pytest.raises(ConfigError) as bad:
        load_settings({"SGLANG_COMMAND": 'sglang "serve'})
    assert str(bad.value).startswith("SGLANG_COMMAND=")
    assert "cannot be split into words" in str(bad.value)
    assert str(bad.value).endswith("fix or unset SGLANG_COMMAND")
