"""build_plan in-process, decision by decision: the argv, the decisions and the warnings a
user reads in `plan`, for the layouts the launcher chooses (auto, the user's dp/pp, DP
attention, several nodes) and the user's own tp. The mutation run (scripts/mutation.py)
uses these for plan/build.py."""

from __future__ import annotations

from pathlib import Path

from vast_sglang_launcher.host_limits import ThreadCaps
from vast_sglang_launcher.plan.build import (
    LaunchPlan,
    build_plan,
    read_words,
    served_model,
    tp_fits,
)
from vast_sglang_launcher.plan.gpus import GpuInventory
from vast_sglang_launcher.plan.model_info import ModelInfo
from vast_sglang_launcher.plan.options import OptionTable, scan, snapshot
from vast_sglang_launcher.plan.user_args import read_user_args
from vast_sglang_launcher.settings import load_settings

TABLE = "0.5.6.post2"


def plan(
    args: str = "",
    gpus: int = 8,
    info: ModelInfo | None = None,
    gpu_warnings: tuple[str, ...] = (),
    table: str | OptionTable = TABLE,
    threads: ThreadCaps | None = None,
    **env: str | None,
) -> LaunchPlan:
    """The one place a test calls build_plan (a signature change is one edit here). An env
    value of None leaves the variable out."""
    given = {"SGLANG_MODEL": "org/m", "SGLANG_ARGS": args, **env}
    environ = {k: v for k, v in given.items() if v is not None}
    settings = load_settings(environ)
    user = read_user_args(settings.sglang_args, Path("/nonexistent/sglang-args.conf"))
    inventory = GpuInventory((), "NVML", gpu_warnings, assumed_count=gpus)
    chosen = snapshot(table) if isinstance(table, str) else table
    return build_plan(settings, user, inventory, info, chosen, environ, threads=threads)


def heads(h: int, kv: int | None = None) -> ModelInfo:
    return ModelInfo(h, kv if kv is not None else h, "X", "test")


def value(p: LaunchPlan, option: str) -> str | None:
    """What SGLang's own parsing makes of the planned argv (`sglang serve` stripped)."""
    table = snapshot(TABLE)
    occ = scan(table, p.argv[2:]).last(table.by_string[option].dest)
    return occ.value if occ else None


def warned(p: LaunchPlan, text: str) -> bool:
    return any(text in w for w in p.warnings)


def decision(p: LaunchPlan, what: str) -> tuple[str, str, str]:
    found = next(d for d in p.decisions if d.what == what)
    return found.value, found.source, found.why


# --- auto parallel ----------------------------------------------------------------------


def test_two_gpus_get_tensor_parallel_two() -> None:
    p = plan(gpus=2, info=heads(32, 8))
    assert value(p, "--tp-size") == "2"
    assert value(p, "--dp-size") is None
    assert p.argv[-2:] == ["--tp-size", "2"]
    assert decision(p, "--tp-size")[1] == "NVML"
    assert "all 2 GPUs (32 attention heads, 8 kv heads)" in decision(p, "--tp-size")[2]
    assert p.warnings == []


def test_one_gpu_adds_no_parallelism() -> None:
    p = plan(gpus=1, info=heads(32, 8))
    assert value(p, "--tp-size") is None
    assert decision(p, "parallel layout")[0] == "tp=1"


def test_heads_that_do_not_divide_give_tp_and_dp_over_every_gpu() -> None:
    p = plan(gpus=8, info=heads(28, 4))
    assert (value(p, "--tp-size"), value(p, "--dp-size")) == ("4", "2")
    assert "28 attention heads, 4 kv heads do not divide by 8 GPUs" in decision(p, "--tp-size")[2]
    assert "4 x 2 = 8" in decision(p, "--dp-size")[2]


def test_no_tp_above_one_fits_then_each_gpu_serves_a_copy() -> None:
    p = plan(gpus=4, info=heads(7, 7))
    assert value(p, "--tp-size") is None
    assert value(p, "--dp-size") == "4"
    assert decision(p, "tensor parallel")[0] == "1"


def test_unknown_heads_spread_over_all_gpus_with_a_warning() -> None:
    p = plan(gpus=8, info=None)
    assert value(p, "--tp-size") == "8"
    assert warned(p, "head counts are unknown")
    assert "heads unknown" in decision(p, "--tp-size")[2]
    assert warned(plan(gpus=8, info=ModelInfo(None, None, None, "x")), "head counts are unknown")


def test_no_gpu_adds_no_parallelism_and_says_so() -> None:
    p = plan(gpus=0, info=heads(32, 8))
    assert value(p, "--tp-size") is None
    assert warned(p, "no GPU visible")


def test_auto_parallel_off_adds_nothing() -> None:
    p = plan(gpus=8, info=heads(28, 4), AUTO_PARALLEL="false")
    assert value(p, "--tp-size") is None and value(p, "--dp-size") is None
    assert decision(p, "parallel layout")[1] == "AUTO_PARALLEL"
    assert not warned(p, "head counts")


def test_gpu_discovery_warnings_reach_the_plan() -> None:
    p = plan(gpus=2, info=heads(32, 8), gpu_warnings=("NVML says GPU 1 is busy",))
    assert "NVML says GPU 1 is busy" in p.warnings
    assert p.gpus is not None and p.gpus.warnings == ("NVML says GPU 1 is busy",)


# --- the user's dp / pp: tp fills the rest ----------------------------------------------


def test_users_dp_leaves_tp_for_the_other_gpus() -> None:
    p = plan("--dp-size 2", gpus=8, info=heads(32, 8))
    assert value(p, "--tp-size") == "4"
    assert value(p, "--dp-size") == "2"
    assert "(2 groups); 8 GPUs leave tp=4" in decision(p, "--tp-size")[2]
    assert p.warnings == []


def test_users_dp_with_heads_that_do_not_divide_the_rest_lowers_tp() -> None:
    p = plan("--dp-size 2", gpus=8, info=heads(6, 6))
    assert value(p, "--tp-size") == "2"
    assert "lowered to 2 for 6 attention heads, 6 kv heads" in decision(p, "--tp-size")[2]
    assert warned(
        p, "tp=2 leaves 4 of 8 GPUs idle: 6 attention heads, 6 kv heads do not divide by 4"
    )


def test_users_dp_that_does_not_divide_the_gpus_is_named() -> None:
    p = plan("--dp-size 3", gpus=8, info=heads(32, 8))
    assert warned(p, "dp*pp = 3 does not divide the 8 GPUs")
    assert value(p, "--tp-size") == "2"
    q = plan("--dp-size 16", gpus=8, info=heads(32, 8))
    assert warned(q, "dp*pp = 16 does not divide the 8 GPUs")
    assert value(q, "--tp-size") is None


def test_users_dp_and_pp_share_the_gpus() -> None:
    p = plan("--dp-size 2 --pp-size 2", gpus=8, info=heads(32, 8))
    assert value(p, "--tp-size") == "2"
    assert "(4 groups)" in decision(p, "--tp-size")[2]


# --- the user's tp ----------------------------------------------------------------------


def test_users_tp_that_fits_gets_no_heads_warning() -> None:
    p = plan("--tp 4", gpus=4, info=heads(32, 8))
    assert decision(p, "tensor parallel")[:2] == ("4", "SGLANG_ARGS")
    assert "set by the user as --tp;" in decision(p, "tensor parallel")[2]
    assert p.warnings == []


def test_users_tp_that_does_not_divide_the_heads_is_warned() -> None:
    p = plan("--tp-size 8", gpus=8, info=heads(28, 4))
    assert warned(p, "tp=8 does not divide the model's 28 attention heads, 4 kv heads")
    assert not warned(plan("--tp-size 8", gpus=8, info=None), "does not divide")


def test_users_tp_above_the_gpus_is_warned() -> None:
    p = plan("--tp 4", gpus=2, info=heads(32, 8))
    assert warned(p, "tp=4 x pp=1 x dp=1 needs 4 GPUs but 2 are visible")
    assert not warned(p, "idle")


def test_users_tp_below_the_gpus_suggests_dp() -> None:
    p = plan("--tp 2", gpus=8, info=heads(32, 8))
    assert warned(
        p, "tp=2 x pp=1 x dp=1 uses 2 of the 8 visible GPUs: 6 stay idle; add --dp-size 4"
    )
    q = plan("--tp 2 --dp-size 2", gpus=8, info=heads(32, 8))
    assert warned(q, "uses 4 of the 8 visible GPUs: 4 stay idle")
    assert not warned(q, "add --dp-size")
    r = plan("--tp 3", gpus=8, info=heads(48, 48))
    assert warned(r, "5 stay idle")
    assert not warned(r, "add --dp-size")


def test_users_tp_that_uses_every_gpu_is_quiet() -> None:
    assert plan("--tp 2 --dp 4", gpus=8, info=heads(32, 8)).warnings == []
    assert plan("--tp 2", gpus=0, info=heads(32, 8)).warnings == []


def test_users_tp_with_dp_attention_counts_no_dp_gpus() -> None:
    p = plan("--tp 8 --dp 4 --enable-dp-attention", gpus=8, info=heads(32, 8))
    assert p.warnings == []
    q = plan("--tp 6 --dp 4 --enable-dp-attention", gpus=8, info=heads(48, 48))
    assert warned(q, "tp=6 is not divisible by the 4 attention groups")


def test_a_number_that_is_not_one_is_warned_and_ignored() -> None:
    p = plan("--tp two", gpus=2, info=heads(32, 8))
    assert warned(p, "--tp 'two' is not a whole number")
    assert decision(p, "--tp-size")[0] == "2"


def test_a_stray_word_does_not_stop_the_scan_before_the_users_tp() -> None:
    p = plan("stray --tp 2", gpus=8, info=heads(32, 8))
    assert decision(p, "tensor parallel")[0] == "2"
    assert warned(p, "'stray' is not an option")
    assert value(p, "--dp-size") is None


def test_base_gpu_id_and_step_count_the_usable_gpus() -> None:
    p = plan("--base-gpu-id 4", gpus=8, info=heads(32, 8))
    assert value(p, "--tp-size") == "4"
    assert decision(p, "usable GPUs")[0] == "4"
    assert "8 visible, starting at 4 every 1" in decision(p, "usable GPUs")[2]
    q = plan("--gpu-id-step 2", gpus=8, info=heads(32, 8))
    assert value(q, "--tp-size") == "4"


# --- DP attention ----------------------------------------------------------------------


def test_dp_attention_spans_the_gpus_with_tp() -> None:
    p = plan("--dp 4 --enable-dp-attention", gpus=8, info=heads(32, 8))
    assert value(p, "--tp-size") == "8"
    assert "tp divisible by 4; 2 rank(s) per group" in decision(p, "--tp-size")[2]
    assert p.warnings == []


def test_dp_attention_with_no_fitting_tp_adds_none() -> None:
    p = plan("--dp 3 --enable-dp-attention", gpus=2, info=heads(32, 8))
    assert value(p, "--tp-size") is None
    assert warned(p, "tp divisible by the 3 attention groups, and 2 GPUs allow none")


def test_dp_attention_that_leaves_gpus_idle_says_how_many() -> None:
    p = plan("--dp 2 --enable-dp-attention --pp-size 2", gpus=6, info=heads(32, 8))
    assert value(p, "--tp-size") == "2"
    assert "; pp=2 stages" in decision(p, "--tp-size")[2]
    assert warned(p, "tp=2 x pp=2 leaves 2 of 6 GPUs idle")


def test_attn_dp_with_dp_is_refused_by_sglang() -> None:
    p = plan("--dp-size 2 --attn-dp-size 4", gpus=8, info=heads(32, 8), table="0.5.23")
    assert warned(p, "--dp-size 2 with --attn-dp-size 4: SGLang refuses")


# --- several nodes ----------------------------------------------------------------------

NODES = "--nnodes 2 --node-rank 0 --dist-init-addr 10.0.0.1:5000"


def test_two_nodes_spread_tp_over_both() -> None:
    p = plan(NODES, gpus=4, info=heads(32, 8))
    assert value(p, "--tp-size") == "8"
    assert decision(p, "--tp-size")[1] == "NVML x SGLANG_NNODES"


def test_two_nodes_with_heads_that_do_not_divide_keep_tp_a_multiple_of_the_nodes() -> None:
    p = plan(NODES, gpus=4, info=heads(28, 4))
    assert value(p, "--tp-size") == "4"
    assert value(p, "--dp-size") is None
    assert "28 attention heads, 4 kv heads do not divide by 8" in decision(p, "--tp-size")[2]
    assert warned(p, "tp=4 leaves 4 of 8 GPUs idle across nodes")


def test_two_nodes_where_no_tp_fits_add_none() -> None:
    p = plan(NODES, gpus=4, info=heads(3, 3))
    assert value(p, "--tp-size") is None
    assert warned(p, "no tp over 2 nodes fits 3 attention heads, 3 kv heads")


def test_nodes_from_the_settings_are_added() -> None:
    p = plan(gpus=4, info=heads(32, 8), SGLANG_NNODES="2", SGLANG_NODE_RANK="1")
    assert value(p, "--nnodes") == "2"
    assert value(p, "--node-rank") == "1"
    assert value(p, "--tp-size") == "8"
    assert p.node_rank == 1 and not p.serves_api
    assert warned(p, "SGLANG_DIST_INIT_ADDR is not set")
    q = plan(gpus=4, info=heads(32, 8), SGLANG_NNODES="2", SGLANG_DIST_INIT_ADDR="10.0.0.1:5000")
    assert value(q, "--dist-init-addr") == "10.0.0.1:5000"
    assert q.node_rank == 0 and q.serves_api
    assert not warned(q, "SGLANG_DIST_INIT_ADDR")


def test_users_node_options_win() -> None:
    p = plan("--node-rank 1 --nnodes 2 --dist-init-addr h:1", gpus=4, SGLANG_NNODES="2")
    assert p.node_rank == 1
    assert p.argv.count("--nnodes") == 1 and p.argv.count("--node-rank") == 1
    assert p.argv.count("--dist-init-addr") == 1


def test_tp_fits() -> None:
    assert tp_fits(8, heads(32, 8))
    assert not tp_fits(8, heads(28, 4))
    assert tp_fits(16, heads(32, 8))  # kv heads replicated: tp divisible by them
    assert not tp_fits(12, heads(48, 8))
    assert tp_fits(4, ModelInfo(32, None, None, "x"))
    assert not tp_fits(3, ModelInfo(32, None, None, "x"))


# --- host, port, model ------------------------------------------------------------------


def test_the_image_address_is_added() -> None:
    p = plan(gpus=1)
    assert p.argv[:4] == ["sglang", "serve", "--model-path", "org/m"]
    assert (value(p, "--host"), value(p, "--port")) == ("127.0.0.1", "18000")
    assert (p.host, p.port) == ("127.0.0.1", 18000)
    assert decision(p, "--host")[1] == "default" and decision(p, "--port")[1] == "default"
    assert p.env["SGLANG_MODEL"] == "org/m" and p.env["MODEL_NAME"] == "org/m"
    assert p.model == "org/m"


def test_a_configured_address_names_its_setting() -> None:
    p = plan(gpus=1, SGLANG_HOST="0.0.0.0", LAUNCHER_SERVER_PORT="19000")
    assert (value(p, "--host"), value(p, "--port")) == ("0.0.0.0", "19000")
    assert (p.host, p.port) == ("127.0.0.1", 19000)
    assert decision(p, "--host")[1] == "SGLANG_HOST"
    assert decision(p, "--port")[1] == "LAUNCHER_SERVER_PORT"


def test_the_users_host_and_port_are_probed_and_warned() -> None:
    p = plan("--host :: --port 9000", gpus=1)
    assert (p.host, p.port) == ("::1", 9000)
    assert warned(p, "sets --host ::; the image expects 127.0.0.1")
    assert warned(p, "sets --port 9000; the auth proxy publishes 18000")
    q = plan("--host 127.0.0.1 --port 18000", gpus=1, info=heads(32, 8))
    assert q.warnings == [] and q.argv.count("--port") == 1
    r = plan("--port x", gpus=1)
    assert warned(r, "--port 'x' is not a number")
    assert r.port == 18000


def test_the_model_from_the_users_args() -> None:
    settings_less = plan("--model-path a/b", gpus=1, SGLANG_MODEL="")
    assert settings_less.model == "a/b"
    assert decision(settings_less, "model")[1] == "SGLANG_ARGS"
    assert settings_less.argv.count("--model-path") == 1
    p = plan("--model-path a/b", gpus=1)
    assert p.model == "a/b"
    assert warned(p, "SGLANG_ARGS sets --model-path a/b, which overrides SGLANG_MODEL=org/m")
    none = plan(gpus=1, SGLANG_MODEL="")
    assert none.model is None and none.argv == []


def test_a_model_spelling_serve_does_not_find_is_warned() -> None:
    p = plan("--model a/b", gpus=1, SGLANG_MODEL="")
    assert warned(p, "finds the model only when it is written as --model-path")
    assert not warned(plan("--model-path=a/b", gpus=1, SGLANG_MODEL=""), "finds the model")


def test_model_name_is_the_source_when_sglang_model_is_unset() -> None:
    p = plan(gpus=1, SGLANG_MODEL="", MODEL_NAME="c/d")
    assert decision(p, "--model-path")[:2] == ("c/d", "MODEL_NAME")


def test_the_plan_as_json() -> None:
    p = plan("--tp 2", gpus=2, info=heads(32, 8))
    data = p.as_dict()
    assert data["argv"] == p.argv
    assert data["probe"] == {"host": "127.0.0.1", "port": 18000}
    assert data["model"]["name"] == "org/m" and data["model"]["heads"] == 32
    assert data["gpus"]["count"] == 2
    assert data["option_table"]["sglang_version"] == TABLE
    assert data["node_rank"] == 0
    assert {"what": "tensor parallel", "value": "2", "source": "SGLANG_ARGS"}.items() <= data[
        "decisions"
    ][-1].items()
    assert plan(gpus=1).as_dict()["model"]["source"] is None
    assert p.command_line().startswith("sglang serve --model-path org/m ")


# --- exact lines and the rest of the plan -------------------------------------------------


def test_the_users_dp_lines_exactly() -> None:
    p = plan("--dp-size 2", gpus=8, info=heads(32, 8))
    assert decision(p, "--tp-size")[2] == "the user set dp/pp (2 groups); 8 GPUs leave tp=4"
    q = plan("--pp-size 2", gpus=8, info=heads(32, 8))
    assert value(q, "--tp-size") == "4"
    r = plan("--dp-size 8", gpus=8, info=heads(32, 8))
    assert r.warnings == [] and value(r, "--tp-size") == "1"


def test_two_gpus_whose_heads_do_not_divide_serve_two_copies() -> None:
    p = plan(gpus=2, info=heads(3, 3))
    assert (value(p, "--tp-size"), value(p, "--dp-size")) == (None, "2")
    q = plan(gpus=4, info=heads(2, 2))
    assert (value(q, "--tp-size"), value(q, "--dp-size")) == ("2", "2")


def test_the_users_tp_lines_exactly() -> None:
    p = plan("--tp=2", gpus=8, info=heads(32, 8))
    assert decision(p, "tensor parallel")[2] == (
        "set by the user as --tp; the launcher never overrides it"
    )
    assert p.warnings == [
        "tp=2 x pp=1 x dp=1 uses 2 of the 8 visible GPUs: 6 stay idle; add --dp-size 4 to "
        "serve with all of them"
    ]
    q = plan("--tp 3", gpus=8, info=heads(48, 48))
    assert q.warnings == ["tp=3 x pp=1 x dp=1 uses 3 of the 8 visible GPUs: 5 stay idle"]
    r = plan("--tp 4", gpus=2, info=heads(32, 8))
    assert r.warnings == ["tp=4 x pp=1 x dp=1 needs 4 GPUs but 2 are visible"]
    nodes = plan(f"--tp 16 {NODES}", gpus=4, info=heads(32, 8))
    assert nodes.warnings == [
        "tp=16 x pp=1 x dp=1 needs 16 GPUs but 8 are visible (4 per node x 2 nodes)"
    ]


def test_attention_dp_groups_count_no_dp_gpus_for_the_users_tp() -> None:
    p = plan("--tp 8 --attn-dp-size 4", gpus=8, info=heads(32, 8), table="0.5.23")
    assert p.warnings == []
    q = plan("--tp 8 --dp-size 2 --attn-dp-size 4", gpus=8, info=heads(32, 8), table="0.5.23")
    assert not warned(q, "needs")
    assert plan("--attn-dp-size 4", gpus=8, info=heads(32, 8), table="0.5.23").warnings == []
    one = plan("--dp-size 1 --attn-dp-size 4", gpus=8, info=heads(32, 8), table="0.5.23")
    assert not warned(one, "SGLang refuses")


def test_dp_attention_lines_exactly() -> None:
    p = plan("--dp 4 --enable-dp-attention", gpus=8, info=heads(32, 8))
    assert decision(p, "--tp-size")[2].endswith("; 2 rank(s) per group")
    q = plan("--dp 3 --enable-dp-attention", gpus=2, info=heads(32, 8))
    assert q.warnings == [
        "--dp-size 3 --enable-dp-attention: SGLang needs a tp divisible by the 3 attention "
        "groups, and 2 GPUs allow none that 32 attention heads, 8 kv heads also fit: the "
        "launcher adds no tp"
    ]
    r = plan("--dp 3 --enable-dp-attention --pp-size 2", gpus=4, info=heads(32, 8))
    assert "2 GPUs per pipeline stage allow none" in r.warnings[0]
    six = plan("--dp 2 --enable-dp-attention --pp-size 2", gpus=6, info=heads(32, 8))
    assert six.warnings == [
        "tp=2 x pp=2 leaves 2 of 6 GPUs idle: tp must be a multiple of the 2 attention groups "
        "that 32 attention heads, 8 kv heads fit"
    ]
    five = plan("--dp 2 --enable-dp-attention --pp-size 2", gpus=5, info=heads(32, 8))
    assert five.warnings == [
        "tp=2 x pp=2 leaves 1 of 5 GPUs idle: tp must be a multiple of the 2 attention groups"
    ]
    eight = plan("--dp 2 --enable-dp-attention --pp-size 2", gpus=8, info=heads(32, 8))
    assert value(eight, "--tp-size") == "4" and eight.warnings == []
    nodes = plan(f"--dp 2 --enable-dp-attention {NODES}", gpus=3, info=heads(32, 8))
    assert nodes.warnings == [
        "tp=4 x pp=1 leaves 2 of 6 GPUs idle: tp must be a multiple of the 2 attention groups "
        "and of the 2 nodes that 32 attention heads, 8 kv heads fit"
    ]


def test_no_usable_gpus_decision_without_base_or_step() -> None:
    p = plan(gpus=8, info=heads(32, 8))
    assert not any(d.what == "usable GPUs" for d in p.decisions)


def test_the_users_host_and_port_are_decisions() -> None:
    p = plan("--host 127.0.0.1 --port 18000", gpus=1, info=heads(32, 8))
    assert decision(p, "host") == ("127.0.0.1", "SGLANG_ARGS", "set by the user; probed there")
    assert decision(p, "port") == ("18000", "SGLANG_ARGS", "set by the user; probed there")


def test_model_lines_exactly() -> None:
    p = plan("--model-path=a/b", gpus=1)
    assert warned(p, "SGLANG_ARGS sets --model-path a/b, which overrides SGLANG_MODEL=org/m")
    q = plan("--model-path a/b", gpus=1, SGLANG_MODEL="")
    assert [d.what for d in q.decisions][:1] == ["model"]
    assert not any(d.what == "--model-path" for d in q.decisions)
    r = plan(gpus=1, SGLANG_MODEL=None, MODEL_NAME="c/d")
    assert decision(r, "--model-path")[:2] == ("c/d", "MODEL_NAME")


def test_a_plan_without_a_model_serves_the_api_from_rank_0() -> None:
    p = plan(gpus=1, SGLANG_MODEL="")
    assert p.node_rank == 0 and p.serves_api


def test_multi_node_warnings_and_the_orchestrator() -> None:
    p = plan(gpus=4, info=heads(32, 8), SLURM_NNODES="2", SLURM_JOB_NODELIST="a[1-")
    assert warned(p, "SLURM_JOB_NODELIST='a[1-' is not a host list")
    q = plan(gpus=4, info=heads(32, 8), LWS_GROUP_SIZE="2", LWS_LEADER_ADDRESS="head")
    assert decision(q, "--nnodes")[2] == (
        "LWS_GROUP_SIZE=2: one model served by several machines (started by LeaderWorkerSet)"
    )


def test_an_option_the_table_lacks_is_not_added_and_says_why() -> None:
    base = snapshot(TABLE)
    data = {
        "sglang_version": "custom",
        "options": [
            {"options": list(o.strings), "dest": o.dest, "kind": o.kind}
            for o in dict.fromkeys(base.by_string.values())
            if "--tp-size" not in o.strings
        ],
    }
    p = plan(gpus=8, info=heads(32, 8), table=OptionTable.from_json(data, "test"))
    assert p.argv[-4:] == ["--host", "127.0.0.1", "--port", "18000"]
    assert warned(p, "not adding --tp-size 8 (AUTO_PARALLEL: tensor parallel over all 8 GPUs")
    assert warned(p, "--tp-size / --tensor-parallel-size is not in the option table")
    off = plan(gpus=8, table=OptionTable.from_json(data, "test"), AUTO_PARALLEL="false")
    assert warned(off, "--tp-size / --tensor-parallel-size is not in the option table")


def test_the_servers_environment() -> None:
    p = plan(gpus=1, WORKSPACE="/ws", HF_HOME="hf")
    assert p.env["TORCHINDUCTOR_CACHE_DIR"] == "/ws/.cache/torchinductor"
    assert p.env["HF_HOME"] == "/ws/hf" and "HF_HUB_CACHE" not in p.env
    assert p.env["HOME"] == "/ws"
    empty = plan(gpus=1, WORKSPACE="/ws", HF_HOME="")
    assert empty.env["HF_HOME"] == ""  # an empty HF_HOME stays what the user gave
    q = plan(gpus=1, WORKSPACE="/ws", HF_HUB_CACHE="hub")
    assert q.env["HF_HUB_CACHE"] == "/ws/hub" and "HF_HOME" not in q.env
    caps = ThreadCaps({"OMP_NUM_THREADS": "4"}, (), "4 CPUs")
    r = plan(gpus=1, threads=caps)
    assert r.env["OMP_NUM_THREADS"] == "4"
    assert decision(r, "thread pools") == ("OMP_NUM_THREADS=4", "host limits", "4 CPUs")
    kept = plan(gpus=1, threads=ThreadCaps({}, ("OMP_NUM_THREADS",), "yours kept"))
    assert decision(kept, "thread pools")[0] == "yours"
    assert not any(d.what == "thread pools" for d in plan(gpus=1, threads=ThreadCaps()).decisions)


def test_the_plan_as_json_has_every_key() -> None:
    data = plan("--tp 2", gpus=2, info=heads(32, 8), WORKSPACE="/ws").as_dict()
    assert set(data) == {
        "argv",
        "env",
        "cwd",
        "probe",
        "model",
        "gpus",
        "option_table",
        "args_file",
        "node_rank",
        "decisions",
        "warnings",
    }
    assert data["cwd"] == "/ws" and data["env"]["HOME"] == "/ws"
    assert data["model"]["source"] == "test"
    assert set(data["option_table"]) == {"source", "sglang_version", "why"}
    assert data["args_file"].endswith("not found, nothing added (that is fine)")
    assert data["warnings"] == []


# --- what the plan hands on: tp, pp and the revision (the fit warnings, the prefetch) -------


def test_the_plan_carries_the_tp_sglang_reads() -> None:
    # the launcher's --tp-size comes last in the argv, so it is the one SGLang reads
    assert plan(gpus=2, info=heads(32, 8)).tp == 2
    assert plan(gpus=1, info=heads(32, 8)).tp == 1
    # the user's own tp, not one of the launcher
    assert plan("--tp 4", gpus=8, info=heads(32, 8)).tp == 4
    assert plan("--tp-size 2 --tp-size 3", gpus=8).tp == 3


def test_the_plan_carries_the_pp_sglang_reads() -> None:
    assert plan("--pp-size 2", gpus=8, info=heads(32, 8)).pp == 2
    assert plan(gpus=8, info=heads(32, 8)).pp == 1


def test_sizes_that_are_not_positive_whole_numbers_count_as_one() -> None:
    # SGLang's argparse would refuse them; the plan's own tp/pp (for the fit checks) is 1
    zero_tp = plan("--tp-size 0", gpus=2, info=heads(32, 8))
    assert zero_tp.tp == 1
    assert warned(zero_tp, "tp=0: a parallel size is at least 1")
    assert plan("--tp-size 2 --pp-size 0", gpus=2).pp == 1
    assert warned(plan("--tp-size 2 --dp-size -1", gpus=2), "dp=-1: a parallel size")


def test_after_a_bare_double_dash_the_launchers_additions_do_not_count() -> None:
    # argparse reads no option after `--`: the launcher's --tp-size is a positional there
    p = plan("--tp-size 3 --", gpus=2, info=heads(32, 8))
    assert p.tp == 3
    assert plan("--", gpus=2, info=heads(32, 8)).tp == 1


def test_the_plan_carries_the_revision() -> None:
    assert plan("--revision v2 --revision=v3").revision == "v3"
    assert plan().revision is None


def test_a_size_that_is_not_a_number_counts_as_one() -> None:
    # SGLang's argparse refuses `--tp-size two` (type=int); the plan's own tp stays 1
    assert plan("--tp-size two", gpus=1).tp == 1
    assert plan("--pp-size two", gpus=1).pp == 1


def test_after_a_bare_double_dash_the_launchers_pp_does_not_count_either() -> None:
    assert plan("--pp-size 2 --", gpus=4, info=heads(32, 8)).pp == 2
    assert warned(plan("--tp-size 2 --pp-size -1", gpus=2), "pp=-1: a parallel size")


def test_no_model_means_no_revision() -> None:
    # nothing to serve: the prefetch has no model, so no revision of one either
    assert plan("--revision v2", SGLANG_MODEL=None).revision is None
    assert plan("--revision v2").revision == "v2"
    # and no parallel sizes: the fit checks of a plan without a model count one GPU
    nothing = plan(SGLANG_MODEL=None)
    assert (nothing.argv, nothing.tp, nothing.pp) == ([], 1, 1)


def test_the_served_model_and_its_revision() -> None:
    # what the prefetch downloads: the user's --model-path wins (the last word), with the
    # user's --revision; no model at all, no revision either
    def served(args: str, **env: str) -> tuple[str | None, str | None]:
        settings = load_settings({"SGLANG_ARGS": args, **env})
        user = read_user_args(settings.sglang_args, Path("/nonexistent/sglang-args.conf"))
        return served_model(settings, read_words(settings, user, snapshot(TABLE)))

    assert served("--revision v2", SGLANG_MODEL="org/m") == ("org/m", "v2")
    assert served("--model-path a/b --revision v2", SGLANG_MODEL="org/m") == ("a/b", "v2")
    assert served("--revision v2") == (None, None)
