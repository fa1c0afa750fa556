"""The real failure lines of SGLang and the libraries it calls: each one, as its release prints
it, gives up at once with its hint; lines that only look like one stay transient.

Each line below is the message the source builds (file and function in
vast_sglang_launcher/supervise/failure_hints.py), filled in the way the traceback's last line
shows it. Where the wording differs between releases, each wording is a case.
"""

from __future__ import annotations

import pytest
from conftest import LauncherRig

from vast_sglang_launcher.supervise.failure_hints import diagnose
from vast_sglang_launcher.supervise.restart_policy import Failure, Outcome, RestartPolicy

ALL = "0.5.6.post2 .. 0.5.23"

PERMANENT = [
    # (releases, the line, a word of its hint)
    (
        "0.5.6.post2, 0.5.8",
        "RuntimeError: No accelerator (CUDA, XPU, HPU, NPU) is available.",
        "sees no GPU",
    ),
    (
        "0.5.10, 0.5.12",
        "RuntimeError: No accelerator (CUDA, XPU, HPU, NPU, MUSA, MPS) is available.",
        "sees no GPU",
    ),
    (
        "0.5.14 .. 0.5.23",
        "RuntimeError: No accelerator (CUDA, XPU, HPU, NPU, MUSA, MPS) or platform plugin is "
        "available.",
        "sees no GPU",
    ),
    (
        ALL,
        "ValueError: Warning: User-specified context_length (200000) is greater than the derived "
        "context_length (32768). This may lead to incorrect model outputs or CUDA errors. Note "
        "that the derived context_length may differ from max_position_embeddings in the model's "
        "config. To allow overriding this maximum, set the env var "
        "SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1",
        "SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1",
    ),
    (
        ALL,
        "ValueError: The quantization method fp8 is not supported for the current GPU. Minimum "
        "capability: 89. Current capability: 80.",
        "newer GPU",
    ),
    (
        ALL,
        "ValueError: The quantization method moe_wna16 + awq is not supported for the current "
        "GPU. Minimum capability: 75. Current capability: 70.",
        "newer GPU",
    ),
    (
        ALL,
        "ValueError: Unknown quantization method: fp9. Must be one of ['fp8', 'awq', 'gptq'].",
        "--quantization",
    ),
    (
        ALL,
        "ValueError: Quantization method specified in the model config (awq) does not match the "
        "quantization method specified in the `quantization` argument (fp8).",
        "--quantization",
    ),
    (
        ALL,
        "ValueError: torch.float32 is not supported for quantization method awq. Supported "
        "dtypes: [torch.float16]",
        "--dtype",
    ),
    (
        ALL,
        "RuntimeError: Cannot find any model weights with `/workspace/models/m`",
        "weight files",
    ),
    (
        ALL,
        "RuntimeError: Failed to load the tokenizer. If the tokenizer is a custom tokenizer not "
        "yet available in the HuggingFace transformers library, consider setting "
        "`trust_remote_code=True` in LLM or using the `--trust-remote-code` flag in the CLI.",
        "--trust-remote-code",
    ),
    (
        "transformers 4.57.1, 5.3.0, 5.19.0",
        "Please pass the argument `trust_remote_code=True` to allow custom code to be run.",
        "--trust-remote-code",
    ),
    (
        ALL,
        "AssertionError: FlashAttention v3 Backend requires SM>=80 and SM<=90. Please use "
        "`--attention-backend flashinfer`.",
        "flashinfer",
    ),
    (
        ALL,
        "Exception: flashinfer_python is installed with version 0.5.2, which is less than the "
        "minimum required version 0.5.3. Please uninstall the old version and reinstall the "
        "latest version by following the instructions at "
        "https://docs.flashinfer.ai/installation.html.",
        "PIP_PACKAGES",
    ),
    (
        "0.5.6.post2, 0.5.8",
        "Exception: sgl-kernel with minimum required version 0.3.19 is not installed. Please "
        "reinstall the latest version with `pip install sgl-kernel --force-reinstall`",
        "PIP_PACKAGES",
    ),
    (
        "0.5.10 .. 0.5.23",
        "Exception: sglang-kernel is installed with version 0.4.1, which is less than the "
        "minimum required version 0.4.9. Please reinstall the latest version with `pip install "
        "sglang-kernel --force-reinstall`",
        "PIP_PACKAGES",
    ),
    (
        ALL,
        "ValueError: Cannot find model module. 'FooForCausalLM' is not a registered model in the "
        "Transformers library (only relevant if the model is meant to be in Transformers) and "
        "'AutoModel' is not present in the model config's 'auto_map' (relevant if the model is "
        "custom).",
        "Transformers fallback",
    ),
    (
        ALL,
        "ValueError: FooForCausalLM has no SGlang implementation and the Transformers "
        "implementation is not compatible with SGLang.",
        "Transformers fallback",
    ),
    (
        "0.5.6.post2, 0.5.8",
        "ValueError: The Transformers implementation of FooForCausalLM is not compatible with "
        "SGLang.",
        "Transformers fallback",
    ),
    (
        "transformers 4.57.1, 5.3.0, 5.19.0",
        "ValueError: The checkpoint you are trying to load has model type `foo` but Transformers "
        "does not recognize this architecture. This could be because of an issue with the "
        "checkpoint, or because your version of Transformers is out of date.",
        "Transformers fallback",
    ),
    (
        "0.5.14 .. 0.5.23",
        "ValueError: Loaded weights leave no GPU memory for the KV cache under "
        "--mem-fraction-static=0.88. Raise --mem-fraction-static above 0.912 (minimum viable = 1 "
        "- available/pre = 0.9114). If using speculative decoding, draft weights are now counted.",
        "raise --mem-fraction-static",
    ),
    (
        "0.5.6.post2 .. 0.5.23",
        "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static. Current "
        "value: mem_fraction_static=0.5",
        "raise --mem-fraction-static",
    ),
    (
        ALL,
        "ValueError: nccl_port at 28031 is not available in 30 seconds. nccl_port is used by a "
        "process already. process.name()='python3'",
        "--nccl-port",
    ),
    (
        "transformers 4.57.1, 5.3.0, 5.19.0",
        "OSError: We couldn't connect to 'https://huggingface.co' to load the files, and couldn't "
        "find them in the cached files.",
        "cannot be reached",
    ),
    (
        "huggingface_hub 0.36.0, 2.4.0",
        "huggingface_hub.errors.LocalEntryNotFoundError: An error happened while trying to "
        "locate the file on the Hub and we cannot find the requested files in the local cache. "
        "Please check your connection and try again or make sure your Internet connection is on.",
        "cannot be reached",
    ),
    (
        "huggingface_hub 0.36.0, 2.4.0",
        "huggingface_hub.errors.LocalEntryNotFoundError: Cannot find an appropriate cached "
        "snapshot folder for the specified revision on the local disk and outgoing traffic has "
        "been disabled. To enable repo look-ups and downloads online, set 'HF_HUB_OFFLINE=0' as "
        "environment variable.",
        "HF_HUB_OFFLINE",
    ),
    (
        "huggingface_hub 2.4.0",
        "An error happened while trying to locate the files on the Hub, and we cannot find the "
        "appropriate snapshot folder for the specified revision on the local disk. Please check "
        "your internet connection and try again.",
        "cannot be reached",
    ),
    ("0.5.6.post2 .. 0.5.18", "    assert self.tp_size % self.dp_size == 0", "attention groups"),
    (
        "0.5.10 .. 0.5.20",
        "AssertionError: tp_size must be divisible by dp_size * attn_cp_size",
        "attention groups",
    ),
    (
        "0.5.22, 0.5.23",
        "AssertionError: tp_size must be divisible by attn_dp_size * attn_cp_size",
        "attention groups",
    ),
    (ALL, "AssertionError: 28 is not divisible by 8", "--tp"),
    (ALL, "    assert self.total_num_kv_heads % tp_size == 0", "--tp"),
]


@pytest.mark.parametrize(("releases", "line", "needle"), PERMANENT)
def test_real_permanent_lines_give_up_with_their_hint(
    releases: str, line: str, needle: str
) -> None:
    found = diagnose(["Traceback (most recent call last):", line], 1)
    assert found.permanent, (releases, line)
    assert needle in found.hint
    assert found.matched == line


@pytest.mark.parametrize(
    "line",
    [
        # a missing optional file: huggingface_hub EntryNotFoundError; SGLang goes on
        "huggingface_hub.errors.EntryNotFoundError: 404 Client Error. (Request ID: Root=1-abc) "
        "Entry Not Found for url: https://huggingface.co/org/m/resolve/main/generation_config.json.",
        "404 Client Error: Not Found for url: https://huggingface.co/org/m/resolve/main/"
        "preprocessor_config.json",
        # traceback lines that mention the heads without the failing assert
        "    self.total_num_heads = config.num_attention_heads",
        "    self.num_heads = self.total_num_heads // tp_size",
        '  File "/sgl/models/qwen2.py", line 120, in __init__ (total_num_kv_heads)',
        # the context-length warning when SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN is set
        "Warning: User-specified context_length (200000) is greater than the derived "
        "context_length (32768). This may lead to incorrect model outputs or CUDA errors.",
        # wait_port_available's progress line, not its failure
        "port 28031 is in use. Waiting for 15 seconds for nccl_port to be available.",
        # the Transformers fallback that works: a warning
        "FooForCausalLM has no SGLang implementation, falling back to Transformers "
        "implementation. Some features may not be supported and performance may not be optimal.",
        "Capture cuda graph failed: RuntimeError: NCCL error",
        "flashinfer_python 0.5.3 is installed",
        "No accelerator found yet, retrying",
    ],
)
def test_near_misses_stay_transient(line: str) -> None:
    assert not diagnose(["Traceback (most recent call last):", line], 1).permanent


def test_out_of_memory_before_ready_is_permanent_with_init_advice() -> None:
    lines = [
        '  File "/sgl/model_executor/model_runner.py", line 700, in load_model',
        "    self.total_num_heads = config.num_attention_heads",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
        "total capacity of 79.10 GiB of which 1.06 GiB is free.",
    ]
    before = diagnose(lines, -9, served=False)
    after = diagnose(lines, -9, served=True)
    assert before.permanent and "while the server started" in before.hint
    assert "more GPUs (--tp)" in before.hint  # the OOM rule, checked before the heads rule
    assert not after.permanent and "while serving" in after.hint
    assert "lower --mem-fraction-static" in after.hint
    # SGLang's own start-up line: raise the fraction before ready, the opposite when serving
    kv = ["RuntimeError: Not enough memory. Please try to increase --mem-fraction-static."]
    assert "raise --mem-fraction-static" in diagnose(kv, 1).hint
    assert "lower --mem-fraction-static" in diagnose(kv, 1, served=True).hint


def test_the_policy_knows_whether_the_plan_ever_served() -> None:
    p = RestartPolicy(backoff_initial=1, backoff_max=4, backoff_reset=600, start_retries=3)
    crash = Outcome(Failure.EXITED, returncode=-9)
    assert not p.has_served(crash)
    assert p.decide(Outcome(Failure.EXITED, was_ready=True, ready_for=5.0)).give_up is False
    assert p.has_served(crash)  # an earlier start served: an OOM now is a load, not the model
    p.reset()  # a person's restart: a new configuration, it has not served yet
    assert not p.has_served(crash)
    assert p.decide(Outcome(Failure.EXITED, returncode=-9, permanent=True)).give_up


# --- end to end, through the launcher and the stand-in -------------------------------------

OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"


def test_out_of_memory_before_ready_gives_up_at_once(rig: LauncherRig) -> None:
    launcher = rig.start(
        STANDIN_BIND_DELAY="3600",  # never ready
        STANDIN_EXIT_AFTER="0",
        STANDIN_EXIT_CODE="1",
        STANDIN_CRASH_MESSAGE=OOM,
        LAUNCHER_START_RETRIES="3",
    )
    assert rig.wait_exit(launcher) == 78
    assert len(rig.starts()) == 1  # no retry: each would load every weight again
    data = rig.status()
    assert data["state"] == "failed" and "while the server started" in data["hint"]
    assert "cannot fix" in data["last_reason"]
    assert f"hint: {data['hint']}" in rig.stderr()


def test_out_of_memory_after_ready_restarts_with_serving_advice(rig: LauncherRig) -> None:
    trigger = rig.tmp / "oom-now"
    launcher = rig.start(
        STANDIN_CRASH_WHEN=str(trigger), STANDIN_CRASH_MESSAGE=OOM, LAUNCHER_BACKOFF_INITIAL="60"
    )
    rig.wait_state("ready")
    trigger.touch()
    data = rig.wait_state("backoff")  # restarted, not given up
    assert "while serving" in data["hint"] and "lower --mem-fraction-static" in data["hint"]
    trigger.unlink()
    launcher.terminate()
    assert rig.wait_exit(launcher) == 0


@pytest.mark.parametrize(
    ("release", "wording"),
    [
        ("0.5.8", "(CUDA, XPU, HPU, NPU) is available."),
        ("0.5.12", "(CUDA, XPU, HPU, NPU, MUSA, MPS) is available."),
        ("0.5.20", "(CUDA, XPU, HPU, NPU, MUSA, MPS) or platform plugin is available."),
    ],
)
def test_no_gpu_in_each_wording_gives_up_at_once(
    rig: LauncherRig, release: str, wording: str
) -> None:
    launcher = rig.start(
        STANDIN_FAILURE="no_accelerator", STANDIN_RELEASE=release, LAUNCHER_START_RETRIES="3"
    )
    assert rig.wait_exit(launcher) == 78
    assert len(rig.starts()) == 1
    data = rig.status()
    assert "sees no GPU" in data["hint"]
    assert data["last_error"][-1] == f"RuntimeError: No accelerator {wording}"


# --- diagnose, as the supervisor calls it: the hint and whether to give up -----------------


@pytest.mark.parametrize(
    ("line", "rc", "needle"),
    [
        ("sglang serve: error: unrecognized arguments: --bogus", 2, "SGLANG_ARGS"),
        ("sglang serve: error: ambiguous option: --pp could match --pp-size", 2, "SGLANG_ARGS"),
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1 GiB", -9, "memory"),
        (
            "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.",
            -9,
            "mem-fraction-static",
        ),
        ("AssertionError: 32 is not divisible by 3", -9, "--tp"),
        ("    assert self.total_num_heads % tp_size == 0", -9, "--tp"),
        (
            "huggingface_hub.errors.GatedRepoError: 401 Client Error. Cannot access gated repo",
            1,
            "HF_TOKEN",
        ),
        ("RuntimeError: No CUDA GPUs are available", 1, "GPU"),
        (
            "ValueError: Model architectures ['FooForCausalLM'] are not supported for now. "
            "Supported architectures: dict_keys(['LlamaForCausalLM'])",
            1,
            "does not support the model's architecture",
        ),
        (
            "huggingface_hub.errors.RepositoryNotFoundError: 404 Client Error. (Request ID: x) "
            "Repository Not Found for url: https://huggingface.co/api/models/org/nope/revision/main.",
            1,
            "the model was not found",
        ),
    ],
)
def test_well_known_failures_give_up_with_their_hint(line: str, rc: int, needle: str) -> None:
    found = diagnose(["some earlier line", line], rc)
    assert found.permanent
    assert needle in found.hint
    assert found.matched == line


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (
            "OSError: [Errno 98] error while attempting to bind: address already in use",
            "LAUNCHER_SERVER_PORT",
        ),
        ("RuntimeError: port 30000 is already in use", "LAUNCHER_SERVER_PORT"),
        ("OSError: [Errno 28] No space left on device", "the disk is full"),
    ],
)
def test_a_busy_port_or_a_full_disk_keeps_the_backoff(line: str, needle: str) -> None:
    found = diagnose(["Traceback (most recent call last):", line], 1)
    assert not found.permanent
    assert needle in found.hint and found.matched == line
    served = diagnose([line], 1, served=True)
    assert not served.permanent and needle in served.hint


@pytest.mark.parametrize("rc", [1, -9, None])
def test_an_unknown_crash_is_transient(rc: int | None) -> None:
    found = diagnose(["Traceback (most recent call last):", "KeyError: 'x'"], rc)
    assert not found.permanent
    assert found.matched == ""
    assert not diagnose([], rc, served=True).permanent


def test_gated_hint_knows_whether_a_token_was_given() -> None:
    lines = ["Cannot access gated repo for url https://huggingface.co/x/y"]
    without, with_token = diagnose(lines, 1), diagnose(lines, 1, hf_token_set=True)
    assert "set HF_TOKEN" in without.hint and without.permanent
    assert "refused" in with_token.hint and with_token.permanent
    assert "refused" not in diagnose(["Repository Not Found for url x"], 1, True).hint


def test_fallbacks_by_exit_status() -> None:
    bad_argument = diagnose([], 2)
    assert "exit status 2 is an argument error" in bad_argument.hint
    assert not bad_argument.permanent  # the restart policy gives up on status 2 already
    killed = diagnose(["nothing useful"], -9)
    assert "SIGKILL" in killed.hint and not killed.permanent and killed.matched == ""
    assert diagnose(["nothing useful"], 1).hint == ""
    assert diagnose(["nothing useful"], -15).hint == ""


def test_the_first_rule_in_order_wins_over_later_lines() -> None:
    # an argument error listed after an OOM line still reads as the argument error
    lines = ["torch.OutOfMemoryError: CUDA out of memory.", "error: unrecognized arguments: --x"]
    found = diagnose(lines, 2)
    assert "rejected an argument" in found.hint
    assert found.matched == "error: unrecognized arguments: --x"
