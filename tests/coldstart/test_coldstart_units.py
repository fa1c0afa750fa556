"""The pure parts of the cold start: file choice, preflight lines, caches, load phases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fake_nvml import h100s, make_nvml

from vast_sglang_launcher.coldstart.phases import PhaseTracker, milestone
from vast_sglang_launcher.coldstart.preflight import disk_problem
from vast_sglang_launcher.hub import HubAccess, is_repo_id
from vast_sglang_launcher.plan.caches import cache_env
from vast_sglang_launcher.plan.fit import gpu_memory_warning, plan_warnings, shm_warning
from vast_sglang_launcher.plan.gpus import discover
from vast_sglang_launcher.repo_files import choose, weight_bytes

GiB = 1024**3


def test_safetensors_repo_skips_bin_duplicates_and_extras() -> None:
    files = [
        ".gitattributes",
        "README.md",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "tokenizer.model",
        "special_tokens_map.json",
        "chat_template.jinja",
        "modeling_custom.py",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model.bin.index.json",
        "consolidated.safetensors",
        "original/consolidated.00.pth",
        "flax_model.msgpack",
        "onnx/model.onnx",
        "logo.png",
    ]
    assert choose(files) == [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "tokenizer.model",
        "special_tokens_map.json",
        "chat_template.jinja",
        "modeling_custom.py",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ]


def test_pytorch_only_repo_gets_its_bin_files() -> None:
    files = ["config.json", "pytorch_model.bin", "pytorch_model.bin.index.json", "README.md"]
    assert choose(files) == ["config.json", "pytorch_model.bin", "pytorch_model.bin.index.json"]
    assert choose(["config.json", "consolidated.safetensors"]) == [
        "config.json",
        "consolidated.safetensors",
    ]


def test_weight_bytes_counts_only_the_chosen_weights() -> None:
    sizes = {"config.json": 10, "model.safetensors": 5 * GiB, "pytorch_model.bin": 5 * GiB}
    assert weight_bytes(sizes) == 5 * GiB


def test_repo_ids_and_local_paths(tmp_path: Path) -> None:
    assert is_repo_id("Qwen/Qwen2.5-7B-Instruct") and is_repo_id("gpt2")
    assert not is_repo_id("/models/qwen") and not is_repo_id("./qwen")
    assert not is_repo_id(str(tmp_path)) and not is_repo_id("a/b/c")


def test_disk_line_names_the_sizes() -> None:
    line = disk_problem("org/big", 20 * GiB, 30 * GiB, 5 * GiB, Path("/workspace/hub"))
    assert line == (
        "not enough disk for org/big: 20.0 GiB still to download (of 30.0 GiB) into "
        "/workspace/hub, but only 5.0 GiB free: free some space or give the instance a "
        "larger disk"
    )
    assert disk_problem("org/big", 4 * GiB, 30 * GiB, 5 * GiB, Path("/x")) is None


def test_gpu_memory_and_shm_warnings_give_the_numbers() -> None:
    line = gpu_memory_warning(140 * GiB, 1, 81559, "NVIDIA H100 80GB HBM3")
    assert line is not None
    assert "140.0 GiB" in line and "tp=1" in line and "79.6 GiB" in line
    assert gpu_memory_warning(140 * GiB, 2, 81559, "H100") is None
    two_stages = gpu_memory_warning(400 * GiB, 2, 81559, "H100", pp=2)
    assert two_stages is not None and "100.0 GiB per GPU with tp=2 x pp=2" in two_stages
    shm = shm_warning(2, 64 * 1024 * 1024)
    assert shm is not None and "64.0 MiB" in shm and "--shm-size" in shm
    assert shm_warning(1, 64 * 1024 * 1024) is None
    assert shm_warning(4, 16 * GiB) is None


def test_plan_warnings_from_a_local_checkpoint_and_nvml(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with open(model / "model.safetensors", "wb") as f:  # sparse: no disk used
        f.truncate(200 * GiB)
    gpus = discover(None, None, None, make_nvml(h100s(2)))
    access = HubAccess("http://127.0.0.1:9", None, 1.0, offline=True)
    named = [(g.name, g.memory_mib) for g in gpus.gpus]
    warnings = plan_warnings(str(model), None, 2, 1, named, tmp_path, access, 64 * 1024 * 1024)
    assert len(warnings) == 2
    assert "200.0 GiB" in warnings[0] and "100.0 GiB per GPU with tp=2" in warnings[0]
    assert "--shm-size" in warnings[1]
    assert plan_warnings(str(model), None, 4, 1, named, tmp_path, access, 16 * GiB) == []
    assert plan_warnings(str(model), None, 1, 4, named, tmp_path, access, 16 * GiB) == []


def test_caches_go_to_the_workspace_unless_set() -> None:
    env = cache_env(Path("/workspace"), {"TRITON_CACHE_DIR": "/mine", "SGLANG_CACHE_DIR": " "})
    assert env == {
        "TORCHINDUCTOR_CACHE_DIR": "/workspace/.cache/torchinductor",
        "FLASHINFER_WORKSPACE_BASE": "/workspace",
        "SGLANG_DG_CACHE_DIR": "/workspace/.cache/deep_gemm",
        "SGLANG_CACHE_DIR": "/workspace/.cache/sglang",
        "CUDA_CACHE_PATH": "/workspace/.nv/ComputeCache",
    }


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, **kw: Any) -> None:
        self.lines.append(msg)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sglang_milestones_move_the_phase_forward_only() -> None:
    published: list[dict[str, Any]] = []
    log, clock = Log(), Clock()
    t = PhaseTracker(lambda **kw: published.append(kw), log, 600.0, clock)
    t.new_start()
    script = [
        (1.0, b"[2025-05-02 16:14:20 TP0] Load weight begin. avail mem=78.50 GB\n"),
        (0.0, b"[2025-05-02 16:14:20 TP1] Load weight begin. avail mem=78.50 GB\n"),
        (30.0, b"[2025-05-02 16:14:50 TP0] Load weight end. type=LlamaForCausalLM\n"),
        (0.5, b"[2025-05-02 16:14:51 TP0] KV Cache is allocated. #tokens: 1036794\n"),
        (0.5, b"[2025-05-02 16:14:51 TP0] Memory pool end. avail mem=7.46 GB\n"),
        (0.0, b"[TP0] Capture cuda graph begin. This can take up to several minutes.\n"),
        (210.0, b"[TP0] Capture cuda graph end. Time elapsed: 210.00 s.\n"),
        (0.0, b"[TP1] Load weight begin. avail mem=1.00 GB\n"),  # never goes back
        (2.0, b"INFO:     Uvicorn running on http://127.0.0.1:18000 (Press CTRL+C to quit)\n"),
        (3.0, b"[2025-05-02 16:18:30] The server is fired up and ready to roll!\n"),
    ]
    for dt, line in script:
        clock.now += dt
        t.feed([line])
    names = [h["phase"] for h in published[-1]["phases"]]
    assert names == ["starting", "loading_weights", "kv_cache", "cuda_graph", "warmup", "ready"]
    took = {h["phase"]: h["duration_s"] for h in published[-1]["phases"]}
    assert took["cuda_graph"] == 212.0 and took["loading_weights"] == 30.0
    assert published[-1]["phase"]["name"] == "ready"
    assert log.lines[-2] == "phase: warming up (capturing CUDA graphs took 3 min 32 s)"
    assert len(log.lines) == 6  # one line per phase change
    assert milestone(b"nothing to see") is None


def test_later_releases_name_their_graphs() -> None:
    """After 0.5.10 SGLang names each graph it captures and adds elapsed= to its lines."""
    assert milestone(b"[2026-09-22 19:53:22] Load weight end. elapsed=118.38 s, type=X") == (
        "kv_cache"
    )
    assert milestone(b"[TP0] KV Cache is allocated. dtype: torch.float8_e4m3fn, #tokens: 9") == (
        "kv_cache"
    )
    for line in (
        b"[2026-09-22 19:53:41 TP0] Capture target verify CUDA graph begin. backend=full",
        b"[TP0] Capture target decode CUDA graph begin. bs [1, 2, 4]",
        b"[TP0] Capture draft extend cuda graph begin. This can take up to several minutes.",
        b"[TP0] Capture cuda graph begin. This can take up to several minutes. avail mem=7 GB",
    ):
        assert milestone(line) == "cuda_graph"
    assert milestone(b"[TP0] Capture target decode CUDA graph end. elapsed=16.40 s") is None


def test_a_restart_keeps_the_last_start_and_begins_a_new_list() -> None:
    published: list[dict[str, Any]] = []
    clock = Clock()
    t = PhaseTracker(lambda **kw: published.append(kw), Log(), 600.0, clock)
    t.enter("waiting_provisioning")
    clock.now += 5
    t.new_start()
    t.feed([b"Load weight begin\n"])
    clock.now += 1
    t.new_start()
    last = published[-1]
    assert [h["phase"] for h in last["previous_phases"]] == [
        "waiting_provisioning",
        "starting",
        "loading_weights",
    ]
    assert [h["phase"] for h in last["phases"]] == ["starting"]


def test_stall_is_reported_once_per_stall_and_names_the_phase() -> None:
    clock = Clock()
    t = PhaseTracker(lambda **kw: None, Log(), 600.0, clock)
    t.new_start()
    t.feed([b"Load weight begin\n"])
    clock.now += 599
    assert t.stalled() is None
    clock.now += 2
    line = t.stalled()
    assert line == (
        "startup looks stalled: no server output for 10 min 1 s while loading weights "
        "(LAUNCHER_STALL_TIMEOUT)"
    )
    assert t.stalled() is None
    t.feed([b"some output\n"])
    clock.now += 601
    assert t.stalled() is not None


def test_the_plan_gives_the_server_the_caches(tmp_path: Path) -> None:
    from vast_sglang_launcher.plan.prepare import prepare_plan
    from vast_sglang_launcher.settings import load_settings

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"num_attention_heads": 8}')
    env = {
        "SGLANG_MODEL": str(model),
        "WORKSPACE": str(tmp_path / "ws"),
        "SGLANG_ARGS_FILE": str(tmp_path / "none"),
        "GPU_COUNT": "1",
        "TRITON_CACHE_DIR": "/mine/triton",
    }
    plan = prepare_plan(load_settings(env), env)
    assert plan.env["TRITON_CACHE_DIR"] == "/mine/triton"
    assert plan.env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "ws" / ".cache/torchinductor")
    assert plan.env["SGLANG_DG_CACHE_DIR"] == str(tmp_path / "ws" / ".cache/deep_gemm")
    assert plan.env["CUDA_CACHE_PATH"] == str(tmp_path / "ws" / ".nv/ComputeCache")


def test_a_progress_bar_without_newlines_counts_as_output() -> None:
    clock = Clock()
    t = PhaseTracker(lambda **kw: None, Log(), 600.0, clock)
    t.new_start()
    clock.now += 599
    t.feed([])  # SGLang's own download: a tqdm bar redrawn with \r, no whole line
    clock.now += 599
    assert t.stalled() is None


def test_the_parallel_sizes_are_read_from_the_argv_as_sglang_reads_them(tmp_path: Path) -> None:
    """The sizes the fit checks get (the plan's tp and pp): the last occurrence wins."""
    from vast_sglang_launcher.plan.build import build_plan
    from vast_sglang_launcher.plan.gpus import GpuInventory
    from vast_sglang_launcher.plan.options import snapshot, snapshot_versions
    from vast_sglang_launcher.plan.user_args import read_user_args
    from vast_sglang_launcher.settings import load_settings

    inv = GpuInventory((), "NVML", (), assumed_count=8)
    for version in snapshot_versions():  # every shipped release reads them the same
        for args, tp, pp in [
            ("--tp 2 --tensor-parallel-size=4", 4, 1),
            ("--tp 2 --tensor-parallel-size=4 --pipeline-parallel-size 2", 4, 2),
            ("--dp-size 8", 1, 1),
        ]:
            env = {"SGLANG_MODEL": "m", "SGLANG_ARGS": args}
            settings = load_settings(env)
            user = read_user_args(settings.sglang_args, tmp_path / "none.conf")
            plan = build_plan(settings, user, inv, None, snapshot(version), env)
            assert (plan.tp, plan.pp) == (tp, pp), (version, args)


def test_download_progress_counts_partial_blobs_of_both_client_lines(tmp_path: Path) -> None:
    from vast_sglang_launcher.coldstart.progress import bytes_on_disk

    blobs = tmp_path / "models--org--m" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / "aaa").write_bytes(b"x" * 100)  # complete
    (blobs / "bbb.incomplete").write_bytes(b"x" * 30)  # huggingface_hub 1.x
    (blobs / "ccc.1f2e3d4c.incomplete").write_bytes(b"x" * 20)  # 2.x: a per-process name
    files: list[tuple[str, int, str | None]] = [
        ("a", 100, "aaa"),
        ("b", 50, "bbb"),
        ("c", 40, "ccc"),
        ("d", 10, "ddd"),
    ]
    assert bytes_on_disk(tmp_path, "org/m", files) == 150


def test_the_hub_access_is_built_once_from_the_settings() -> None:
    from vast_sglang_launcher.hub import DOWNLOAD_TIMEOUT_FLOOR, hub_access
    from vast_sglang_launcher.settings import load_settings

    quick = hub_access(load_settings({"HF_TOKEN": "hf_x", "HF_ENDPOINT": "http://127.0.0.1:9"}))
    assert (quick.endpoint, quick.token, quick.offline) == ("http://127.0.0.1:9", "hf_x", False)
    assert quick.timeout == 5.0  # a plan's requests: LAUNCHER_MODEL_INFO_TIMEOUT
    assert quick.for_download().timeout == DOWNLOAD_TIMEOUT_FLOOR == 10.0
    slow = hub_access(load_settings({"LAUNCHER_MODEL_INFO_TIMEOUT": "30", "HF_HUB_OFFLINE": "1"}))
    assert (slow.timeout, slow.for_download().timeout, slow.offline) == (30.0, 30.0, True)
    assert slow.token is None
