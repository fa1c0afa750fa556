"""Explain a server failure from its last output lines: the well-known causes and their fixes.

Each rule matches lines that SGLang (or the libraries it calls to find the model:
transformers and huggingface_hub) really prints; README.md lists them with the releases they
were read from (0.5.6.post2, 0.5.8, 0.5.23). A rule is *permanent* when a restart cannot
change the outcome (no accelerator, a bad argument, an unknown architecture, a model that is
not there or not allowed, heads that the tensor-parallel size does not divide): the launcher
then gives up at once instead of retrying. Other causes (out of memory, a busy port, a full
disk, a network error) may pass, and keep the restart backoff.
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
        # sglang/srt/utils/common.py get_device(): 0.5.6.post2 and 0.5.8 say
        # "No accelerator (CUDA, XPU, HPU, NPU) is available.", 0.5.23 "No accelerator (CUDA,
        # XPU, HPU, NPU, MUSA, MPS) or platform plugin is available."; torch's own messages.
        re.compile(
            r"No accelerator \(CUDA[^)]*\)( or platform plugin)? is available|"
            r"No CUDA GPUs are available|Found no NVIDIA driver"
        ),
        "the server sees no GPU: rent an instance with a GPU, and check that the container "
        "was given it (CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES)",
        permanent=True,
    ),
    Rule(
        # sglang/srt/models/registry.py (all three releases):
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
        # huggingface_hub's HFValidationError for a path that is neither dir nor repo id.
        re.compile(
            r"RepositoryNotFoundError|Repository Not Found|404 Client Error|"
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
        # sglang/srt/distributed/utils.py ensure_divisibility (all three releases):
        # "AssertionError: 32 is not divisible by 3"; older asserts on total_num_heads % tp_size
        re.compile(
            r"is not divisible by \d|total_num_(kv_)?heads|num_(key_value|attention)_heads.*%|"
            r"%\s*(self\.)?tp_size",
            re.IGNORECASE,
        ),
        "the tensor-parallel size does not divide the model's attention heads (or KV heads): "
        "choose a --tp that divides them, or set AUTO_PARALLEL=false and pick the layout",
        permanent=True,
    ),
    Rule(
        # torch.OutOfMemoryError; sglang's "Not enough memory. Please try to increase
        # --mem-fraction-static." (model_runner / pool configurator, all three releases)
        re.compile(
            r"OutOfMemoryError|out of memory|Not enough memory|CUDA error: out of memory", re.I
        ),
        "the GPU ran out of memory: lower --mem-fraction-static or --context-length, serve a "
        "smaller or quantized model, or spread it over more GPUs (--tp)",
        permanent=False,
    ),
    Rule(
        re.compile(r"address already in use|is already in use", re.IGNORECASE),
        "another process holds the server's port: stop it, or choose another SGLANG_PORT",
        permanent=False,
    ),
    Rule(
        re.compile(r"No space left on device", re.IGNORECASE),
        "the disk is full: free space in $WORKSPACE (the model cache) or rent more disk",
        permanent=False,
    ),
]

PORT_BUSY_HINT = RULES[7].hint


def diagnose(lines: Sequence[str], returncode: int | None, hf_token_set: bool = False) -> Diagnosis:
    """The likely cause and fix of a failure, from the server's last lines and exit status."""
    for rule in RULES:
        for line in lines:
            if rule.pattern.search(line):
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


def hint_for(lines: Sequence[str], returncode: int | None, hf_token_set: bool = False) -> str:
    """One sentence telling the likely cause and fix, or an empty string."""
    return diagnose(lines, returncode, hf_token_set).hint
