"""Explain a server failure from its last output lines: the well-known causes and their fixes.

Each rule matches lines that SGLang (or the libraries it calls to find and load the model:
transformers and huggingface_hub) really prints; the comment above each one names where the
line is made, and README.md ("Failures given up at once") lists them with their releases. The
SGLang lines were read in 0.5.6.post2, 0.5.8, 0.5.10, 0.5.12, 0.5.14, 0.5.16, 0.5.18, 0.5.20,
0.5.22 and 0.5.23 (paths under ``sglang/srt/``), transformers' in 4.57.1, 5.3.0 and 5.19.0
(the pins of 0.5.6.post2-0.5.8, 0.5.10 and 0.5.22-0.5.23), huggingface_hub's in 0.36.0 and 2.4.0.

A rule is *permanent* when a restart cannot change the outcome (no accelerator, a bad argument,
an unknown architecture, a model that is not there or not allowed, heads that the tensor
parallel size does not divide, ...): the launcher then gives up at once instead of retrying.
Running out of GPU memory is permanent only before the server was ever ready (loading the same
model with the same options runs out the same way); once it has served, it is transient and its
hint gives the opposite advice (``after_ready``). Other causes (a busy port, a full disk) may
pass, and keep the restart backoff.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    hint: str
    permanent: bool
    after_ready: str | None = None
    """The hint when the server had already served: the failure is then transient."""


@dataclass(frozen=True)
class Diagnosis:
    """The likely cause of a failure: a hint for the user (may be empty), and whether a
    restart could help."""

    hint: str = ""
    permanent: bool = False
    matched: str = ""
    """The server line the hint was read from (empty for a fallback)."""


_GATED = (
    "the model is gated: accept its license on its Hugging Face page and set HF_TOKEN to a "
    "token of that account"
)
_GATED_WITH_TOKEN = (
    "the model is gated and HF_TOKEN was refused: accept the model's license with the token's "
    "account, or check that the token is valid"
)
_INIT_OOM = (
    "the GPU ran out of memory while the server started (loading the weights, the KV cache or "
    "the CUDA graphs), which a retry repeats: serve it over more GPUs (--tp), use a smaller or "
    "quantized model, or lower --context-length; if it failed capturing CUDA graphs, lower "
    "--mem-fraction-static or --cuda-graph-max-bs"
)
_RUNTIME_OOM = (
    "the GPU ran out of memory while serving (activations beyond the static pool): the "
    "launcher restarts it; to prevent it, lower --mem-fraction-static to leave more room, or "
    "--max-running-requests / --chunked-prefill-size"
)
_PORT_BUSY = (
    "another process holds the server's port: stop it, or choose another LAUNCHER_SERVER_PORT"
)

# In priority order: the first rule matching any line wins.
RULES: list[Rule] = [
    Rule(
        # argparse: "sglang serve: error: unrecognized arguments: ...", "ambiguous option: ..."
        re.compile(r"unrecognized arguments:|ambiguous option:|error: argument |invalid choice"),
        "SGLang rejected an argument: check SGLANG_ARGS and the args file (SGLANG_ARGS_FILE); "
        "`vast-sglang-launcher plan` shows the command and where each part came from",
        permanent=True,
    ),
    Rule(
        # utils/common.py get_device(): "No accelerator (CUDA, XPU, HPU, NPU) is available."
        # (0.5.6.post2-0.5.8), "(CUDA, XPU, HPU, NPU, MUSA, MPS) is available." (0.5.10-0.5.12),
        # "(CUDA, XPU, HPU, NPU, MUSA, MPS) or platform plugin is available." (0.5.14+); torch's.
        re.compile(
            r"No accelerator \(CUDA[^)]*\)( or platform plugin)? is available|"
            r"No CUDA GPUs are available|Found no NVIDIA driver"
        ),
        "the server sees no GPU: rent an instance with a GPU, and check that the container "
        "was given it (CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES)",
        permanent=True,
    ),
    Rule(
        # configs/model_config.py ModelConfig._derive_context_length (all ten): "ValueError:
        # Warning: User-specified context_length (N) is greater than the derived context_length
        # (M). ... To allow overriding this maximum, set the env var
        # SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1" (the warning alone, when allowed, lacks it)
        re.compile(
            r"To allow overriding this maximum, set the env var "
            r"SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN"
        ),
        "--context-length is above the model's own maximum (config.json): lower it, or set "
        "SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1 if you know the model handles it (outputs "
        "may be wrong)",
        permanent=True,
    ),
    Rule(
        # model_loader/loader.py _get_quantization_config (all ten): "The quantization method X
        # is not supported for the current GPU. Minimum capability: 80. Current capability: 75."
        # layers/quantization/moe_wna16.py: "... moe_wna16 + awq is not supported for the
        # current GPU. Minimum capability: ..."
        re.compile(r"is not supported for the current GPU\. Minimum capability"),
        "the model's quantization needs a newer GPU than this one: rent a GPU with the "
        "compute capability the line names, or serve a model quantized another way",
        permanent=True,
    ),
    Rule(
        # configs/model_config.py _verify_quantization (all ten): "Unknown quantization method:
        # X. Must be one of [...]", "Quantization method specified in the model config (X)
        # does not match the quantization method specified in the `quantization` argument (Y).";
        # model_loader/loader.py _get_quantization_config: "torch.float16 is not supported for
        # quantization method X. Supported dtypes: [...]"
        re.compile(
            r"Unknown quantization method: |"
            r"Quantization method specified in the model config .* does not match|"
            r"is not supported for quantization method .* Supported dtypes"
        ),
        "the --quantization (or --dtype) does not fit this model or this SGLang: remove "
        "--quantization to use the one in the model's config, or pick one the line lists",
        permanent=True,
    ),
    Rule(
        # model_loader/loader.py DefaultModelLoader._prepare_weights (all ten): "RuntimeError:
        # Cannot find any model weights with `/path`"
        re.compile(r"Cannot find any model weights with "),
        "the model directory has no weight files SGLang can load (*.safetensors, *.bin): check "
        "SGLANG_MODEL, or that the download finished (--load-format)",
        permanent=True,
    ),
    Rule(
        # tokenizer: utils/hf_transformers_utils.py get_tokenizer (0.5.6.post2-0.5.10),
        # utils/hf_transformers/tokenizer.py (0.5.12+): "RuntimeError: Failed to load the
        # tokenizer. If the tokenizer is a custom tokenizer not yet available in the
        # HuggingFace transformers library, consider setting `trust_remote_code=True` in LLM or
        # using the `--trust-remote-code` flag in the CLI."; the config: transformers
        # dynamic_module_utils.py resolve_trust_remote_code (4.57.1, 5.3.0, 5.19.0): "The
        # repository X contains custom code which must be executed ... Please pass the argument
        # `trust_remote_code=True` to allow custom code to be run."
        re.compile(
            r"or using the `--trust-remote-code` flag in the CLI|"
            r"Please pass the argument `trust_remote_code=True` to allow custom code"
        ),
        "the model ships its own code (tokenizer or model class): add --trust-remote-code to "
        "SGLANG_ARGS if you trust the repository",
        permanent=True,
    ),
    Rule(
        # layers/attention/attention_registry.py create_flashattention_v3_backend (all ten):
        # "AssertionError: FlashAttention v3 Backend requires SM>=80 and SM<=90. Please use
        # `--attention-backend flashinfer`."
        re.compile(r"FlashAttention v3 Backend requires SM>=80 and SM<=90"),
        "--attention-backend fa3 runs only on SM 80-90 GPUs (A100, H100): use "
        "--attention-backend flashinfer (or triton), or remove the option",
        permanent=True,
    ),
    Rule(
        # utils/common.py assert_pkg_version, called by entrypoints/engine.py (all ten):
        # "flashinfer_python is installed with version 0.5.2, which is less than the minimum
        # required version 0.5.3. ...", "sgl-kernel with minimum required version 0.3.19 is not
        # installed. ..." (sglang-kernel from 0.5.10)
        re.compile(
            r"(flashinfer_python|sgl-kernel|sglang-kernel) (is installed with version \S+, "
            r"which is less than the minimum required version|with minimum required version "
            r"\S+ is not installed)"
        ),
        "a kernel package is older than this SGLang needs (often a PIP_PACKAGES entry that "
        "replaced the image's): remove it from PIP_PACKAGES, or install the version the line "
        "names, and start a fresh instance",
        permanent=True,
    ),
    Rule(
        # The Transformers fallback, tried for an architecture SGLang lacks, before the
        # registry's "not supported" line: model_loader/utils.py resolve_transformers_arch
        # (all ten): "Cannot find model module. 'X' is not a registered model in the
        # Transformers library ...", "X has no SGlang implementation and the Transformers
        # implementation is not compatible with SGLang.", 0.5.6.post2-0.5.8 also "The
        # Transformers implementation of X is not compatible with SGLang."; transformers
        # models/auto/configuration_auto.py AutoConfig.from_pretrained: "... has model type `x`
        # but Transformers does not recognize this architecture."
        re.compile(
            r"Cannot find model module\. '.*' is not a registered model in the Transformers|"
            r"has no SGlang implementation and the Transformers implementation is not compatible|"
            r"The Transformers implementation of .* is not compatible with SGLang|"
            r"but Transformers does not recognize this architecture"
        ),
        "neither this SGLang nor its Transformers fallback can run the model's architecture "
        "(config.json `architectures`, `model_type`): serve another model, or use an image "
        "with a newer SGLang",
        permanent=True,
    ),
    Rule(
        # models/registry.py (all ten):
        # "Model architectures [...] are not supported for now. Supported architectures: ..."
        re.compile(r"Model architectures .* are not supported for now"),
        "this SGLang release does not support the model's architecture (config.json "
        "`architectures`): serve another model, or use an image with a newer SGLang",
        permanent=True,
    ),
    Rule(
        # huggingface_hub GatedRepoError ("Cannot access gated repo for url ..."), transformers'
        # "You are trying to access a gated repo."
        re.compile(
            r"GatedRepoError|Cannot access gated repo|access a gated repo|"
            r"Access to model .* is restricted|You must have access to it",
            re.IGNORECASE,
        ),
        _GATED,
        permanent=True,
    ),
    Rule(
        # huggingface_hub RepositoryNotFoundError ("Repository Not Found for url: ..."),
        # transformers' "... is not a local folder and is not a valid model identifier ...",
        # huggingface_hub's HFValidationError for a path that is neither dir nor repo id. Not a
        # bare "404 Client Error": a missing optional file (generation_config.json, ...) is
        # one too, and SGLang goes on without it.
        re.compile(
            r"RepositoryNotFoundError|Repository Not Found for url|"
            r"is not a local folder and is not a valid model identifier|"
            r"Repo id must be in the form",
            re.IGNORECASE,
        ),
        "the model was not found: check the spelling of SGLANG_MODEL (a Hugging Face repo id "
        "like org/name, or an existing local directory; a private repository also needs "
        "HF_TOKEN)",
        permanent=True,
    ),
    Rule(
        # A hub repo id with no way to the hub and not in the cache: transformers
        # utils/hub.py cached_files (4.57.1, 5.3.0, 5.19.0): "We couldn't connect to
        # 'https://huggingface.co' to load the files, and couldn't find them in the cached
        # files."; huggingface_hub file_download.py _raise_on_head_call_error (0.36.0, 2.4.0):
        # "... and we cannot find the requested files in the local cache", "Cannot find the
        # requested files in the disk cache and outgoing traffic has been disabled";
        # _snapshot_download.py snapshot_download: "... we cannot find the appropriate snapshot
        # folder ...", "Cannot find an appropriate cached snapshot folder ..."
        re.compile(
            r"to load the files, and couldn't find them in the cached files|"
            r"cannot find the requested files in the (local|disk) cache|"
            r"cannot find the appropriate snapshot folder|"
            r"Cannot find an appropriate cached snapshot folder",
            re.IGNORECASE,
        ),
        "the model is not in the Hugging Face cache and the hub cannot be reached: check the "
        "network and HF_ENDPOINT (and unset HF_HUB_OFFLINE), or point SGLANG_MODEL at a local "
        "directory",
        permanent=True,
    ),
    Rule(
        # utils/common.py (0.5.6.post2-0.5.8), utils/network.py (0.5.10+) wait_port_available,
        # for SGLang's internal ports: "ValueError: nccl_port at 28031 is not available in 30
        # seconds. ..."
        re.compile(r"\w+ at \d+ is not available in \d+ seconds"),
        "a port SGLang needs for its own processes stayed taken for 30 s (the line names it): "
        "stop the process that holds it, or move SGLang with --port / --nccl-port",
        permanent=True,
    ),
    Rule(
        # SGLang's own, all at start: "RuntimeError: Not enough memory. Please try to increase
        # --mem-fraction-static." (model_executor/model_runner.py 0.5.6.post2,
        # model_runner_kv_cache_mixin.py 0.5.8-0.5.10, pool_configurator.py 0.5.12+); "Loaded
        # weights leave no GPU memory for the KV cache under --mem-fraction-static=..."
        # (model_runner_kv_cache_mixin.py 0.5.14, mem_cache/kv_cache_configurator.py 0.5.16+)
        re.compile(
            r"Not enough memory\. Please try to increase --mem-fraction-static|"
            r"Loaded weights leave no GPU memory for the KV cache"
        ),
        "the weights leave too little GPU memory for the KV cache: raise --mem-fraction-static "
        "(the line gives the minimum), or spread the model over more GPUs (--tp), or serve a "
        "smaller or quantized model",
        permanent=True,
        after_ready=_RUNTIME_OOM,
    ),
    Rule(
        # torch.OutOfMemoryError ("CUDA out of memory. Tried to allocate ..."), the CUDA
        # runtime's "CUDA error: out of memory"; SGLang wraps one in CUDA graph capture as
        # "Capture cuda graph failed: ..." (model_executor/cuda_graph_runner.py, runner/
        # decode_cuda_graph_runner.py from 0.5.20) with the same line in it.
        re.compile(r"OutOfMemoryError|(CUDA|HIP) out of memory|CUDA error: out of memory", re.I),
        _INIT_OOM,
        permanent=True,
        after_ready=_RUNTIME_OOM,
    ),
    Rule(
        # distributed/utils.py ensure_divisibility (all ten): "AssertionError: 32 is not
        # divisible by 3"; older model code asserts on the heads, shown in the traceback as
        # "    assert self.total_num_heads % tp_size == 0". Only that assert line: a traceback
        # line that merely mentions the attribute says nothing. After the memory rules, which
        # a traceback may also contain.
        re.compile(
            r"\d+ is not divisible by \d+|"
            r"^\s*assert .*(total_num_(kv_)?heads|num_(key_value|attention)_heads)\s*%\s*"
            r"(self\.)?tp_size",
            re.IGNORECASE,
        ),
        "the tensor-parallel size does not divide the model's attention heads (or KV heads): "
        "choose a --tp that divides them, or set AUTO_PARALLEL=false and pick the layout",
        permanent=True,
    ),
    Rule(
        # DP attention: server_args.py _handle_data_parallelism "assert self.tp_size %
        # self.dp_size == 0" (0.5.6.post2-0.5.18), "tp_size must be divisible by dp_size *
        # attn_cp_size" (0.5.10-0.5.20), "... by attn_dp_size * attn_cp_size" (0.5.22+,
        # arg_groups/parallel_hook.py)
        re.compile(
            r"tp_size must be divisible by (attn_)?dp_size|"
            r"^\s*assert (self|cfg)\.tp_size % (self|cfg)\.(attn_)?dp_size == 0"
        ),
        "with DP attention the tensor-parallel size must be a multiple of the attention "
        "groups (--dp-size with --enable-dp-attention, or --attn-dp-size): fix --tp, or leave "
        "it to AUTO_PARALLEL",
        permanent=True,
    ),
    Rule(
        re.compile(r"address already in use|is already in use", re.IGNORECASE),
        _PORT_BUSY,
        permanent=False,
    ),
    Rule(
        re.compile(r"No space left on device", re.IGNORECASE),
        "the disk is full: free space in $WORKSPACE (the model cache) or rent more disk",
        permanent=False,
    ),
]

PORT_BUSY_HINT = _PORT_BUSY


def diagnose(
    lines: Sequence[str],
    returncode: int | None,
    hf_token_set: bool = False,
    served: bool = False,
) -> Diagnosis:
    """The likely cause and fix of a failure, from the server's last lines and exit status.
    ``served``: the server had been ready (in this start or an earlier one of this plan)."""
    for rule in RULES:
        for line in lines:
            if rule.pattern.search(line):
                if served and rule.after_ready is not None:
                    return Diagnosis(rule.after_ready, False, line)
                hint = _GATED_WITH_TOKEN if rule.hint == _GATED and hf_token_set else rule.hint
                return Diagnosis(hint, rule.permanent, line)
    if returncode == 2:
        return Diagnosis(
            "exit status 2 is an argument error: check SGLANG_ARGS and SGLANG_ARGS_FILE",
            permanent=False,  # the restart policy gives up on status 2 already
        )
    if returncode == -9:
        return Diagnosis(
            "SGLang kills its whole process tree with SIGKILL when a worker fails: the cause "
            "is in the server lines above (none: maybe the kernel's out-of-memory killer)"
        )
    return Diagnosis()
